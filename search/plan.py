"""The search plan: every CLI option resolved to a value and validated before
Ray starts, so a bad option costs a second and names its fix.

Each option is declared once, as a field of :class:`SearchPlan` with its
:class:`search.options.Option` (help, defaults, rule, what ``--resume`` does
with it, the printout line that shows it). Defaults depend on the machine:
with the bundled synthetic data and no GPU the plan is a small but real CPU
search (the "CPU demo": the space's ``smoke`` section, few batches per epoch,
a handful of trials); otherwise a GPU-sized one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.objective import METRIC, MODE, TIME_ATTR  # noqa: F401  (read from here by records and callbacks)
from search.options import (ABOVE_ONE, LOCATES, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, REPLACES,
                            OptionError, Rule, flag_of, one_of, option, plan_options)
from search.pareto import COSTS, OBJECTIVE
from search.grace import AUTO, auto_grace, describe_auto_grace
from search.schedulers import SCHEDULERS
from search.searchers import SEARCHERS

if TYPE_CHECKING:
    from search.spaces import SearchSpace

__all__ = ["PLAN_FILE", "METRIC", "MODE", "TIME_ATTR", "OptionError", "SearchPlan", "resolve_plan", "apply_plan",
           "describe_plan"]

PLAN_FILE = "search_plan.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DATASETS = ("synthetic", "cub", "aircraft", "cars", "dogs", "imagefolder")
WANDB_MODES = ("online", "offline", "off")
DEFAULT_STORAGE = "results"
DEFAULT_MAX_FAILURES = 3  # a preempted/crashed node costs a trial at most one epoch, 3 times
DEFAULT_KEEP = 3  # finished trials that keep their full checkpoints (--keep-checkpoints)
# SGD from scratch on a tiny backbone stays at chance for a few dozen steps, every
# trial ties and the scheduler has nothing to rank, so the CPU demo trains with
# AdamW on few batches per epoch; the plan printout says so. The synthetic set is
# enlarged so that validation has 300 images (one image = 0.33 points, not 1.7):
# the recipe was chosen by the seed spread of a fixed configuration
# (benchmarks/results_search/seed_spread.md).
CPU_OVERRIDES: dict[str, Any] = {"device": "cpu", "max_train_batches": 15, "opt": "adamw",
                                 "synthetic_per_class": 150, "val_fraction": 0.4}
DEMO_EPOCHS = 10
FINAL_FULL = "full"  # --final-fit: retrain the winner on the whole training split, test its last epoch
FINAL_FITS = (FINAL_FULL, "none")
RERUN_TOP, RERUN_FROM = 3, 6  # --rerun-top default outside the CPU demo: the top 3 once a search has 6 trials


GRACE = Rule(object, f"a positive integer or {AUTO!r}",
             lambda v: v == AUTO or (isinstance(v, int) and v >= 1))


def _grace_arg(text: str) -> int | str:
    """--grace-period N or auto; anything else is left for the rule to refuse with its fix."""
    return int(text) if text.strip().isdigit() else text


@dataclass
class SearchPlan:
    space: str = option("a space name in spaces/ (gholm, fgvc, ...), a YAML path, or A,B for a union",
                        section="search")
    name: str = option("search name = folder under --storage", found="<space>-<date>-<time>", resume=LOCATES,
                       section="storage")
    storage: str = option("results root: a local folder or a URI such as s3://bucket/path", demo=DEFAULT_STORAGE,
                          resume=LOCATES, section="storage")  # resolved: an absolute local folder or a URI
    data: str = option(" | ".join(DATASETS), demo="synthetic", section="data")
    data_root: str | None = option("dataset folder (cache folder for synthetic)", section="data")
    searcher: str = option("how trial configurations are proposed: Optuna TPE, random, grid, CMA-ES, "
                           "Gaussian process or quasi-Monte Carlo", demo="tpe", rule=one_of(tuple(SEARCHERS)),
                           cli={"choices": tuple(SEARCHERS)}, section="searcher")
    objective: str = option(f"what the searcher optimises: {METRIC}, or {METRIC} and test-time costs to minimise "
                            f"(comma-separated: {', '.join(COSTS)}); the scheduler ranks by {METRIC} alone",
                            demo=METRIC, rule=OBJECTIVE, fix=f"e.g. --objective {METRIC},latency", section="searcher")
    scheduler: str = option("which trials stop early: ASHA, HyperBand, the median rule, population-based "
                            "training (also perturbs the space's mutable knobs) or none", demo="asha",
                            rule=one_of(tuple(SCHEDULERS)), cli={"choices": tuple(SCHEDULERS)}, section="scheduler")
    num_samples: int = option("trials to run", demo=8, full=32, rule=POSITIVE_INT, fix="e.g. --num-samples 16",
                              section="search")
    max_epochs: int = option("epochs of a trial that the scheduler never stops", demo=DEMO_EPOCHS, full=None,
                             found="the space's epochs", rule=POSITIVE_INT, fix="e.g. --max-epochs 30",
                             section="scheduler")
    grace_period: int = option("epochs before ASHA or the median rule may stop a trial; PBT's perturbation "
                               "interval; auto: where val_acc starts to rank trials as their end does "
                               "(measured, see docs/searchers.md)", demo=AUTO, full=None,
                               found="a tenth of --max-epochs, at least 1", rule=GRACE, cli={"type": _grace_arg},
                               fix="auto, or a number of epochs between 1 and --max-epochs ({max_epochs})",
                               section="scheduler")  # resolved: always a number of epochs
    grace_auto: bool = False  # the grace period was resolved from --grace-period auto
    reduction_factor: float = option("ASHA and HyperBand keep 1/this of the trials at each rung", demo=2.0, full=3.0,
                                     rule=ABOVE_ONE, fix="e.g. --reduction-factor 2 (keep the best half)",
                                     section="scheduler")
    cpus_per_trial: float = option("CPUs per trial", demo=1.0, full=None, found="4, or this machine's CPUs if fewer",
                                   rule=POSITIVE, fix="e.g. --cpus-per-trial 1", section="resources")
    gpus_per_trial: float = option("GPUs per trial, fractions share a GPU", demo=0.0, full=None,
                                   found="1 if a GPU is visible here or --address joins a cluster, else 0",
                                   rule=NON_NEGATIVE, fix="0 for CPU, 0.5 to share a GPU, 1 for one each",
                                   section="resources")
    max_concurrent: int | None = option("trials at once", demo=2, full=None, found="as many as resources allow",
                                        rule=POSITIVE_INT,
                                        fix="e.g. --max-concurrent 2, or leave it out to fill the resources",
                                        section="resources")
    seed: int = option("seed of the searcher and of every trial's training", demo=0, rule=NON_NEGATIVE_INT,
                       fix="e.g. --seed 0", section="searcher")
    wandb: str = option("W&B logging", found="online if logged in, else offline", rule=one_of(WANDB_MODES),
                        fix="--wandb offline, or --wandb off", cli={"choices": WANDB_MODES}, section="wandb")
    smoke: bool = option("apply the space's smoke section", demo=True, full=False,
                         cli={"action": argparse.BooleanOptionalAction}, section="data")
    address: str | None = option("join an existing Ray cluster (ray.init(address=...)) instead of a private local one",
                                 resume=REPLACES, section="resources")
    dashboard_host: str | None = option(
        "start Ray's dashboard for the local Ray, bound to localhost (or to HOST if given); needs ray[default]",
        flag="--dashboard", found="off", cli={"nargs": "?", "const": "127.0.0.1", "metavar": "HOST"},
        section="resources")
    max_failures: int = option("restarts of a trial whose worker or node dies (or that raises), each from its last "
                               "checkpoint; a config or data error before the first epoch is not retried",
                               demo=DEFAULT_MAX_FAILURES, rule=NON_NEGATIVE_INT,
                               fix=f"e.g. --max-failures {DEFAULT_MAX_FAILURES} (0: a crashed trial is not retried)",
                               section="failures")
    keep_checkpoints: int = option("finished trials whose full checkpoints (weights and optimiser state) are kept: "
                                   "the top K by val_acc; the others' are deleted as soon as they end",
                                   demo=DEFAULT_KEEP, rule=POSITIVE_INT, fix=f"e.g. --keep-checkpoints {DEFAULT_KEEP}",
                                   section="storage")
    ensemble: int = option("after the search, an ensemble of the top K trials' best checkpoints, its members and "
                           "weights chosen on validation (greedy selection with replacement); its val accuracy is "
                           "reported beside the best trial's and it joins the single test evaluation "
                           "(0: off; needs --keep-checkpoints >= K)", demo=0, rule=NON_NEGATIVE_INT,
                           fix="e.g. --ensemble 3 (0: no ensemble)", section="storage")
    reproduce: str | None = option("instead of a search, one trial at the paper's point of METHOD for --data (the "
                                   "paper's weights, epochs and settings; no early stop), see docs/reproduce.md; a "
                                   "dataset the paper does not report is refused", section="reproduce",
                                   cli={"metavar": "METHOD"})
    final_fit: str = option("after the search, retrain the winner on the whole training split (val_fraction 0, every "
                            "training image each epoch) for its configured epochs (the space's, --max-epochs) and evaluate the last epoch once on "
                            "test (full), or evaluate the best trial's best checkpoint on test (none); skipped with "
                            "--no-test", demo="none", full=FINAL_FULL, rule=one_of(FINAL_FITS),
                            fix="--final-fit full or --final-fit none", cli={"choices": FINAL_FITS}, section="final")
    final_seeds: int = option("seeds of the final fit (seed, seed+1, ...); the test accuracy is their mean and sd",
                              demo=1, rule=POSITIVE_INT, fix="e.g. --final-seeds 3", section="final")
    rerun_top: int = option("after the search, train the top K trials' configurations again with --rerun-seeds more "
                            "seeds (same split, same epochs); the leaderboard shows their seed mean and sd and the "
                            "winner is the best seed mean (0: off)", demo=0, full=None,
                            found=f"{RERUN_TOP} when --num-samples >= {RERUN_FROM}, else 0", rule=NON_NEGATIVE_INT,
                            fix="e.g. --rerun-top 3 (0: no re-runs)", section="final")
    rerun_seeds: int = option("extra seeds per re-run configuration (seed+1, seed+2, ...)", demo=2,
                              rule=POSITIVE_INT, fix="e.g. --rerun-seeds 2", section="final")
    plugins: list[str] = option("a Python file or module that registers methods, imported by the driver and by "
                                "every trial (repeatable)", flag="--plugin", section="plugins",
                                cli={"action": "append", "metavar": "PATH_OR_MODULE"})
    demo_overrides: dict[str, Any] = field(default_factory=dict)  # CPU demo keys, skipped where a method lacks them
    overrides: dict[str, Any] = field(default_factory=dict)  # data, epochs, seed, then --set: fixed for all trials
    created: float = field(default_factory=time.time)

    @property
    def is_remote(self) -> bool:
        return "://" in self.storage

    @property
    def fixed_runs(self) -> int:
        """Trials after the search: seed re-runs and final fits (each keeps its latest checkpoint)."""
        return (self.rerun_top or 0) * self.rerun_seeds + (self.final_seeds if self.final_fit == FINAL_FULL else 0)

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def local_dir(self) -> Path:
        """Where the artefacts (leaderboard, plots, W&B files) are written: the
        experiment folder itself, or ./results/<name> when storage is remote."""
        return Path(self.experiment_path) if not self.is_remote else Path(DEFAULT_STORAGE).resolve() / self.name

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SearchPlan":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def storage_root(storage: str | None) -> str:
    """--storage as saved in a plan: a URI as given, a local folder made absolute."""
    root = storage or DEFAULT_STORAGE
    return root if "://" in root else str(Path(root).expanduser().resolve())


# ---------------------------------------------------------------- environment
def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install counts as no GPU, not as a crash
        return 0


# ---------------------------------------------------------------- resolution
def resolve_plan(opts: dict[str, Any], space: SearchSpace, gpus: int | None = None,
                 cpus: int | None = None) -> tuple[SearchPlan, SearchSpace]:
    """CLI options by plan field name (None = default; ``overrides``: the --set
    keys) -> validated plan and the space with every override applied (smoke,
    CPU demo, data, epochs, seed, --set)."""
    gpus = gpu_count() if gpus is None else gpus
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    declared = {o.dest: o for o in plan_options()}
    data, data_root = _resolve_data(opts.get("data") or declared["data"].demo, opts.get("data_root"))
    cpu_demo = data == "synthetic" and gpus == 0
    address = opts.get("address") or None
    v = {name: opts[name] if opts.get(name) is not None else o.default_for(cpu_demo) for name, o in declared.items()}
    v.update(data=data, data_root=data_root, address=address, plugins=list(v["plugins"] or []))

    def check(name: str) -> Any:
        o = declared[name]
        if v[name] is not None and o.rule is not None:
            v[name] = o.rule.check(flag_of(o), v[name], o.fix.format(**v))
        return v[name]

    if v["max_epochs"] is None:
        from search.spaces import SpaceError

        try:
            v["max_epochs"] = int(space.fixed_value("epochs"))
        except SpaceError as err:
            raise OptionError(f"--max-epochs is needed: {err}. Fix: pass --max-epochs N") from None
    check("max_epochs")
    if v["grace_period"] is None:
        v["grace_period"] = max(1, v["max_epochs"] // 10)
    check("grace_period")
    v["grace_auto"] = v["grace_period"] == AUTO
    if v["grace_auto"]:
        v["grace_period"] = auto_grace(v["max_epochs"])
    if v["gpus_per_trial"] is None:  # a cluster's CPU-only head says nothing about its GPU workers
        v["gpus_per_trial"] = 1.0 if gpus or address else 0.0
    if v["cpus_per_trial"] is None:
        v["cpus_per_trial"] = float(min(4, cpus))
    if v["wandb"] is None:
        from search.callbacks import default_wandb_mode

        v["wandb"] = default_wandb_mode()
    if v["name"] is None:
        v["name"] = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', space.name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    for name in declared:
        check(name)
    _check_cross_rules(v, gpus, cpus)
    v["storage"] = _resolve_storage(v["storage"])
    if v["dashboard_host"] is not None:
        _check_dashboard(address)
    overrides: dict[str, Any] = {"data": data, "epochs": v["max_epochs"], "seed": v["seed"]}
    if data_root is not None:
        overrides["data_root"] = data_root
    overrides.update(opts.get("overrides") or {})
    demo = dict(CPU_OVERRIDES) if cpu_demo and v["smoke"] else {}
    plan = SearchPlan(**v, demo_overrides=demo, overrides=overrides)
    applied = apply_plan(plan, space)
    plan = fit_algorithms(plan, applied, num_samples_given=opts.get("num_samples") is not None)
    if plan.rerun_top is None:  # after the searcher settled the number of trials
        plan.rerun_top = RERUN_TOP if plan.num_samples >= RERUN_FROM else 0
    return plan, applied


def fit_algorithms(plan: SearchPlan, space: SearchSpace, num_samples_given: bool) -> SearchPlan:
    """The searcher and the scheduler check that they can work on this space
    and with each other (OptionError with the reason); the searcher may settle
    the number of trials (a grid runs each point once)."""
    SCHEDULERS[plan.scheduler].fit(plan, space)  # first: an impossible pair is the first thing to say
    return SEARCHERS[plan.searcher].fit(plan, space, num_samples_given)


def _resolve_data(data: str, data_root: str | None) -> tuple[str, str | None]:
    if data not in DATASETS:
        raise OptionError(f"--data {data!r} is not a known dataset. Fix: use one of {list(DATASETS)}")
    if data != "synthetic":
        if not data_root:
            raise OptionError(f"--data {data} needs --data-root PATH (the dataset folder). Fix: add --data-root /path/to/{data}")
        if not Path(data_root).expanduser().is_dir():
            raise OptionError(f"--data-root {data_root!r} is not a folder. Fix: point it at the extracted {data} dataset")
    # for synthetic data --data-root is the cache folder of the generated set
    return data, str(Path(data_root).expanduser().resolve()) if data_root is not None else None


def _check_cross_rules(v: dict[str, Any], gpus: int, cpus: int) -> None:
    """The rules that tie several options (or an option and this machine) together."""
    grace, max_epochs, gpt, cpt = v["grace_period"], v["max_epochs"], v["gpus_per_trial"], v["cpus_per_trial"]
    if grace > max_epochs:
        raise OptionError(f"--grace-period {grace} exceeds --max-epochs {max_epochs}. Fix: use a grace period <= {max_epochs}")
    if gpt > 1 and gpt != int(gpt):
        raise OptionError(f"--gpus-per-trial {gpt} above 1 must be whole. Fix: use 1, 2, ... or a fraction below 1")
    if not v["address"]:
        if gpt > 0 and gpus == 0:
            raise OptionError(f"--gpus-per-trial {gpt} but no GPU is visible here. Fix: --gpus-per-trial 0, or --address of a GPU cluster")
        if gpt > gpus:
            raise OptionError(f"--gpus-per-trial {gpt} but only {gpus} GPU(s) are visible. Fix: --gpus-per-trial <= {gpus}")
        if cpt > cpus:
            raise OptionError(f"--cpus-per-trial {cpt:g} but this machine has {cpus} CPU(s): no trial could start. "
                              f"Fix: --cpus-per-trial <= {cpus}")
    if v["ensemble"] == 1 or v["ensemble"] > v["keep_checkpoints"]:
        raise OptionError(f"--ensemble {v['ensemble']} needs at least 2 members whose checkpoints are kept "
                          f"(--keep-checkpoints {v['keep_checkpoints']}). Fix: --ensemble 0, or --ensemble K with "
                          f"2 <= K <= --keep-checkpoints (raise it with --keep-checkpoints K)")
    if v["final_fit"] != FINAL_FULL and (v["rerun_top"] or 0) > v["keep_checkpoints"]:
        raise OptionError(f"--rerun-top {v['rerun_top']} may choose a winner whose checkpoint is not kept "
                          f"(--keep-checkpoints {v['keep_checkpoints']}) and without a final fit that checkpoint is "
                          f"what the test reads. Fix: --keep-checkpoints {v['rerun_top']}, or --final-fit full")
    if v["final_seeds"] > 1 and v["final_fit"] != FINAL_FULL:
        raise OptionError(f"--final-seeds {v['final_seeds']} needs --final-fit {FINAL_FULL} (there is nothing to "
                          f"repeat without a final fit). Fix: add --final-fit {FINAL_FULL}, or drop --final-seeds")
    if not NAME_RE.match(v["name"]):
        raise OptionError(f"--name {v['name']!r} must be letters, digits, '_', '.' or '-' (no '/'). Fix: e.g. --name gholm-cub-1")


def _resolve_storage(storage: str) -> str:
    """Absolute local folder (proved creatable by a probe that leaves nothing behind) or a URI."""
    from search.storage import probe_local_folder

    root = storage_root(storage)
    if "://" not in root:
        problem = probe_local_folder(root)
        if problem:
            raise OptionError(f"cannot create the results folder {root} (--storage): {problem}. Fix: give --storage "
                              f"a folder you can write to, e.g. --storage ./results, or a URI such as s3://bucket/searches")
    return root


def _check_dashboard(address: str | None) -> None:
    if address:
        raise OptionError("--dashboard starts the dashboard of a private local Ray; a cluster has its own. "
                          "Fix: drop --dashboard and use `ray dashboard cluster.yaml` (see README)")
    try:
        import aiohttp  # noqa: F401  (the dashboard's server; only in ray[default])
    except ImportError:
        raise OptionError("--dashboard needs Ray's dashboard, which ray[tune] alone does not install. "
                          "Fix: pip install 'ray[default]==2.60.0', or leave out --dashboard") from None


def apply_plan(plan: SearchPlan, space: SearchSpace) -> SearchSpace:
    """The space every trial samples from: smoke section, then the plan's fixed keys."""
    from search.spaces import SpaceError

    try:
        space = space.smoke() if plan.smoke else space
        space = space.apply_overrides(_applicable(plan.demo_overrides, space), "CPU demo defaults")
        space = space.apply_overrides(plan.overrides, "--set")
    except SpaceError as err:
        raise OptionError(str(err)) from None  # the error already names its source (--set, CPU demo defaults)
    epochs = plan.overrides.get("epochs", plan.max_epochs)
    if int(epochs) != plan.max_epochs:
        raise OptionError(f"--set epochs={epochs} disagrees with --max-epochs {plan.max_epochs}. "
                          f"Fix: use --max-epochs only (the scheduler's budget is the trials' epochs)")
    return space


def _applicable(demo: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """CPU-demo keys are skipped where some method does not know them or the
    space searches them (the space's own choice wins)."""
    from fgmodels.config import known_keys

    searched = set().union(*(space.member(m).params for m in space.methods))
    return {k: v for k, v in demo.items()
            if k not in searched and all(k in known_keys(m) for m in space.methods)}


# ---------------------------------------------------------------- printout
def _resources(plan: SearchPlan) -> str:
    conc = plan.max_concurrent if plan.max_concurrent is not None else "as many as resources allow"
    where = (f"cluster {plan.address}" if plan.address else
             f"local Ray (dashboard {'on http://' + plan.dashboard_host + ':8265' if plan.dashboard_host else 'off'})")
    return f"{plan.cpus_per_trial:g} CPU + {plan.gpus_per_trial:g} GPU per trial, concurrent: {conc}, {where}"


def _sections(plan: SearchPlan) -> dict[str, tuple[str, str]]:
    """Section name (as options declare it) -> (label, text) of its printout line."""
    data = (f"{plan.data}" + (f" at {plan.data_root}" if plan.data_root else "")
            + (" (smoke section applied)" if plan.smoke else ""))
    return {
        "search": ("", f"search {plan.name!r}: {plan.num_samples} trials of space {plan.space!r}"),
        "searcher": ("searcher", SEARCHERS[plan.searcher].describe(plan)
                     + ("" if plan.objective == METRIC else f"; objectives {plan.objective} (Pareto search)")),
        "scheduler": ("scheduler", SCHEDULERS[plan.scheduler].describe(plan)),
        "resources": ("resources", _resources(plan)),
        "failures": ("failures", f"a trial whose process or node dies (or that raises) restarts from its last "
                                 f"checkpoint up to {plan.max_failures} time(s), then counts as errored (a config or "
                                 f"data error before its first epoch: at once); the search goes on"),
        "data": ("data", data),
        "storage": ("storage", plan.experiment_path + (f" (artefacts in {plan.local_dir})" if plan.is_remote else "")
                    + f"; full checkpoints kept for the top {plan.keep_checkpoints} finished trial(s)"
                    + (f"; ensemble of the top {plan.ensemble} after the search" if plan.ensemble else "")),
        "final": ("after", _after(plan)),
        "wandb": ("W&B", plan.wandb),
        "plugins": ("plugins", ", ".join(plan.plugins)),
        "reproduce": ("reproduce", _reproduction(plan)),
    }


def _reproduction(plan: SearchPlan) -> str:
    from search.reproduce import describe_reproduction

    return describe_reproduction(plan)


def _after(plan: SearchPlan) -> str:
    reruns = (f"seed re-runs of the top {plan.rerun_top} trial(s), {plan.rerun_seeds} more seed(s) each, winner "
              f"by seed mean" if plan.rerun_top else f"no seed re-runs (--rerun-top 0, --rerun-seeds {plan.rerun_seeds})")
    final = (f"final fit of the winner on the whole training split, {plan.final_seeds} seed(s), last epoch tested"
             if plan.final_fit == FINAL_FULL else
             f"final fit {plan.final_fit} ({plan.final_seeds} seed(s)): the best checkpoint is tested")
    return f"{reruns}; {final}"


def describe_plan(plan: SearchPlan) -> str:
    lines = []
    for label, text in _sections(plan).values():
        if text:
            lines.append(f"  {label:<10} {text}" if label else text)
    if plan.grace_auto:
        lines.append(f"  grace      {describe_auto_grace(plan.max_epochs)}")
    lines.append("  fixed for all trials: " + ", ".join(f"{k}={v!r}" for k, v in plan.overrides.items()))
    if plan.demo_overrides:
        lines.append("  CPU demo   " + ", ".join(f"{k}={v!r}" for k, v in plan.demo_overrides.items())
                     + " (no GPU + synthetic data; --no-smoke turns this off, --set overrides any key)")
    return "\n".join(lines)
