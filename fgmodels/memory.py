"""How much GPU memory one trial needs, so several trials can share a GPU safely.

A search with ``--gpus-per-trial 0.25`` puts four trials on one GPU; if their
sum does not fit, all four die with out-of-memory errors hours in (or, with the
engine's OOM fallback, crawl at a quarter of the batch). :func:`check_gpu_fraction`
refuses such a fraction up front.

The model of one trial's peak memory (bytes):

* ``overhead``: CUDA context, cuBLAS/cuDNN workspaces, the data batches: a fixed
  ``CUDA_OVERHEAD_GB`` per process (each trial is its own process);
* ``weights`` (fp32 parameters and buffers), ``grads`` (fp32, trainable
  parameters) and ``optimizer`` state (SGD with momentum: 1 copy, Adam-like: 2);
* ``activations``: what autograd keeps for backward, measured, not guessed: the
  method's real ``training_step`` is run on the CPU at two small resolutions
  and two micro-batch sizes while :func:`saved_tensor_bytes` sums the distinct
  storages autograd saves (parameters excluded). A fit
  ``C + b * (p0 + p2 * r**2)`` separates what does not grow with the batch
  (``C``: autocast's bf16 weight copies) from what grows with it, and the r**2
  term from the resolution-free part (pooled vectors, bilinear features).
  Under bf16 autocast the probe runs under CPU autocast, so activations are
  counted at their bf16 size. Every branch and backbone pass of the method is
  in the measurement, because it is the method's own step;
* the dynamic part (activations, grads, batch) is multiplied by
  ``BACKWARD_FACTOR`` for the gradients of activations alive during backward
  and allocator fragmentation.

Accuracy: the saved-tensor count is exact
(tests check it against a hand count); scaling from the 96/160 px probes to
448 px is exact for stride-32 CNNs at multiples of 32. The end-to-end peak was
checked on the CPU only (no GPU here): see :func:`measure_cpu_step_peak_bytes`.
On CUDA, expect the estimate to be within about +-20 %: cuDNN workspaces and
the caching allocator's fragmentation are not measured here; the constants
err on the safe side (fractions are refused rather than over-packed).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from fgmodels.runtime import micro_batch_size, uses_bf16

GB = 2**30
CUDA_OVERHEAD_GB = 1.0  # context (~0.5 GB on Hopper) + cuBLAS/cuDNN workspaces + batches
BACKWARD_FACTOR = 1.25  # activation grads during backward + allocator fragmentation
USABLE_FRACTION = 0.95  # never plan to fill a GPU to the last byte
PROBE_SIZES = (96, 160)  # multiples of 32: stride-32 backbones scale exactly; >= 75 for inception_v3
PROBE_BATCHES = (2, 4)

# optimiser state in fp32 copies of the trainable parameters
_OPT_STATE = {"sgd": 1, "momentum": 1, "nesterov": 1, "adam": 2, "adamw": 2, "nadam": 2, "radam": 2,
              "lamb": 2, "lambc": 2, "adabelief": 2, "adamp": 2, "adan": 3, "lars": 1, "rmsprop": 1,
              "adagrad": 1, "adafactor": 1, "lion": 1}


# ---------------------------------------------------------------- measurement
def saved_tensor_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> tuple[int, Any]:
    """``(bytes, fn())``: the bytes of distinct storages autograd saves for backward while ``fn`` runs.

    Counted once per storage (views of one tensor share it); storages of the
    tensors in ``exclude`` (the model's parameters) are left out. The saved
    tensors are kept alive during the count, so no address is reused.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}
    keep: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in skip and ptr not in seen:
            seen[ptr] = storage.nbytes()
            keep.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    total = sum(seen.values())
    del keep
    return total, out


@dataclass(frozen=True)
class ActivationProfile:
    """Saved-for-backward bytes of one training step: ``const + batch * (per_image0 + per_pixel * r**2)``."""

    const: float
    per_image0: float
    per_pixel: float

    def bytes(self, batch: int, size: int) -> float:
        return max(0.0, self.const) + batch * max(0.0, self.per_image0 + self.per_pixel * size * size)


def _build(cfg: dict[str, Any], num_classes: int) -> nn.Module:
    from fgmodels.registry import create_method

    torch.manual_seed(0)
    model = create_method(cfg["method"], num_classes, **{**cfg, "pretrained": False, "checkpoint_path": None})
    model.train()
    model.on_epoch_start(0)
    return model


def _step_saved_bytes(model: nn.Module, batch: int, size: int, num_classes: int, bf16: bool) -> int:
    device = next(model.parameters()).device
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.arange(batch, device=device) % num_classes
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step():
        with ctx:
            return model.training_step(images, labels).loss

    nbytes, _ = saved_tensor_bytes(step, exclude=list(model.parameters()) + list(model.buffers()))
    return nbytes


def _profile_key(cfg: dict[str, Any], num_classes: int) -> str:
    from fgmodels.registry import method_hparams

    keys = ["method", "backbone", "drop_rate", *sorted(method_hparams(cfg["method"]))]
    return json.dumps({"cfg": {k: cfg[k] for k in keys}, "n": num_classes, "bf16": uses_bf16(cfg, "cuda")},
                      sort_keys=True, default=str)


@lru_cache(maxsize=64)
def _activation_profile(key: str, device: str = "cpu") -> ActivationProfile:
    from fgmodels.config import resolve_config

    data = json.loads(key)
    cfg = resolve_config({**data["cfg"], "amp": "bf16" if data["bf16"] else "off"})
    num_classes, bf16 = int(data["n"]), bool(data["bf16"])
    model = _build(cfg, num_classes).to(device)
    (b1, b2), (lo, hi) = PROBE_BATCHES, PROBE_SIZES
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny probes: extra threads only contend
    try:
        m_b1_hi = _step_saved_bytes(model, b1, hi, num_classes, bf16)
        m_b2_hi = _step_saved_bytes(model, b2, hi, num_classes, bf16)
        m_b2_lo = _step_saved_bytes(model, b2, lo, num_classes, bf16)
    finally:
        torch.set_num_threads(threads)
    slope_hi = (m_b2_hi - m_b1_hi) / (b2 - b1)
    const = m_b1_hi - b1 * slope_hi
    slope_lo = (m_b2_lo - const) / b2
    per_pixel = (slope_hi - slope_lo) / (hi * hi - lo * lo)
    return ActivationProfile(const=const, per_image0=slope_hi - per_pixel * hi * hi, per_pixel=per_pixel)


def activation_profile(cfg: dict[str, Any], num_classes: int = 200, probe_device: str = "cpu") -> ActivationProfile:
    """Measured (and cached per method/backbone/knobs) activation model of a config.

    ``probe_device="cuda"`` measures under CUDA autocast (exactly the training
    dtypes, and fast); the CPU default keeps a search driver off the GPU."""
    from fgmodels.config import resolve_config

    return _activation_profile(_profile_key(resolve_config(cfg), int(num_classes)), str(probe_device))


# ---------------------------------------------------------------- the estimate
def _param_counts(cfg: dict[str, Any], num_classes: int) -> tuple[int, int, int]:
    """(parameter+buffer bytes, trainable parameter count, all parameter count)."""
    model = _build(cfg, num_classes)
    pbytes = sum(p.numel() * 4 for p in model.parameters()) + sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return pbytes, trainable, sum(p.numel() for p in model.parameters())


@lru_cache(maxsize=64)
def _param_counts_cached(key: str) -> tuple[int, int, int]:
    from fgmodels.config import resolve_config

    data = json.loads(key)
    return _param_counts(resolve_config(data["cfg"]), int(data["n"]))


def _opt_copies(name: str, momentum: float) -> int:
    name = name.lower().split("_")[-1]
    copies = _OPT_STATE.get(name, 2)
    if name == "sgd" and not momentum:
        copies = 0
    return copies


def memory_breakdown(cfg: dict[str, Any], num_classes: int = 200, probe_device: str = "cpu") -> dict[str, float]:
    """Estimated peak GPU memory of one trial by part, in GiB (``total`` included)."""
    from fgmodels.config import resolve_config
    from fgmodels.data.dataset import resolve_sizes
    from fgmodels.optim import phases

    cfg = resolve_config(cfg)
    img_size, _ = resolve_sizes(cfg)
    micro = micro_batch_size(cfg["batch_size"], cfg["accum_steps"])
    key = _profile_key(cfg, int(num_classes))
    weight_bytes, trainable, _ = _param_counts_cached(key)
    copies = max(_opt_copies(p.opt, float(cfg["momentum"])) for p in phases(cfg))
    act = _activation_profile(key, str(probe_device)).bytes(micro, img_size)
    batch = micro * 3 * img_size**2 * (1 + 4 * 3)  # uint8 source + a few float32 copies (crop/drop views)
    parts = {
        "overhead": CUDA_OVERHEAD_GB,
        "weights": weight_bytes / GB,
        "grads": trainable * 4 / GB,
        "optimizer": copies * trainable * 4 / GB,
        "activations": act / GB,
        "batch": batch / GB,
    }
    dynamic = parts["activations"] + parts["grads"] + parts["batch"]
    parts["backward_margin"] = (BACKWARD_FACTOR - 1.0) * dynamic
    parts["total"] = sum(parts.values())
    parts["micro_batch"] = float(micro)
    parts["img_size"] = float(img_size)
    return parts


def checkpoint_state_bytes(cfg: dict[str, Any], num_classes: int = 200) -> int:
    """Size of one saved training state of ``cfg`` (what a checkpoint's ``state.pt``
    holds): parameters and buffers plus the optimiser's per-parameter state
    (momentum: one copy, Adam: two). Used to bound a search's disk use."""
    from fgmodels.config import resolve_config
    from fgmodels.optim import phases

    cfg = resolve_config(cfg)
    pbytes, trainable, _ = _param_counts_cached(_profile_key(cfg, int(num_classes)))
    copies = max(_opt_copies(p.opt, float(cfg["momentum"])) for p in phases(cfg))  # the largest phase's state
    return int(pbytes + trainable * 4 * copies)


def estimate_trial_memory_gb(cfg: dict[str, Any], num_classes: int = 200, probe_device: str = "cpu") -> float:
    """Estimated peak GPU memory (GiB) of one trial of ``cfg`` (micro-batch = batch_size // accum_steps)."""
    return memory_breakdown(cfg, num_classes, probe_device)["total"]


def max_trials_per_gpu(cfg: dict[str, Any], gpu_memory_gb: float, num_classes: int = 200) -> int:
    """How many trials of ``cfg`` fit on one GPU of ``gpu_memory_gb`` GiB (0: not even one)."""
    if gpu_memory_gb <= 0:
        raise ValueError(f"gpu_memory_gb must be positive, got {gpu_memory_gb!r}")
    return int(math.floor(gpu_memory_gb * USABLE_FRACTION / estimate_trial_memory_gb(cfg, num_classes)))


def check_gpu_fraction(cfg: dict[str, Any], fraction: float, gpu_memory_gb: float, num_classes: int = 200) -> None:
    """Raise ``ValueError`` if trials given ``fraction`` of a GPU each cannot fit in its memory.

    Ray packs ``floor(1 / fraction)`` trials on a GPU; a fraction of 1 or more
    means one trial per GPU (the engine uses one device). 0 = CPU trials: nothing to check.
    """
    if fraction < 0:
        raise ValueError(f"GPU fraction must be >= 0, got {fraction!r}")
    if fraction == 0:
        return
    per_gpu = max(1, int(math.floor(1.0 / fraction + 1e-9))) if fraction < 1 else 1
    est = estimate_trial_memory_gb(cfg, num_classes)
    usable = gpu_memory_gb * USABLE_FRACTION
    if per_gpu * est <= usable:
        return
    fits = int(math.floor(usable / est))
    what = f"{cfg.get('method', 'baseline')} on {cfg.get('backbone', 'its default backbone')}"
    if fits == 0:
        raise ValueError(
            f"one trial of {what} needs about {est:.1f} GiB but the GPU has {gpu_memory_gb:.0f} GiB "
            f"({usable:.1f} usable); lower batch_size, raise accum_steps or lower img_size"
        )
    raise ValueError(
        f"--gpus-per-trial {fraction:g} puts {per_gpu} trials on each {gpu_memory_gb:.0f} GiB GPU, but one trial "
        f"of {what} needs about {est:.1f} GiB ({per_gpu} x {est:.1f} > {usable:.1f} usable); "
        f"use --gpus-per-trial {1.0 / fits:.3g} ({fits} per GPU) or more"
    )


# ---------------------------------------------------------------- calibration on the CPU
def measure_cpu_step_peak_bytes(cfg: dict[str, Any], num_classes: int = 200, steps: int = 2) -> dict[str, float]:
    """Measured vs estimated dynamic memory of a real training step, on the CPU.

    Peak resident memory (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``)
    during forward + backward + optimiser step, minus the resident memory before
    it (weights and optimiser state already allocated); compared with the
    estimate's dynamic part (activations + grads + batch, times the backward
    factor). Used to document the estimate's accuracy; needs Linux.
    """
    from fgmodels.config import resolve_config
    from fgmodels.data.dataset import resolve_sizes
    from fgmodels.optim import phase_at, build_optimizer

    cfg = resolve_config({**cfg, "amp": "off"})
    img_size, _ = resolve_sizes(cfg)
    micro = micro_batch_size(cfg["batch_size"], cfg["accum_steps"])
    model = _build(cfg, num_classes)
    opt = build_optimizer(model, cfg, phase_at(cfg, 0), torch.device("cpu"))
    images = torch.randn(micro, 3, img_size, img_size)
    labels = torch.arange(micro) % num_classes

    def step() -> None:
        model.training_step(images, labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    _malloc_returns_large_blocks()
    step()  # optimiser state allocated, allocator warmed
    peaks = []
    for _ in range(steps):
        rss_before = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak-RSS counter
        step()
        peaks.append((_status_kb("VmHWM") - rss_before) * 1024)
    parts = memory_breakdown({**cfg, "amp": "off"}, num_classes)
    predicted = (parts["activations"] + parts["grads"] + parts["batch"] + parts["backward_margin"]) * GB
    measured = float(min(peaks))
    return {"measured_gb": measured / GB, "estimated_gb": predicted / GB, "ratio": predicted / max(measured, 1.0)}


def _malloc_returns_large_blocks() -> None:
    """Make glibc serve blocks >= 128 KiB by mmap (and give them back on free), so
    resident memory follows live tensors instead of the heap's high-water mark."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (fixing it also stops glibc raising it)
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    except OSError:
        pass


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


__all__ = [
    "ActivationProfile", "activation_profile", "check_gpu_fraction", "estimate_trial_memory_gb",
    "max_trials_per_gpu", "measure_cpu_step_peak_bytes", "memory_breakdown", "saved_tensor_bytes",
]
