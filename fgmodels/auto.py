"""``auto`` runtime settings, decided per trial from its device and resources.

The runtime keys ``amp``, ``pipeline``, ``workers``, ``channels_last`` and
``compile`` default to ``auto``. :func:`resolve_auto` is the one rule that
turns them into values: a pure function of (config, :class:`DeviceInfo`, the
trial's CPUs, whether the pixel cache can serve), so it is tested with a fake
GPU description and the ``--dry-run`` of a search prints what a trial on a GPU
will run with. An explicit value always wins. :func:`resolve_for_trial` does the
impure part (look at the device, count the CPUs, check the cache's room) and is
called by the assembly before the config is saved, so ``trial_config.yaml``
holds the values that ran.

The rules, and why:

* CUDA: bf16 autocast from compute capability 8.0 (older GPUs have no fast
  bf16, and fp16 would need a gradient scaler the loop does not have);
  channels_last from 7.0 (tensor-core convolutions want NHWC); the pixel cache
  with augmentation on the GPU (one CPU thread decoding 448-px JPEGs cannot
  feed a GPU) unless the dataset does not fit the cache's disk/memory room,
  then PIL with ``workers`` = the trial's CPUs - 1 (at most 8); ``compile`` on,
  except for methods that declare ``dynamic_shapes = True`` (GHOLM: its crop
  boxes and its labelling loop depend on the data and may force re-tracing;
  none was seen on CPU, docs/speed.md, so the GPU run decides whether it
  pays); fused optimisers (:func:`fgmodels.optim.fused_for`).
* CPU (measured on a 2-core VM, docs/speed.md): fp32 (bf16 autocast is slower
  there), no channels_last (no consistent gain on the tiny test backbones), the
  pixel cache (3x the PIL DataLoader's images/s at 64 px), no compile (the
  compile time outweighs the step time on short CPU runs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from fgmodels.config import AUTO

AUTO_KEYS = ("amp", "pipeline", "workers", "channels_last", "compile")
MAX_AUTO_WORKERS = 8
CACHE_RAM_SHARE = 0.5  # the cache lives in the page cache: at most this share of the node's RAM


@dataclass(frozen=True)
class DeviceInfo:
    """What the rule needs to know about the trial's device (a fake one in tests)."""

    type: str  # "cuda" | "cpu"
    name: str = ""
    memory_gb: float | None = None
    capability: tuple[int, int] | None = None  # CUDA compute capability; None = unknown (assume modern)

    def describe(self) -> str:
        if self.type != "cuda":
            return "cpu"
        parts = [self.name or "cuda"]
        if self.memory_gb:
            parts.append(f"{self.memory_gb:.0f} GB")
        if self.capability:
            parts.append(f"sm {self.capability[0]}.{self.capability[1]}")
        return "cuda (" + ", ".join(parts) + ")"


@dataclass(frozen=True)
class Resolved:
    """The decided values of the ``auto`` keys and why, in one line."""

    settings: dict[str, Any]
    why: str

    def line(self) -> str:
        values = " ".join(f"{k}={self.settings[k]}" for k in AUTO_KEYS)
        return f"runtime settings: {values} ({self.why})"


def resolve_auto(cfg: Mapping[str, Any], device: DeviceInfo, cpus: int,
                 cache_problem: str | None = None) -> Resolved:
    """Values for the ``auto`` keys of ``cfg`` on ``device`` with ``cpus`` CPUs.

    ``cache_problem`` says why the pixel cache cannot serve this dataset (None:
    it can). Keys with an explicit value keep it. Pure: no device, disk or Ray is touched.
    """
    from fgmodels.optim import fused_for
    from fgmodels.registry import get_method_class

    cuda = device.type == "cuda"
    cap = device.capability or (99, 0)
    dynamic = bool(getattr(get_method_class(cfg["method"]), "dynamic_shapes", False))
    why: list[str] = [device.describe(), f"{cpus} CPU"]
    rule: dict[str, Any] = {
        "amp": "bf16" if cuda and cap >= (8, 0) else "off",
        "channels_last": cuda and cap >= (7, 0),
        "pipeline": "pil" if cache_problem else "cache",
        "compile": cuda and not dynamic,
    }
    explicit = {k: cfg[k] for k in AUTO_KEYS if cfg.get(k, AUTO) != AUTO}
    out = {k: explicit.get(k, rule.get(k)) for k in AUTO_KEYS}
    pil_workers = max(0, min(int(cpus) - 1, MAX_AUTO_WORKERS))  # one CPU stays with the training process
    out["workers"] = explicit.get("workers", pil_workers if out["pipeline"] == "pil" else 0)
    if cuda and cap < (8, 0) and "amp" not in explicit:
        why.append("no fast bf16 before sm 8.0: fp32")
    if cache_problem and "pipeline" not in explicit:
        why.append(f"pixel cache cannot serve ({cache_problem}): PIL with {out['workers']} workers")
    if cuda and dynamic and "compile" not in explicit:
        why.append(f"{cfg['method']} declares dynamic shapes: no compile")
    if fused_for(str(cfg.get("opt", "")), device.type):
        why.append(f"fused {cfg['opt']}")
    if explicit:
        why.append("explicit: " + ", ".join(f"{k}={v}" for k, v in explicit.items()))
    return Resolved(out, "; ".join(why))


# ---------------------------------------------------------------- the impure inputs
def describe_device(device: Any) -> DeviceInfo:
    """:class:`DeviceInfo` of a ``torch.device`` (the real one)."""
    import torch

    if device.type != "cuda":
        return DeviceInfo("cpu")
    props = torch.cuda.get_device_properties(device)
    return DeviceInfo("cuda", props.name, props.total_memory / 1e9, (props.major, props.minor))


def trial_cpus() -> int:
    """CPUs this process may use: Ray's share for the trial inside a Ray worker, else the affinity mask."""
    try:
        import ray

        if ray.is_initialized():
            assigned = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if assigned:
                return max(1, int(assigned))
    except Exception:  # no Ray, or not inside a Ray task: the process's own view
        pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cache_problem(data: Any, cfg: Mapping[str, Any]) -> str | None:
    """Why the pixel cache cannot hold this dataset (None: it can): the same room
    check :func:`fgmodels.data.cache.ensure_pixel_cache` makes before it builds,
    plus the node's RAM (the memory-mapped pixels should stay in the page cache)."""
    import shutil

    from fgmodels.data.cache import cache_key, unique_samples
    from fgmodels.data.cachedir import default_cache_dir
    from fgmodels.data.dataset import resolve_geometry

    geometry = resolve_geometry(cfg)
    items = unique_samples([s for d in (data.train, data.val, data.test) for s in d.samples])
    base = default_cache_dir("pixels")
    if not items or (base / cache_key(items, geometry.resize_size, geometry.resize, data.root) / "meta.json").is_file():
        return None  # nothing to cache, or built already
    need = len(items) * geometry.resize_size ** 2 * 3
    probe = next((p for p in (base, *base.parents) if p.exists()), None)
    free = shutil.disk_usage(probe).free if probe else 0
    if free < need * 1.05:
        return f"needs {need / 2**30:.1f} GiB, {base} has {free / 2**30:.1f} GiB free"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    if ram and need > CACHE_RAM_SHARE * ram:
        return f"needs {need / 2**30:.1f} GiB, more than {CACHE_RAM_SHARE:.0%} of the node's {ram / 2**30:.0f} GiB RAM"
    return None


def resolve_for_trial(cfg: dict[str, Any], device: Any, data: Any | None) -> tuple[dict[str, Any], Resolved]:
    """``cfg`` with its ``auto`` keys decided for this process's device, CPUs and dataset."""
    uses_auto = cfg.get("pipeline") == AUTO
    problem = cache_problem(data, cfg) if data is not None and uses_auto else None
    resolved = resolve_auto(cfg, describe_device(device), trial_cpus(), problem)
    return {**cfg, **resolved.settings}, resolved


def planned_settings(configs: list[Mapping[str, Any]], gpu: bool, cpus: float) -> str:
    """What the trials of a search will run with, one line per method, for ``--dry-run``.

    The driver's machine is often not a trial's: a GPU trial is described as a
    modern CUDA device (capability unknown) and the pixel cache as able to
    serve (the dataset is not read in a dry run; a trial that finds no room
    falls back to PIL and says so in its first log line)."""
    from fgmodels.config import resolve_config

    lines = []
    for cfg in configs:
        cfg = resolve_config(dict(cfg))
        on_gpu = gpu and not str(cfg["device"]).startswith("cpu")  # e.g. the CPU demo pins device=cpu
        device = DeviceInfo("cuda", "the trial's GPU") if on_gpu else DeviceInfo("cpu")
        resolved = resolve_auto(cfg, device, max(1, int(cpus)))
        lines.append(f"{cfg.get('method', '?')}: {resolved.line()}")
    return "\n".join(lines)


__all__ = ["AUTO_KEYS", "DeviceInfo", "Resolved", "cache_problem", "describe_device", "planned_settings", "resolve_auto",
           "resolve_for_trial", "trial_cpus"]
