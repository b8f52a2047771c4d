"""Training speed of every method against a plain timm model, and of the data pipelines.

Not a test: a measurement to run on the machine you care about.

For each method it times a full training step (forward, backward, optimiser
step) of the method and of its *peer*, a plain single-branch timm model of the
same backbone with CE and the same optimiser. A method that runs the backbone
``P`` times per image (``backbone_passes``: gholm 3, racnn = scales, atcnn 2)
can at best reach ``peer / P`` images/s, so

    efficiency = ours_img_s / (peer_img_s / P)        (1.0 = no overhead beyond the passes)

and, since heads and attention modules add FLOPs that ``P`` does not count,
``TFLOP/s vs peer`` = achieved FLOP rate of ours / the peer's (1.0 = every
extra FLOP runs as fast as the backbone's; below: overhead such as small
kernels, host syncs, or ops that run slowly).

It also reports model FLOPs per training image (``FlopCounterMode`` over one
step, forward + backward), the achieved TFLOP/s and, on a known GPU, the share
of its dense bf16 peak; host syncs per step (CUDA sync debug mode); peak
memory against :mod:`fgmodels.memory`'s estimate; and the data pipelines'
images/s (PIL DataLoader vs uint8 cache + device augmentation) next to the
training step's.

    python benchmarks/bench_speed.py                       # CPU: tiny models, 64 px, ~2 minutes
    python benchmarks/bench_speed.py --preset gpu-full --out results/speed   # the GPU run
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, matched against torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = [
    ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A10G", 70.0), ("A10", 125.0),
    ("L4", 121.0), ("RTX 4090", 165.0), ("A6000", 155.0),
]

PRESETS: dict[str, dict[str, Any]] = {
    # "backbone": the method class attribute naming each method's backbone (the registry says
    # which): a tiny timm model the method accepts here, the paper's backbone on the GPU
    "cpu-tiny": {"img_size": 64, "batch_size": 8, "steps": 10, "warmup": 2, "amp": "off", "channels_last": False,
                 "backbone": "test_backbone", "pipeline_batches": 20, "workers": 0},
    "gpu-full": {"img_size": 448, "batch_size": 16, "steps": 30, "warmup": 8, "amp": "bf16", "channels_last": True,
                 "backbone": "default_backbone", "pipeline_batches": 60, "workers": 8},
}


def method_backbone(method: str, preset: dict[str, Any]) -> str:
    """The backbone a preset benchmarks ``method`` on, as the method class declares it."""
    from fgmodels.registry import get_method_class

    return getattr(get_method_class(method), preset["backbone"])


# ---------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_peak_tflops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)", None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return name, peak
    return name, None


def time_pair(step_a: Callable[[], None], step_b: Callable[[], None], steps: int, warmup: int,
              device: torch.device, rounds: int = 5) -> tuple[float, float]:
    """Median seconds per step of two step functions, timed in alternating rounds.

    Alternation makes the ratio robust to load that changes during the run
    (other jobs on a shared machine, GPU clocks); warm-up steps (compile, cuDNN
    autotune, allocator) are not timed.
    """
    for step in (step_a, step_b):
        for _ in range(warmup):
            step()
    sync(device)
    per_round = max(1, steps // rounds)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(max(1, min(rounds, steps))):
        for step, out in ((step_a, times[0]), (step_b, times[1])):
            sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            sync(device)
            out.append((time.perf_counter() - start) / per_round)
    return statistics.median(times[0]), statistics.median(times[1])


def count_flops(step: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def count_syncs(step: Callable[[], None], device: torch.device) -> int | None:
    """Host<->device synchronisations in one step (CUDA sync debug mode), None on CPU."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def make_step(model: nn.Module, forward_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, autocast) -> Callable[[], None]:
    def step() -> None:
        with autocast():
            loss = forward_loss(images, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


# ---------------------------------------------------------------- one method
def bench_method(method: str, backbone: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import timm

    from fgmodels.config import resolve_config
    from fgmodels.engine import autocast_for, compile_backbones
    from fgmodels.optim import build_optimizer, phase_at
    from fgmodels.registry import create_method

    cfg = resolve_config({
        "method": method, "backbone": backbone, "img_size": args.img_size, "batch_size": args.batch_size,
        "opt": args.opt, "lr": 1e-3, "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
        "data": "cub",
    })
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    b, s, c = args.batch_size, args.img_size, args.num_classes
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(b, 3, s, s, generator=gen).to(device).contiguous(memory_format=fmt)
    labels = (torch.arange(b) % c).to(device)

    def autocast():
        return autocast_for(cfg, device)

    row: dict[str, Any] = {"method": method, "backbone": backbone, "img_size": s, "batch": b, "amp": args.amp}

    # the peer: plain timm classifier, CE, same optimiser
    torch.manual_seed(0)
    peer = timm.create_model(backbone, pretrained=False, num_classes=c).to(device).to(memory_format=fmt)
    if args.compile:
        peer.forward = torch.compile(peer.forward)
    peer.train()
    peer_opt = build_optimizer(peer, cfg, phase_at(cfg, 0), device)
    peer_step = make_step(peer, lambda x, y: F.cross_entropy(peer(x), y), peer_opt, images, labels, autocast)

    torch.manual_seed(0)
    model = create_method(method, c, **cfg).to(device).to(memory_format=fmt)
    if args.compile:
        compile_backbones(model)
    model.train()
    model.on_epoch_start(0)
    opt = build_optimizer(model, cfg, phase_at(cfg, 0), device)
    ours_step = make_step(model, lambda x, y: model.training_step(x, y).loss, opt, images, labels, autocast)

    peer_s, ours_s = time_pair(peer_step, ours_step, args.steps, args.warmup, device)
    row["peer_img_s"], row["ours_img_s"] = b / peer_s, b / ours_s
    row["peer_gflop_img"] = count_flops(peer_step) / b / 1e9
    row["ours_gflop_img"] = count_flops(ours_step) / b / 1e9
    row["syncs_per_step"] = count_syncs(ours_step, device)
    del peer, peer_opt, peer_step
    if device.type == "cuda":  # the method's own peak, without the peer's weights around
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(2):
            ours_step()
        sync(device)
        row["peak_alloc_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    passes = int(getattr(model, "backbone_passes", 1))
    row["passes"] = passes
    row["efficiency"] = row["ours_img_s"] / (row["peer_img_s"] / passes)
    row["ours_tflop_s"] = row["ours_gflop_img"] * row["ours_img_s"] / 1e3
    row["peer_tflop_s"] = row["peer_gflop_img"] * row["peer_img_s"] / 1e3
    row["flop_efficiency"] = row["ours_tflop_s"] / row["peer_tflop_s"]  # < 1: slower than its FLOPs explain
    if args.memory:
        from fgmodels.memory import CUDA_OVERHEAD_GB, estimate_trial_memory_gb

        est = estimate_trial_memory_gb(cfg, num_classes=c, probe_device=str(device))
        row["est_mem_gb"] = est - CUDA_OVERHEAD_GB  # comparable to max_memory_allocated (no context)
    return row


# ---------------------------------------------------------------- data pipelines
def bench_pipelines(args: argparse.Namespace, device: torch.device, workdir: Path) -> list[dict[str, Any]]:
    """images/s of the PIL DataLoader and of the uint8 cache + device augmentation, on the synthetic set
    generated at a size whose default crop is ``img_size`` (so decode + resize cost is realistic)."""
    from fgmodels.config import resolve_config
    from fgmodels.data import build_datasets
    from fgmodels.data.gpu_augment import attach_pixel_cache
    from fgmodels.engine import _to_device, make_loader

    source_px = max(48, int(round(args.img_size * 80 / 64)))  # the synthetic defaults crop 64 of 80
    base = {"data": "synthetic", "data_root": str(workdir / "synthetic"), "synthetic_image_size": source_px,
            "synthetic_per_class": args.pipeline_per_class, "img_size": args.img_size, "workers": args.workers,
            "channels_last": args.channels_last, "device": str(device)}
    rows = []
    for pipe in ("pil", "cache"):
        cfg = resolve_config({**base, "pipeline": pipe})
        data = build_datasets(cfg)
        build_s = None
        if pipe == "cache":
            start = time.perf_counter()
            attach_pixel_cache(data, cfg)
            build_s = time.perf_counter() - start
        gen = torch.Generator().manual_seed(0)

        def run(batches: int) -> tuple[int, float]:
            """Like the engine: a fresh loader per epoch, batches moved to the device."""
            seen, start = 0, time.perf_counter()
            while seen < batches * args.batch_size:
                for images, labels in make_loader(data.train, args.batch_size, True, cfg, device, gen):
                    images, labels = _to_device(images, labels, device, cfg)
                    seen += labels.numel()
                    if seen >= batches * args.batch_size:
                        break
            sync(device)
            return seen, time.perf_counter() - start

        run(3)  # warm-up: workers, page cache, device kernels
        seen, elapsed = run(args.pipeline_batches)
        rows.append({"pipeline": pipe, "img_s": seen / max(elapsed, 1e-9), "workers": args.workers if pipe == "pil" else 0,
                     "source_px": source_px, "img_size": args.img_size, "cache_build_s": build_s,
                     "images": len(data.train)})
    return rows


# ---------------------------------------------------------------- output
METHOD_COLS = [
    ("method", "method", "{}"), ("backbone", "backbone", "{}"), ("passes", "passes", "{}"),
    ("peer_img_s", "peer img/s", "{:.1f}"), ("ours_img_s", "ours img/s", "{:.1f}"),
    ("efficiency", "efficiency", "{:.2f}"), ("peer_gflop_img", "peer GFLOP/img", "{:.3g}"),
    ("ours_gflop_img", "ours GFLOP/img", "{:.3g}"), ("ours_tflop_s", "ours TFLOP/s", "{:.3g}"),
    ("flop_efficiency", "TFLOP/s vs peer", "{:.2f}"),
    ("mfu", "% of bf16 peak", "{:.1f}"), ("syncs_per_step", "syncs/step", "{}"),
    ("peak_alloc_gb", "peak alloc GB", "{:.2f}"), ("est_mem_gb", "est. GB", "{:.2f}"),
    ("data_over_step", "data/step", "{:.1f}"),
]


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    val = row.get(key)
    return "-" if val is None else fmt.format(val)


def markdown(rows: list[dict[str, Any]], pipes: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    cols = [c for c in METHOD_COLS if any(r.get(c[0]) is not None for r in rows)]
    lines = [f"Device: {meta['device_name']}; img {meta['img_size']} px, batch {meta['batch_size']}, "
             f"amp {meta['amp']}, channels_last {meta['channels_last']}, compile {meta['compile']}, "
             f"opt {meta['opt']}, {meta['steps']} timed steps after {meta['warmup']} warm-up, "
             f"torch {meta['torch']}, {meta['threads']} CPU threads.", ""]
    lines.append("| " + " | ".join(c[1] for c in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k, f) for k, _, f in cols) + " |")
    if pipes:
        lines += ["", "| pipeline | img/s | PIL workers | source px -> crop | cache build s | train images |", "|---|---|---|---|---|---|"]
        for p in pipes:
            build = "-" if p["cache_build_s"] is None else f"{p['cache_build_s']:.1f}"
            lines.append(f"| {p['pipeline']} | {p['img_s']:.1f} | {p['workers']} | {p['source_px']} -> {p['img_size']} "
                         f"| {build} | {p['images']} |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: list[dict[str, Any]], pipes: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.md").write_text(markdown(rows, pipes, meta))
    keys = sorted({k for r in rows for k in r})
    with open(out / "speed.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    if pipes:
        with open(out / "pipeline.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(pipes[0]))
            w.writeheader()
            w.writerows(pipes)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    names = [r["method"] for r in rows]
    x = range(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    wdt = 0.27
    ax1.bar([i - wdt for i in x], [r["peer_img_s"] for r in rows], wdt, label="peer (timm, 1 pass)")
    ax1.bar(list(x), [r["peer_img_s"] / r["passes"] for r in rows], wdt, label="peer / passes (ideal)")
    ax1.bar([i + wdt for i in x], [r["ours_img_s"] for r in rows], wdt, label="ours")
    for p in pipes:
        ax1.axhline(p["img_s"], ls="--", lw=1, color="k" if p["pipeline"] == "cache" else "grey",
                    label=f"data: {p['pipeline']}")
    ax1.set_xticks(list(x), names)
    ax1.set_ylabel("training images / s")
    ax1.set_yscale("log")
    ax1.legend(fontsize=7, loc="lower left")
    ax2.bar(list(x), [r["efficiency"] for r in rows], color="tab:green")
    ax2.axhline(0.8, ls="--", color="k", lw=1, label="target 0.8")
    ax2.set_xticks(list(x), names)
    ax2.set_ylabel("efficiency = ours / (peer / passes)")
    ax2.legend(fontsize=7)
    fig.suptitle(f"{meta['device_name']}, {meta['img_size']} px, batch {meta['batch_size']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "speed.png", dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from fgmodels.registry import list_methods

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="defaults for the other options (cpu-tiny on CPU, else gpu-full)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--img-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--backbone", help="one backbone for every method (default: each method's own, see PRESETS)")
    p.add_argument("--methods", default=",".join(list_methods()), help="comma-separated, default: all registered")
    p.add_argument("--steps", type=int, help="timed steps per model")
    p.add_argument("--warmup", type=int)
    p.add_argument("--amp", choices=["bf16", "off"])
    p.add_argument("--channels-last", dest="channels_last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the backbones (and the peer)")
    p.add_argument("--opt", default="sgd", help="optimiser of both models (fused on CUDA)")
    p.add_argument("--num-classes", type=int, default=200)
    p.add_argument("--workers", type=int, help="PIL DataLoader workers in the pipeline benchmark")
    p.add_argument("--pipeline-batches", type=int, help="batches timed per data pipeline (0: skip)")
    p.add_argument("--pipeline-per-class", type=int, default=60, help="synthetic images per class (10 classes)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory estimate column")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on CPU, torch's default on GPU)")
    p.add_argument("--out", type=Path, help="folder for speed.md, speed.csv, pipeline.csv, speed.png")
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from fgmodels.engine import pick_device
    from fgmodels.registry import list_methods

    args = parse_args(argv)
    device = pick_device(args.device)
    preset = PRESETS[args.preset or ("gpu-full" if device.type == "cuda" else "cpu-tiny")]
    for key in ("img_size", "batch_size", "steps", "warmup", "amp", "channels_last", "workers", "pipeline_batches"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.threads is None and device.type == "cpu":
        args.threads = 1  # a shared, loaded CPU: more threads mostly spin
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(list_methods()))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; registered: {list_methods()}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name, peak = device_peak_tflops(device)
    meta = {"device_name": name, "bf16_peak_tflops": peak, "img_size": args.img_size, "batch_size": args.batch_size,
            "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile, "opt": args.opt,
            "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "preset": args.preset, "argv": sys.argv[1:]}
    print(f"# {name}: img {args.img_size}, batch {args.batch_size}, amp {args.amp}, channels_last {args.channels_last}",
          flush=True)
    rows = []
    for method in methods:
        backbone = args.backbone or method_backbone(method, preset)
        start = time.perf_counter()
        row = bench_method(method, backbone, args, device)
        if peak:
            row["mfu"] = 100.0 * row["ours_tflop_s"] / peak
        rows.append(row)
        print(f"{method:9s} {backbone:15s} peer {row['peer_img_s']:8.1f} img/s  ours {row['ours_img_s']:8.1f} img/s  "
              f"passes {row['passes']}  efficiency {row['efficiency']:.2f}  "
              f"{row['ours_gflop_img']:.3g} GFLOP/img  {row['ours_tflop_s']:.3g} TFLOP/s  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    pipes: list[dict[str, Any]] = []
    if args.pipeline_batches:
        old = os.environ.get("FGVC_CACHE_DIR")
        with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
            os.environ["FGVC_CACHE_DIR"] = str(Path(tmp) / "cache")  # a throw-away pixel cache
            try:
                pipes = bench_pipelines(args, device, Path(tmp))
            finally:
                if old is None:
                    os.environ.pop("FGVC_CACHE_DIR", None)
                else:
                    os.environ["FGVC_CACHE_DIR"] = old
        for p in pipes:
            print(f"data {p['pipeline']:5s} {p['img_s']:8.1f} img/s (workers {p['workers']}, "
                  f"{p['source_px']} px -> {p['img_size']})", flush=True)
        cache_rate = next(p["img_s"] for p in pipes if p["pipeline"] == "cache")
        for r in rows:
            r["data_over_step"] = cache_rate / r["ours_img_s"]
    print()
    print(markdown(rows, pipes, meta))
    if args.out:
        write_outputs(args.out, rows, pipes, meta)
        print(f"wrote {args.out}/speed.md, speed.csv, pipeline.csv, speed.png")
    return rows


if __name__ == "__main__":
    main()
