"""What ``compile: true`` costs and gains, once per method: eager vs compiled training step.

Not a test (compiling is slow on a CPU): a measurement. For each method it
times a full training step (forward, backward, SGD step) eager, then with the
backbones compiled (:func:`fgmodels.runtime.compile_backbones`, what the loop
does), and counts TorchDynamo's work: the compile time of the first step, the
recompiles during the following training steps (new input shapes, guards that
fail), the extra compiles of one ``predict`` in eval mode, and graph breaks.
A method whose training steps recompile is a candidate for ``dynamic_shapes =
True`` (``compile: auto`` then stays off for it, see fgmodels/auto.py).

    python benchmarks/bench_compile.py --out benchmarks/results_cpu          # CPU: tiny backbones, 48 px
    python benchmarks/bench_compile.py --device cuda --img-size 448 --backbone default_backbone --out results/compile
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _frames() -> tuple[int, int]:
    """(frames compiled so far, graph breaks so far) from TorchDynamo's counters."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["total"]), int(sum(counters["graph_break"].values()))


def bench_one(method: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from fgmodels.config import resolve_config
    from fgmodels.optim import build_optimizer, phase_at
    from fgmodels.registry import create_method, get_method_class
    from fgmodels.runtime import autocast_for, compile_backbones

    cls = get_method_class(method)
    backbone = getattr(cls, args.backbone, None) or args.backbone
    cfg = resolve_config({"method": method, "backbone": backbone, "img_size": args.img_size, "opt": "sgd",
                          "lr": 1e-3, "amp": args.amp, "device": str(device)})
    b, s = args.batch_size, args.img_size
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(b, 3, s, s, generator=gen).to(device), (torch.arange(b) % 3).to(device))
               for _ in range(args.steps)]

    def timed(compiled: bool) -> tuple[list[float], Any, int]:
        torch.manual_seed(0)
        model = create_method(method, 3, **cfg).to(device).train()
        if compiled:
            compile_backbones(model)
        model.on_epoch_start(0)
        opt = build_optimizer(model, cfg, phase_at(cfg, 0), device)
        times, first = [], 0
        for images, labels in batches:  # a different batch each step, as in training
            _sync(device)
            start = time.perf_counter()
            with autocast_for(cfg, device):
                loss = model.training_step(images, labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            times.append(time.perf_counter() - start)
            if len(times) == 1:
                first = _frames()[0]  # frames of the compile itself; any later one is a recompile
        return times, model, first

    torch._dynamo.reset()
    eager, _, _ = timed(False)
    row: dict[str, Any] = {"method": method, "backbone": backbone, "img_size": s, "batch": b, "steps": args.steps,
                           "eager_ms": 1e3 * statistics.median(eager[1:])}
    before = _frames()
    try:
        compiled, model, first = timed(True)
    except Exception as err:  # a method that cannot be compiled is a result, not a crash of the table
        return {**row, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    after_steps = _frames()
    model.eval()
    with torch.no_grad(), autocast_for(cfg, device):
        model.predict(batches[0][0])
    after_predict = _frames()
    return {
        **row, "compiled_ms": 1e3 * statistics.median(compiled[1:]),
        "first_compiled_step_s": compiled[0],
        "recompiles": after_steps[0] - first,
        "predict_compiles": after_predict[0] - after_steps[0],
        "graph_breaks": after_predict[1] - before[1],
    }


COLS = [("method", "method", "{}"), ("backbone", "backbone", "{}"), ("eager_ms", "eager ms/step", "{:.1f}"),
        ("compiled_ms", "compiled ms/step", "{:.1f}"), ("speedup", "speed-up", "{:.2f}"),
        ("first_compiled_step_s", "first compiled step s", "{:.1f}"), ("recompiles", "recompiles", "{}"),
        ("predict_compiles", "predict compiles", "{}"), ("graph_breaks", "graph breaks", "{}")]


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Device: {meta['device']}; img {meta['img_size']} px, batch {meta['batch_size']}, amp {meta['amp']}, "
             f"{meta['steps']} training steps per model (median of the last {meta['steps'] - 1}), "
             f"torch {meta['torch']}, {meta['threads']} CPU threads. recompiles: frames compiled after the first "
             f"step; predict compiles: frames compiled by one eval-mode predict.", "",
             "| " + " | ".join(c[1] for c in COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        lines.append("| " + " | ".join("-" if r.get(k) is None else f.format(r[k]) for k, _, f in COLS) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Compiled step failed:", *[f"- {r['method']}: `{r['error']}`" for r in failed]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from fgmodels.registry import list_methods
    from fgmodels.runtime import pick_device

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default=",".join(list_methods()))
    p.add_argument("--backbone", default="test_backbone",
                   help="a timm name, or a method class attribute: test_backbone | default_backbone")
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="training steps per model (the first is not timed)")
    p.add_argument("--amp", default="off", choices=["off", "bf16"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, help="folder for compile.md and compile.json")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        start = time.perf_counter()
        row = bench_one(method, args, device)
        rows.append(row)
        if row.get("error"):
            print(f"{method:9s} eager {row['eager_ms']:8.1f} ms  compiled: {row['error']}", flush=True)
            continue
        row["speedup"] = row["eager_ms"] / row["compiled_ms"]
        print(f"{method:9s} eager {row['eager_ms']:8.1f} ms  compiled {row['compiled_ms']:8.1f} ms  "
              f"recompiles {row['recompiles']}  predict compiles {row['predict_compiles']}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    meta = {"device": name, "img_size": args.img_size, "batch_size": args.batch_size, "amp": args.amp,
            "steps": args.steps, "torch": torch.__version__, "threads": torch.get_num_threads()}
    text = markdown(rows, meta)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compile.md").write_text(text)
        (args.out / "compile.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
