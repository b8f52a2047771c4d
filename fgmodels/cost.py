"""What a trained method costs at test time, measured on what ``predict`` really runs.

Three numbers, per image, so that accuracy can be weighed against them:

* ``cost_ms_per_image``: wall time of ``predict`` on one batch at the trial's
  image size, on the trial's own device, after warm-up; the median of a few
  timed batches divided by the batch size (the median ignores one slow batch
  caused by another process on the machine);
* ``cost_gflops``: FLOPs per image by the per-operator formulas of
  ``torch.utils.flop_counter`` (a multiply-add counts 2). The
  count runs under ``no_grad`` exactly as evaluation does, so a method whose
  ``predict`` re-enters autograd (gholm's Grad-CAM backward through its head)
  is charged for that backward too;
* ``cost_params_m``: the model's parameters, in millions.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

COST_KEYS = ("cost_ms_per_image", "cost_gflops", "cost_params_m")
WARMUP_BATCHES = 2
TIMED_BATCHES = 5


def count_flops(fn: Any, *args: Any) -> int:
    """FLOPs of ``fn(*args)`` as run (under ``no_grad``, like evaluation)."""
    tally = _FlopTally()
    with torch.no_grad(), tally:
        fn(*args)
    return tally.total


class _FlopTally(TorchDispatchMode):
    """``FlopCounterMode``'s per-operator FLOP formulas, summed, without its
    module tracker: the tracker's backward hooks make ``torch.autograd.grad`` on
    a leaf tensor fail, which is exactly what gholm's Grad-CAM does."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_batch(fn: Any, images: torch.Tensor, warmup: int = WARMUP_BATCHES,
                   timed: int = TIMED_BATCHES) -> float:
    """Median seconds of ``fn(images)`` over ``timed`` batches after ``warmup``."""
    times = []
    with torch.no_grad():
        for i in range(warmup + timed):
            _sync(images.device)
            start = time.perf_counter()
            fn(images)
            _sync(images.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_cost(model: nn.Module, images: torch.Tensor, autocast: Any = None) -> dict[str, float]:
    """The three ``COST_KEYS`` for ``model.predict`` on ``images`` (one batch on
    the model's device). ``autocast``: a factory of the precision context that
    evaluation uses (None: full precision). The model is left as it was found."""
    from contextlib import nullcontext

    make_context = autocast or nullcontext
    was_training = model.training
    model.eval()

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with make_context():
            return model.predict(batch)

    try:
        flops = count_flops(predict, images[:1])  # per image: FLOPs grow linearly with the batch
        seconds = time_per_batch(predict, images)
    finally:
        model.train(was_training)
    return {"cost_ms_per_image": 1000.0 * seconds / images.shape[0], "cost_gflops": flops / 1e9,
            "cost_params_m": param_count(model) / 1e6}
