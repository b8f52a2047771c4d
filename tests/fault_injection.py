"""The project's fault-injection hook: NaN losses and simulated out-of-memory
errors on demand, driven per trial by two config keys it declares.

Install it in-process (``fgmodels.hooks.install_hook(HOOK)``, or the
``fault_injection`` fixture) or, for CLI subprocesses and Ray workers, through
the environment: ``FGVC_HOOKS=tests.fault_injection:HOOK`` with the repository
root on the import path.

* ``inject_nan_at_step: k``: the loss of global micro-batch step ``k``
  (0-based, counted over the whole run) becomes NaN;
* ``simulate_oom_above_batch: n``: every step whose micro-batch holds more than
  ``n`` images raises ``torch.OutOfMemoryError``, as the CUDA allocator would;
* ``step_delay_s: t``: every step sleeps ``t`` seconds first (a slow trial, so a
  test can act while it is still running: kill its node, send Ctrl-C).
"""
from __future__ import annotations

import time
from typing import Any

import torch


class FaultInjection:
    keys: dict[str, Any] = {"inject_nan_at_step": None, "simulate_oom_above_batch": None, "step_delay_s": None}

    def before_step(self, trainer: Any, images: torch.Tensor, labels: torch.Tensor) -> None:
        delay = trainer.cfg.get("step_delay_s")
        if delay:
            time.sleep(float(delay))
        limit = trainer.cfg.get("simulate_oom_above_batch")
        if limit is not None and images.shape[0] > int(limit):
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: micro-batch {images.shape[0]} > {limit})")

    def after_loss(self, trainer: Any, loss: torch.Tensor) -> torch.Tensor:
        step = trainer.cfg.get("inject_nan_at_step")
        if step is not None and trainer.global_step == int(step):
            return loss * float("nan")
        return loss

    def __repr__(self) -> str:
        return "tests.fault_injection:HOOK"


HOOK = FaultInjection()
