"""The GPU acceptance run: one script, at most ~10 minutes on one GPU, tables under benchmarks/results_gpu/.

(a) ``bench_speed.py --preset gpu-full``: every method at its paper backbone at
    448 px against the plain timm step in the same run. Targets: GHOLM on
    ConvNeXt-S efficiency >= 0.8 (ours >= 0.8 x peer img/s / 3), and the cached
    data pipeline >= 2x each method's training img/s.
(b) a real 8-trial GHOLM search on a synthetic set at 448 px on one GPU with the
    ``auto`` runtime defaults (each trial's saved config says what they became).
(c) packing: 1, 2 and 4 GHOLM trials per GPU (``--gpus-per-trial 1, 0.5, 0.25``):
    total img/s and peak GPU memory (nvidia-smi) against the memory
    estimator's prediction (:func:`fgmodels.memory.estimate_trial_memory_gb`).

    python benchmarks/gpu_acceptance.py                      # on the GPU machine
    ACCEPT_TINY=1 python benchmarks/gpu_acceptance.py        # CPU rehearsal: tiny sizes, same code paths

Environment: ``ACCEPT_OUT`` (default benchmarks/results_gpu), ``ACCEPT_TINY=1``,
``ACCEPT_PARTS`` (e.g. ``a,c``), ``ACCEPT_TOTAL_S`` (default 570: every part's
time limit is cut to what is left of it). Each part runs in a subprocess with its own
time limit, so one that fails or overruns still leaves the others' tables.
Writes ``acceptance.md`` (targets, pass/fail), ``search.md``, ``packing.md``
and bench_speed's files in ``speed/``.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TINY = os.environ.get("ACCEPT_TINY") == "1"
OUT = Path(os.environ.get("ACCEPT_OUT") or ROOT / "benchmarks" / "results_gpu")
PARTS = set((os.environ.get("ACCEPT_PARTS") or "a,b,c").split(","))
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "disabled"}

# one search configuration for (b) and (c); pretrained off: the GPU machine has no internet
IMG = ["img_size=32", "resize_size=36", "synthetic_image_size=48"] if TINY else \
      ["img_size=448", "resize_size=480", "synthetic_image_size=512"]
DATA = ["synthetic_per_class=6", "max_train_batches=2", "max_eval_batches=1"] if TINY else \
       ["synthetic_per_class=20", "max_train_batches=8", "max_eval_batches=2"]
FIXED = ["pretrained=false", *IMG, *DATA]
PACK_FIXED = [*FIXED, "batch_size=16", "backbone=" + ("test_resnet" if TINY else "convnext_small")]
LIMITS = {"a": 150 if TINY else 180, "b": 180, "c": 210}  # seconds per part; (c) splits its share over 3 runs
TOTAL_S = float(os.environ.get("ACCEPT_TOTAL_S") or 570)  # the whole script stays under a 10-minute device call
DEADLINE = time.monotonic() + TOTAL_S


def run(cmd: list[str], limit: float, log: Path) -> tuple[int, float]:
    """Run ``cmd`` with a time limit; stdout+stderr to ``log``; (exit code, seconds)."""
    start = time.perf_counter()
    limit = max(1.0, min(limit, DEADLINE - time.monotonic()))
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=ENV, stdout=fh, stderr=subprocess.STDOUT, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - start


class GpuMemory:
    """Peak ``memory.used`` (GB) of GPU 0 sampled by nvidia-smi every 0.5 s; None without a GPU."""

    def __init__(self) -> None:
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                used = float(out.strip().splitlines()[0]) * 2**20 / 1e9  # MiB -> GB
                self.peak = used if self.peak is None else max(self.peak, used)
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self._stop.wait(0.5)

    def __enter__(self) -> "GpuMemory":
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()


def search_cmd(name: str, storage: Path, data_root: Path, samples: int, gpus: float, extra: list[str],
               fixed: list[str]) -> list[str]:
    cmd = [PY, "run_search.py", "--space", "gholm", "--data", "synthetic", "--data-root", str(data_root),
           "--storage", str(storage), "--name", name, "--num-samples", str(samples), "--max-epochs", "2",
           "--gpus-per-trial", str(gpus), "--wandb", "off", "--no-test", *extra]
    cmd += ["--smoke"] if TINY else ["--no-smoke"]
    for kv in fixed:
        cmd += ["--set", kv]
    return cmd


def trial_results(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's reported records (Ray's result.json lines), by trial id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in folder.rglob("result.json"):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                out.setdefault(str(rec.get("trial_id", path.parent.name)), []).append(rec)
    return out


def runtime_settings(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The decided ``auto`` keys from a trial's first report (its resolved config)."""
    for rec in records:
        if rec.get("trial_config"):
            cfg = json.loads(rec["trial_config"]) if isinstance(rec["trial_config"], str) else rec["trial_config"]
            return {k: cfg.get(k) for k in ("amp", "pipeline", "workers", "channels_last", "compile")}
    return {}


# ---------------------------------------------------------------- (a) speed
def part_a() -> list[str]:
    speed = OUT / "speed"
    cmd = [PY, "benchmarks/bench_speed.py", "--out", str(speed)]
    cmd += (["--preset", "cpu-tiny", "--device", "cpu", "--methods", "baseline,gholm", "--steps", "2", "--warmup", "1",
             "--pipeline-batches", "3", "--no-memory"] if TINY else ["--preset", "gpu-full", "--pipeline-per-class", "20"])
    rc, secs = run(cmd, LIMITS["a"], OUT / "speed.log")
    lines = [f"(a) bench_speed: exit {rc} in {secs:.0f} s"]
    if not (speed / "speed.csv").is_file():
        return lines + ["  no speed.csv: see speed.log"]
    rows = list(csv.DictReader(open(speed / "speed.csv")))
    for r in rows:
        if r["method"] == "gholm":
            eff = float(r["efficiency"])
            lines.append(f"  gholm on {r['backbone']}: {float(r['ours_img_s']):.1f} img/s vs peer "
                         f"{float(r['peer_img_s']):.1f} / 3 -> efficiency {eff:.2f} (target >= 0.8): "
                         f"{'PASS' if eff >= 0.8 else 'FAIL'}")
    for r in rows:
        if r.get("data_over_step"):
            ratio = float(r["data_over_step"])
            lines.append(f"  data pipeline / {r['method']} step: {ratio:.1f}x (target >= 2): {'PASS' if ratio >= 2 else 'FAIL'}")
    return lines


# ---------------------------------------------------------------- (b) search
def part_b(work: Path) -> list[str]:
    samples = 2 if TINY else 8
    gpus = 0 if TINY else 1
    cmd = search_cmd("gholm8", work / "searches", work / "data", samples, gpus, [], FIXED)
    with GpuMemory() as mem:
        rc, secs = run(cmd, LIMITS["b"], OUT / "search.log")
    trials = trial_results(work / "searches" / "gholm8")
    epochs = sum(1 for recs in trials.values() for r in recs if "epoch" in r)
    rates = [statistics.median([r["train_images_per_s"] for r in recs if "train_images_per_s" in r] or [0])
             for recs in trials.values()]
    settings = {json.dumps(runtime_settings(recs), sort_keys=True) for recs in trials.values()}
    text = [f"# {samples}-trial GHOLM search, synthetic set, {' '.join(IMG)}", "",
            f"exit {rc}, {secs:.0f} s wall, {len(trials)} trials reported, {epochs} epochs in all, "
            f"median trial {statistics.median(rates) if rates else 0:.1f} train img/s, "
            f"peak GPU memory {'-' if mem.peak is None else f'{mem.peak:.1f}'} GB", "",
            "runtime settings the trials decided (auto):", *[f"- {s}" for s in sorted(settings)], "",
            "command: `" + " ".join(cmd[1:]) + "`"]
    (OUT / "search.md").write_text("\n".join(text) + "\n")
    ok = rc == 0 and len(trials) == samples
    return [f"(b) search: exit {rc} in {secs:.0f} s, {len(trials)}/{samples} trials: {'PASS' if ok else 'FAIL'}",
            *[f"  {s}" for s in sorted(settings)]]


# ---------------------------------------------------------------- (c) packing
def predicted_gb() -> float | None:
    """The memory estimator's GB per trial for the packing config (the largest batch it would run)."""
    from fgmodels.memory import estimate_trial_memory_gb

    cfg: dict[str, Any] = {"method": "gholm", "use_crop": True}
    for kv in PACK_FIXED:
        key, value = kv.split("=", 1)
        cfg[key] = {"false": False, "true": True}.get(value, int(value) if value.isdigit() else value)
    cfg.pop("synthetic_image_size", None)
    return estimate_trial_memory_gb(cfg, num_classes=10)


def part_c(work: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    try:
        per_trial = predicted_gb()
    except Exception as err:  # the table is still worth having without the prediction
        per_trial, note = None, f" (estimate failed: {err})"
    else:
        note = ""
    rows = ["| trials per GPU | --gpus-per-trial | exit | trials | total img/s | peak GPU GB | predicted GB |",
            "|---|---|---|---|---|---|---|"]
    lines = []
    for k in ((1, 2) if TINY else (1, 2, 4)):
        gpus = 0 if TINY else 1.0 / k
        extra = ["--max-concurrent", str(k)] + (["--cpus-per-trial", "1"] if TINY else [])
        name = f"pack{k}"
        cmd = search_cmd(name, work / "searches", work / "data", k, gpus, extra, PACK_FIXED)
        with GpuMemory() as mem:
            rc, secs = run(cmd, LIMITS["c"] / (2 if TINY else 3), OUT / f"packing_{k}.log")
        trials = trial_results(work / "searches" / name)
        total = sum(statistics.median([r["train_images_per_s"] for r in recs if "train_images_per_s" in r] or [0])
                    for recs in trials.values())
        pred = "-" if per_trial is None else f"{per_trial * k:.1f}"
        peak = "-" if mem.peak is None else f"{mem.peak:.1f}"
        rows.append(f"| {k} | {gpus:g} | {rc} | {len(trials)} | {total:.1f} | {peak} | {pred} |")
        lines.append(f"(c) {k} per GPU: exit {rc} in {secs:.0f} s, {total:.1f} img/s total, peak {peak} GB, predicted {pred} GB")
    head = [f"# Packing GHOLM trials on one GPU ({' '.join(PACK_FIXED)})", "",
            "total img/s: the sum of the concurrent trials' median training img/s; peak: nvidia-smi memory.used "
            f"(all processes); predicted: estimate_trial_memory_gb x trials{note}.", ""]
    (OUT / "packing.md").write_text("\n".join(head + rows) + "\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    # no options: the environment variables above are the knobs; --help prints this docstring
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    lines = [f"# GPU acceptance ({'CPU rehearsal, tiny sizes' if TINY else 'gpu-full'}), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    with tempfile.TemporaryDirectory(prefix="accept_") as tmp:
        work = Path(tmp)
        ENV["FGVC_CACHE_DIR"] = str(work / "cache")  # a throw-away pixel cache
        for part, fn in (("a", part_a), ("b", lambda: part_b(work)), ("c", lambda: part_c(work))):
            if part in PARTS:
                start = time.perf_counter()
                lines += fn()
                print("\n".join(lines[-4:]), f"[{time.perf_counter() - start:.0f} s]", flush=True)
    (OUT / "acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
