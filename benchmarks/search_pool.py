"""The benchmark's table of learning curves: configurations trained once to
full length with ``python -m fgmodels.train`` (no Ray), every epoch's val_acc
and wall time kept in ``pool.jsonl`` (one JSON line per run, appended as runs
finish, so an interrupted ``--pool`` resumes where it stopped).

A run is keyed by its role (``pool``: a configuration drawn from the demo's
space, ``paper``: the space's ``first`` point, ``winner``: the pool's best),
its recipe (``after``: the demo's current recipe, ``before``: the recipe it
replaced, ``after, 20 epochs``: the current one trained twice as long) and its training seed. The wall time of an epoch is the run's wall
time shared in proportion to each epoch's training time (start-up included).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# recipe name -> keys changed from the demo's current recipe ("after"): the recipe it replaced
# (60 validation images, 12 epochs) and the current one trained twice as long
RECIPES: dict[str, dict[str, Any]] = {
    "before": {"synthetic_per_class": 60, "val_fraction": 0.2, "max_train_batches": 15, "epochs": 12},
    "after": {},
    "after, 20 epochs": {"epochs": 20},
}


@dataclass(frozen=True)
class Job:
    role: str  # pool | paper | winner
    recipe: str  # after | before
    seed: int
    params: dict[str, Any]  # Optuna values (the space's encoding)
    config: dict[str, Any]  # the whole fgmodels config

    @property
    def key(self) -> str:
        tag = json.dumps(self.params, sort_keys=True)
        return f"{self.role}/{self.recipe}/{self.seed}/{tag}"


def demo_space() -> Any:
    """The space the CPU demo searches (smoke section and CPU demo defaults applied)."""
    from search.plan import resolve_plan
    from search.spaces import load_space

    space = load_space("gholm")
    with tempfile.TemporaryDirectory() as tmp:
        _, applied = resolve_plan({"space": "gholm", "name": "bench", "wandb": "off", "storage": tmp}, space,
                                  gpus=0, cpus=2)
    return applied


def draw_params(space: Any, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations by scrambled Sobol (even coverage of the space), as Optuna values."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False,
                                             warn_asynchronous_seeding=False)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        space.define_by_run(trial)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def full_config(space: Any, params: dict[str, Any], recipe: str, seed: int) -> dict[str, Any]:
    config = space.to_trial_config({**space.member(space.method).fixed, **params})
    config["seed"] = seed
    config.update(RECIPES[recipe])
    return config


def paper_params(space: Any) -> dict[str, Any]:
    return dict(space.points_to_evaluate()[0])


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_one(job: Job) -> dict[str, Any]:
    """Train ``job`` to full length in a subprocess; its curve and wall times."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(yaml.safe_dump(job.config))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fgmodels.train", "--config", str(cfg), "--workdir",
                               str(Path(tmp) / "run"), "--no-progress"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"run {job.key} failed:\n{proc.stderr[-2000:]}")
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r["train_time_s"] for r in rows]
    return {"key": job.key, "role": job.role, "recipe": job.recipe, "seed": job.seed, "params": job.params,
            "config": job.config, "curve": [r["val_acc"] for r in rows],
            "epoch_s": [t * wall / sum(train) for t in train], "wall_s": wall}


def run_jobs(jobs: list[Job], path: Path, workers: int) -> None:
    """Run the jobs not yet in ``path``, ``workers`` at a time, appending each as it ends."""
    done = {r["key"] for r in load(path)}
    todo = [j for j in jobs if j.key not in done]
    lock = threading.Lock()

    def one(job: Job) -> None:
        row = run_one(job)
        with lock, path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{time.strftime('%H:%M:%S')} {job.role}/{job.recipe}/seed {job.seed}: best "
              f"{max(row['curve']):.3f} in {row['wall_s']:.0f}s", flush=True)

    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(one, j) for j in todo]:
            f.result()
