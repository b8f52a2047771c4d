"""Refuse GPU-sharing plans whose trials cannot fit in GPU memory.

With ``--gpus-per-trial 0.5`` Ray puts two trials on each GPU whatever their
size; a config too big for half a GPU then dies with out-of-memory at epoch 1
after the whole search was queued. Before Ray starts, every `first` point of
the space is checked with its largest searched batch size, using the memory
model in :mod:`fgmodels.memory` (the search does not look inside models itself).
"""
from __future__ import annotations

from typing import Any

from search.spaces import SearchSpace


def gpu_memory_gb() -> float | None:
    """Memory of the local GPU 0 in GiB, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 2**30


def worst_case_configs(space: SearchSpace) -> list[dict[str, Any]]:
    """Each `first` config with the largest batch size its space can sample."""
    out = []
    for cfg in space.first:
        spec = space.member(cfg["method"]).params.get("batch_size")
        cfg = dict(cfg)
        if spec is not None:
            cfg["batch_size"] = max(spec.values) if spec.type == "choice" else int(spec.high)
        out.append(cfg)
    return out


def check_packing(space: SearchSpace, gpus_per_trial: float, memory_gb: float | None) -> str | None:
    """None when there is nothing to check or it fits; raises ValueError (with
    the estimate and a fraction that fits) when trials would not fit."""
    if not 0 < gpus_per_trial < 1:
        return None
    if memory_gb is None:
        return ("GPU memory unknown here (no local GPU): packing not checked; "
                "pass --gpu-memory-gb of the workers' GPUs to check it")
    from fgmodels.memory import check_gpu_fraction

    for cfg in worst_case_configs(space):
        check_gpu_fraction(cfg, gpus_per_trial, memory_gb)
    return None
