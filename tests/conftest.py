"""Shared test setup: small, deterministic and CPU-only."""
from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest
import torch

# One intra-op thread: the tests use tiny models, for which a second thread only
# adds spin-waiting (measured ~20x slower on a loaded 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def fault_injection():
    """The fault-injection hook installed for one test (``inject_nan_at_step``,
    ``simulate_oom_above_batch`` become config keys); removed afterwards unless
    ``FGVC_HOOKS`` had installed it for the whole process."""
    from fgmodels.hooks import install_hook, installed_hooks, remove_hook
    from tests.fault_injection import HOOK

    already = HOOK in installed_hooks()
    install_hook(HOOK)
    yield HOOK
    if not already:
        remove_hook(HOOK)
