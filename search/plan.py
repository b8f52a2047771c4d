"""The search plan: every CLI option resolved to a value and validated before
Ray starts, so a bad option costs a second and names its fix.

Defaults depend on the machine: with the bundled synthetic data and no GPU the
plan is a small but real CPU search (the space's ``smoke`` section, few
batches per epoch, 8 trials, ASHA over 6 epochs); otherwise a GPU-sized one.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.spaces import SearchSpace, SpaceError

PLAN_FILE = "search_plan.json"
METRIC, MODE, TIME_ATTR = "val_acc", "max", "epoch"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DATASETS = ("synthetic", "cub", "aircraft", "cars", "dogs", "imagefolder")

# The CPU default (synthetic data, no GPU): a real search that ends in minutes
# on 2 cores. SGD from scratch on a tiny backbone stays at chance for a few
# dozen steps, every trial ties and ASHA has nothing to rank, so the CPU demo
# trains with AdamW; the plan printout says so.
CPU_DEFAULTS = {"num_samples": 8, "max_epochs": 12, "grace_period": 1, "reduction_factor": 2.0,
                "max_concurrent": 2, "cpus_per_trial": 1.0}
CPU_OVERRIDES: dict[str, Any] = {"device": "cpu", "max_train_batches": 15, "opt": "adamw"}
DEFAULT_MAX_FAILURES = 3  # a preempted/crashed node costs a trial at most one epoch, 3 times
GPU_DEFAULTS = {"num_samples": 32, "reduction_factor": 3.0}


class OptionError(ValueError):
    """A CLI option that cannot work; the message names the option and a fix."""


@dataclass
class SearchPlan:
    space: str
    name: str
    storage: str  # absolute local folder or a URI (s3://, gs://, ...)
    data: str = "synthetic"
    data_root: str | None = None
    num_samples: int = 8
    max_epochs: int = 6
    grace_period: int = 1
    reduction_factor: float = 2.0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    seed: int = 0
    wandb: str = "offline"
    smoke: bool = True
    address: str | None = None
    dashboard_host: str | None = None  # None: no local dashboard; else the interface it binds to
    max_failures: int = DEFAULT_MAX_FAILURES  # retries of a trial whose process or node died (or that raised), from its last checkpoint
    demo_overrides: dict[str, Any] = field(default_factory=dict)  # CPU demo keys, skipped where a method lacks them
    overrides: dict[str, Any] = field(default_factory=dict)  # data, epochs, seed, then --set: fixed for all trials
    created: float = field(default_factory=time.time)

    @property
    def is_remote(self) -> bool:
        return "://" in self.storage

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def local_dir(self) -> Path:
        """Where the artefacts (leaderboard, plots, W&B files) are written: the
        experiment folder itself, or ./results/<name> when storage is remote."""
        return Path(self.experiment_path) if not self.is_remote else Path("results").resolve() / self.name

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SearchPlan":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------- environment
def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install counts as no GPU, not as a crash
        return 0


def _positive_int(value: Any, option: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{option} must be a positive integer, got {value!r}. Fix: {fix}")
    return value


# ---------------------------------------------------------------- resolution
def resolve_plan(opts: dict[str, Any], space: SearchSpace, gpus: int | None = None,
                 cpus: int | None = None) -> tuple[SearchPlan, SearchSpace]:
    """CLI options (None = default) -> validated plan and the space with every
    override applied (smoke, CPU demo, data, epochs, seed, --set)."""
    gpus = gpu_count() if gpus is None else gpus
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    data = opts.get("data") or "synthetic"
    if data not in DATASETS:
        raise OptionError(f"--data {data!r} is not a known dataset. Fix: use one of {list(DATASETS)}")
    data_root = opts.get("data_root")
    if data != "synthetic":
        if not data_root:
            raise OptionError(f"--data {data} needs --data-root PATH (the dataset folder). Fix: add --data-root /path/to/{data}")
        if not Path(data_root).expanduser().is_dir():
            raise OptionError(f"--data-root {data_root!r} is not a folder. Fix: point it at the extracted {data} dataset")
        data_root = str(Path(data_root).expanduser().resolve())
    elif data_root is not None:
        data_root = str(Path(data_root).expanduser().resolve())  # cache folder for the synthetic set
    cpu_demo = data == "synthetic" and gpus == 0
    smoke = cpu_demo if opts.get("smoke") is None else bool(opts["smoke"])
    defaults = dict(CPU_DEFAULTS) if cpu_demo else dict(GPU_DEFAULTS)

    def pick(key: str, fallback: Any = None) -> Any:
        value = opts.get(key)
        return value if value is not None else defaults.get(key, fallback)

    num_samples = _positive_int(pick("num_samples"), "--num-samples", "e.g. --num-samples 16")
    max_epochs = pick("max_epochs")
    if max_epochs is None:
        try:
            max_epochs = int(space.fixed_value("epochs"))
        except SpaceError as err:
            raise OptionError(f"--max-epochs is needed: {err}. Fix: pass --max-epochs N") from None
    max_epochs = _positive_int(max_epochs, "--max-epochs", "e.g. --max-epochs 30")
    grace = pick("grace_period")
    grace = max(1, max_epochs // 10) if grace is None else grace
    grace = _positive_int(grace, "--grace-period", f"a number of epochs between 1 and --max-epochs ({max_epochs})")
    if grace > max_epochs:
        raise OptionError(f"--grace-period {grace} exceeds --max-epochs {max_epochs}. Fix: use a grace period <= {max_epochs}")
    rf = float(pick("reduction_factor"))
    if not rf > 1:
        raise OptionError(f"--reduction-factor must be > 1, got {rf!r}. Fix: e.g. --reduction-factor 2 (keep the best half)")
    # On a cluster the driver's machine (a CPU-only head) says nothing about the workers:
    # a real dataset there means GPU trials unless --gpus-per-trial says otherwise.
    gpt = pick("gpus_per_trial", 1.0 if gpus or (opts.get("address") and not cpu_demo) else 0.0)
    gpt = float(gpt)
    if gpt < 0:
        raise OptionError(f"--gpus-per-trial must be >= 0, got {gpt!r}. Fix: 0 for CPU, 0.5 to share a GPU, 1 for one each")
    if gpt > 1 and gpt != int(gpt):
        raise OptionError(f"--gpus-per-trial {gpt} above 1 must be whole. Fix: use 1, 2, ... or a fraction below 1")
    if not opts.get("address"):
        if gpt > 0 and gpus == 0:
            raise OptionError(f"--gpus-per-trial {gpt} but no GPU is visible here. Fix: --gpus-per-trial 0, or --address of a GPU cluster")
        if gpt > gpus:
            raise OptionError(f"--gpus-per-trial {gpt} but only {gpus} GPU(s) are visible. Fix: --gpus-per-trial <= {gpus}")
    cpt = float(pick("cpus_per_trial", min(4, cpus)))
    if cpt <= 0:
        raise OptionError(f"--cpus-per-trial must be > 0, got {cpt!r}. Fix: e.g. --cpus-per-trial 1")
    if not opts.get("address") and cpt > cpus:
        raise OptionError(f"--cpus-per-trial {cpt:g} but this machine has {cpus} CPU(s): no trial could start. "
                          f"Fix: --cpus-per-trial <= {cpus}")
    max_failures = opts.get("max_failures")
    max_failures = DEFAULT_MAX_FAILURES if max_failures is None else max_failures
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise OptionError(f"--max-failures must be a non-negative integer, got {max_failures!r}. "
                          f"Fix: e.g. --max-failures {DEFAULT_MAX_FAILURES} (0: a crashed trial is not retried)")
    max_conc = pick("max_concurrent")
    if max_conc is not None:
        max_conc = _positive_int(max_conc, "--max-concurrent", "e.g. --max-concurrent 2, or leave it out to fill the resources")
    seed = opts.get("seed")
    seed = 0 if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise OptionError(f"--seed must be a non-negative integer, got {seed!r}. Fix: e.g. --seed 0")
    wandb_mode = opts.get("wandb")
    if wandb_mode is None:
        from search.callbacks import default_wandb_mode

        wandb_mode = default_wandb_mode()
    if wandb_mode not in ("online", "offline", "off"):
        raise OptionError(f"--wandb must be online, offline or off, got {wandb_mode!r}")
    name = opts.get("name") or f"{re.sub(r'[^A-Za-z0-9_.-]', '_', space.name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not NAME_RE.match(name):
        raise OptionError(f"--name {name!r} must be letters, digits, '_', '.' or '-' (no '/'). Fix: e.g. --name gholm-cub-1")
    storage = opts.get("storage") or "results"
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
        if Path(storage).exists() and not Path(storage).is_dir():
            raise OptionError(f"--storage {storage} is a file, not a folder. Fix: give a folder or a URI such as s3://bucket/searches")

    dashboard_host = opts.get("dashboard")
    if dashboard_host is not None:
        if opts.get("address"):
            raise OptionError("--dashboard starts the dashboard of a private local Ray; a cluster has its own. "
                              "Fix: drop --dashboard and use `ray dashboard cluster.yaml` (see README)")
        try:
            import aiohttp  # noqa: F401  (the dashboard's server; only in ray[default])
        except ImportError:
            raise OptionError("--dashboard needs Ray's dashboard, which ray[tune] alone does not install. "
                              "Fix: pip install 'ray[default]==2.60.0', or leave out --dashboard") from None

    demo = dict(CPU_OVERRIDES) if cpu_demo and smoke else {}
    overrides: dict[str, Any] = {"data": data, "epochs": max_epochs, "seed": seed}
    if data_root is not None:
        overrides["data_root"] = data_root
    overrides.update(opts.get("overrides") or {})
    plan = SearchPlan(space=str(opts["space"]), name=name, storage=storage, data=data, data_root=data_root,
                      num_samples=num_samples, max_epochs=max_epochs, grace_period=grace, reduction_factor=rf,
                      cpus_per_trial=cpt, gpus_per_trial=gpt, max_concurrent=max_conc, seed=seed, wandb=wandb_mode,
                      smoke=smoke, address=opts.get("address") or None, dashboard_host=dashboard_host, max_failures=max_failures, demo_overrides=demo,
                      overrides=overrides)
    return plan, apply_plan(plan, space)


def apply_plan(plan: SearchPlan, space: SearchSpace) -> SearchSpace:
    """The space every trial samples from: smoke section, then the plan's fixed keys."""
    try:
        space = space.smoke() if plan.smoke else space
        space = space.apply_overrides(_applicable(plan.demo_overrides, space), "CPU demo defaults")
        space = space.apply_overrides(plan.overrides, "--set / plan")
    except SpaceError as err:
        raise OptionError(f"--set: {err}") from None
    epochs = plan.overrides.get("epochs", plan.max_epochs)
    if int(epochs) != plan.max_epochs:
        raise OptionError(f"--set epochs={epochs} disagrees with --max-epochs {plan.max_epochs}. "
                          f"Fix: use --max-epochs only (ASHA's max_t is the trials' epochs)")
    return space


def _applicable(demo: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """CPU-demo keys are skipped where some method does not know them or the
    space searches them (the space's own choice wins)."""
    from fgmodels.config import known_keys

    searched = set().union(*(space.member(m).params for m in space.methods))
    return {k: v for k, v in demo.items()
            if k not in searched and all(k in known_keys(m) for m in space.methods)}


def describe_plan(plan: SearchPlan) -> str:
    conc = plan.max_concurrent if plan.max_concurrent is not None else "as many as resources allow"
    lines = [
        f"search {plan.name!r}: {plan.num_samples} trials of space {plan.space!r}",
        f"  searcher   Optuna TPE (seed {plan.seed}), the space's `first` point(s) evaluated first",
        f"  scheduler  ASHA on {METRIC} ({MODE}), time unit {TIME_ATTR}: grace {plan.grace_period}, "
        f"reduction factor {plan.reduction_factor:g}, max {plan.max_epochs} epochs",
        f"  resources  {plan.cpus_per_trial:g} CPU + {plan.gpus_per_trial:g} GPU per trial, concurrent: {conc}"
        + (f", cluster {plan.address}" if plan.address else
           f", local Ray (dashboard {'on http://' + plan.dashboard_host + ':8265' if plan.dashboard_host else 'off'})"),
        f"  failures   a trial whose process or node dies (or that raises) restarts from its last checkpoint "
        f"up to {plan.max_failures} time(s), then counts as errored; the search goes on",
        f"  data       {plan.data}" + (f" at {plan.data_root}" if plan.data_root else "")
        + (" (smoke section applied)" if plan.smoke else ""),
        f"  storage    {plan.experiment_path}" + (f" (artefacts in {plan.local_dir})" if plan.is_remote else ""),
        f"  W&B        {plan.wandb}",
        "  fixed for all trials: " + ", ".join(f"{k}={v!r}" for k, v in plan.overrides.items()),
    ]
    if plan.demo_overrides:
        lines.append("  CPU demo   " + ", ".join(f"{k}={v!r}" for k, v in plan.demo_overrides.items())
                     + " (no GPU + synthetic data; --no-smoke turns this off, --set overrides any key)")
    return "\n".join(lines)
