"""Training hooks: installed in-process or through FGVC_HOOKS, their config keys, and the loop calling them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from fgmodels import hooks
from fgmodels.engine import fit
from tests.fault_injection import HOOK as FAULTS
from tests.test_engine import tiny_cfg

REPO = Path(__file__).resolve().parents[1]


class Counter:
    keys: dict[str, Any] = {"counter_scale": 1.0}

    def __init__(self) -> None:
        self.steps = 0
        self.losses = 0

    def before_step(self, trainer, images, labels) -> None:
        self.steps += 1

    def after_loss(self, trainer, loss):
        self.losses += 1
        return loss * float(trainer.cfg.get("counter_scale", 1.0))


@pytest.fixture
def counter():
    hook = Counter()
    hooks.install_hook(hook)
    yield hook
    hooks.remove_hook(hook)


def test_install_and_remove_change_hooks_and_keys(counter) -> None:
    assert counter in hooks.installed_hooks()
    assert hooks.hook_keys()["counter_scale"] == 1.0
    hooks.install_hook(counter)  # installing twice keeps one copy
    assert sum(h is counter for h in hooks.installed_hooks()) == 1
    hooks.remove_hook(counter)
    assert counter not in hooks.installed_hooks() and "counter_scale" not in hooks.hook_keys()


def test_conflicting_key_defaults_and_non_hooks_are_refused(counter) -> None:
    other = Counter()
    other.keys = {"counter_scale": 2.0}
    with pytest.raises(ValueError, match="'counter_scale'.*Fix:"):
        hooks.install_hook(other)
    with pytest.raises(TypeError, match="lacks.*before_step.*Fix:"):
        hooks.install_hook(object())
    assert hooks.installed_hooks().count(counter) == 1 and other not in hooks.installed_hooks()


def test_loop_calls_every_hook_once_per_micro_batch(tmp_path: Path, counter) -> None:
    result = fit(tiny_cfg(epochs=2, max_train_batches=3, batch_size=8, accum_steps=2), tmp_path, progress=False)
    assert counter.steps == counter.losses == 2 * 3 * 2  # epochs x optimiser steps x micro-batches
    assert all(h["micro_batch"] == 4 for h in result.history)


def test_fault_injection_nan_and_oom_follow_the_config(fault_injection) -> None:
    class Stub:
        global_step = 7
        cfg = {"inject_nan_at_step": 7, "simulate_oom_above_batch": 3}

    loss = torch.tensor(0.5)
    assert torch.isnan(FAULTS.after_loss(Stub(), loss))
    Stub.global_step = 8
    assert FAULTS.after_loss(Stub(), loss) == loss
    FAULTS.before_step(Stub(), torch.zeros(3, 3, 4, 4), torch.zeros(3))  # at the limit: fine
    with pytest.raises(torch.OutOfMemoryError, match=r"simulated: micro-batch 4 > 3"):
        FAULTS.before_step(Stub(), torch.zeros(4, 3, 4, 4), torch.zeros(4))


def test_bad_hook_specs_name_the_fix() -> None:
    with pytest.raises(ValueError, match="package.module:object"):
        hooks.load_hook("tests.fault_injection")
    with pytest.raises(ImportError, match="no_such_module.*Fix: put the folder"):
        hooks.load_hook("no_such_module:HOOK")
    with pytest.raises(ImportError, match="has no 'NOPE'"):
        hooks.load_hook("tests.fault_injection:NOPE")


def test_fgvc_hooks_installs_on_first_import_in_a_new_process() -> None:
    """What a Ray worker does: it inherits FGVC_HOOKS and imports fgmodels."""
    code = ("import json, fgmodels.hooks as h; "
            "print(json.dumps([repr(x) for x in h.installed_hooks()])); print(json.dumps(h.hook_keys()))")
    env = {**os.environ, "PYTHONPATH": str(REPO), hooks.HOOKS_ENV: "tests.fault_injection:HOOK"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    installed, keys = (json.loads(line) for line in out.stdout.splitlines()[-2:])
    assert installed == ["tests.fault_injection:HOOK"]
    assert keys == {"inject_nan_at_step": None, "simulate_oom_above_batch": None, "step_delay_s": None}
