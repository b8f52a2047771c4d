"""The W&B sweep view of a search: ``python -m search.wandb_sweep <search folder>``.

W&B's sweep page (parallel coordinates, parameter importance, the sweep's run
table) shows only runs that belong to a sweep. Each trial already has its own
W&B run (:class:`search.callbacks.WandbTrialCallback`, a stable id per trial),
so after the search a sweep is created whose configuration mirrors the search
space (the method, each knob's distribution and range or values, ``val_acc``
maximised) and every trial's run is attached with ``prior_runs``. No W&B agent
ever runs it: Ray Tune chose the trials; the sweep only shows them.

With ``--wandb online`` the driver does this at the end of a search (also
after ``--resume``: the new sweep holds every run) and prints the sweep's URL.
With ``--wandb offline`` it prints the two commands that do it later, once
there is a login: ``wandb sync`` (uploads the runs) and this module. A failed
W&B call never fails the search: it prints the command to retry.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from search import storage
from search.objective import METRIC, MODE
from search.options import OptionError
from search.records import DIVERGED, TrialRecord

if TYPE_CHECKING:
    from search.plan import SearchPlan
    from search.spaces import SearchSpace
    from search.spaces.params import ParamSpec

SWEEP_JSON = "wandb_sweep.json"
# W&B's own search method for each searcher (the sweep never runs: this only labels it)
_W_METHOD = {"grid": "grid", "random": "random"}
EXIT_OK, EXIT_USAGE = 0, 2


# ----------------------------------------------------------------- space -> sweep config
def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value))


def param_config(spec: "ParamSpec") -> dict[str, Any]:
    """One knob in W&B's sweep format (``distribution``, ``min``/``max``/``q`` or ``values``)."""
    if spec.type == "choice":
        return {"values": _json_safe(list(spec.values))}
    low, high = spec.low, spec.high
    if spec.type == "loguniform":
        return {"distribution": "log_uniform_values", "min": low, "max": high}
    if spec.type == "uniform":
        if spec.step:
            return {"distribution": "q_uniform", "min": low, "max": high, "q": spec.step}
        return {"distribution": "uniform", "min": low, "max": high}
    if spec.log:  # int on a log scale
        return {"distribution": "q_log_uniform_values", "min": low, "max": high, "q": spec.step or 1}
    if spec.step and spec.step != 1:
        return {"distribution": "q_uniform", "min": low, "max": high, "q": spec.step}
    return {"distribution": "int_uniform", "min": low, "max": high}


def _values(param: dict[str, Any]) -> list[Any]:
    """A knob's values: its choices, an integer grid's every point, or a range's bounds."""
    if "values" in param:
        return param["values"]
    low, high, step = param["min"], param["max"], param.get("q", 1)
    grid = param["distribution"] in ("int_uniform", "q_uniform") and all(isinstance(v, int) for v in (low, high, step))
    return list(range(low, high + 1, step)) if grid and (high - low) // step < 100 else [low, high]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One knob that the methods of a union search differently: the range that
    holds both ranges, or (a choice on either side) every value and bound of both."""
    if a == b:
        return a
    if "values" in a or "values" in b:
        return {"values": _values(a) + [v for v in _values(b) if v not in _values(a)]}
    low, high = min(a["min"], b["min"]), max(a["max"], b["max"])
    if a["distribution"] == b["distribution"] and a.get("q") == b.get("q"):
        return {**a, "min": low, "max": high}
    return {"distribution": "uniform", "min": low, "max": high}


def sweep_config(space: "SearchSpace", plan: "SearchPlan") -> dict[str, Any]:
    """The sweep's configuration: the search space as W&B writes one."""
    params: dict[str, Any] = {"method": {"values": list(space.methods)} if space.is_union
                              else {"value": space.method}}
    for method in space.methods:
        for key, spec in space.member(method).params.items():
            mine = param_config(spec)
            params[key] = _merge(params[key], mine) if key in params else mine
    w_method = _W_METHOD.get(plan.searcher, "bayes")
    if w_method == "grid" and any("values" not in p and "value" not in p for p in params.values()):
        w_method = "random"  # W&B's grid takes listed values only; a stepped range is listed by Ray's grid alone
    return {
        "name": plan.name,
        "description": (f"fgvc-search {plan.name}: {plan.searcher} searcher, {plan.scheduler} scheduler, space "
                        f"{space.name}; trials chosen by Ray Tune and attached here (no W&B agent ran them)"),
        "method": w_method,
        "metric": {"name": METRIC, "goal": "maximize" if MODE == "max" else "minimize"},
        "parameters": params,
    }


def run_ids(group: str, records: Sequence[TrialRecord]) -> list[str]:
    """The W&B run id of every trial that has a run (it reported at least once)."""
    from search.callbacks import run_id

    return [run_id(group, r.trial_id) for r in records if r.epochs_run > 0 or r.status == DIVERGED]


# ----------------------------------------------------------------- the W&B calls
def create_sweep(config: dict[str, Any], prior_runs: list[str], project: str,
                 entity: str | None = None) -> tuple[str, str]:
    """Create the sweep with the runs attached; returns (sweep id, URL)."""
    import wandb
    from wandb import env, util

    sweep_id = wandb.sweep(config, entity=entity, project=project, prior_runs=prior_runs)
    api = wandb.Api()
    app = (env.get_app_url() or util.api_to_app_url(api.settings["base_url"])).rstrip("/")
    return sweep_id, f"{app}/{entity or api.default_entity}/{project}/sweeps/{sweep_id}"


def default_project() -> str:
    from search.callbacks import DEFAULT_PROJECT

    return os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


def sweep_of(plan: "SearchPlan", space: "SearchSpace", records: Sequence[TrialRecord],
             project: str | None = None, entity: str | None = None, group: str | None = None) -> dict[str, Any]:
    """Create the sweep of a search and write ``wandb_sweep.json`` into its folder.
    ``group``: the search's name when its runs were logged (default: its name now)."""
    ids = run_ids(group or plan.name, records)
    if not ids:
        raise ValueError(f"search {plan.name!r} has no trial that reported an epoch: no W&B run to attach")
    project = project or default_project()
    sweep_id, url = create_sweep(sweep_config(space, plan), ids, project, entity)
    entry = {"sweep_id": sweep_id, "url": url, "project": project, "entity": entity, "runs": ids}
    storage.write_text(f"{plan.experiment_path}/{SWEEP_JSON}", json.dumps(entry, indent=2) + "\n")
    return entry


def later_commands(plan: "SearchPlan") -> list[str]:
    """The two commands that create the sweep of an offline search later."""
    runs = shlex.quote(str(plan.local_dir / "wandb")) + "/offline-run-*"
    return [f"wandb sync {runs}", f"python -m search.wandb_sweep {shlex.quote(plan.experiment_path)}"]


def after_search(plan: "SearchPlan", space: "SearchSpace", records: Sequence[TrialRecord],
                 interrupted: bool = False) -> None:
    """The driver's hook at the end of a search (see the module docstring)."""
    if plan.wandb == "offline":
        if any((plan.local_dir / "wandb").glob("offline-run-*")):
            sync, sweep = later_commands(plan)
            print(f"W&B runs were logged offline; upload them, then make the W&B sweep view of the search:\n"
                  f"  {sync}\n  {sweep}")
        return
    if plan.wandb != "online":
        return
    if interrupted:
        print("W&B sweep: made when the search ends (after --resume)")
        return
    try:
        entry = sweep_of(plan, space, records)
    except Exception as err:  # the search is done and saved: a W&B failure must not undo that
        print(f"W&B sweep not created: {err}. Fix: retry with python -m search.wandb_sweep "
              f"{shlex.quote(plan.experiment_path)}", file=sys.stderr)
        return
    print(f"W&B sweep of the search ({len(entry['runs'])} trial runs): {entry['url']}")


# ----------------------------------------------------------------- command line
def load_search(folder: str) -> tuple["SearchPlan", "SearchSpace", list[TrialRecord], str]:
    """The plan, space and trial records of the search in ``folder``, and the
    name its W&B runs were logged under."""
    from search.driver import collect, load_space
    from search.plan import PLAN_FILE, SearchPlan, apply_plan, storage_root
    from search.plugins import activate_plugins

    folder = folder.rstrip("/")
    if not storage.exists(f"{folder}/{PLAN_FILE}"):
        raise ValueError(f"{folder} holds no search (no {PLAN_FILE}). Fix: give the search folder that "
                         f"run_search.py or fgvc-search printed")
    plan = SearchPlan.from_json(storage.read_text(f"{folder}/{PLAN_FILE}"))
    group = plan.name
    root, _, name = folder.rpartition("/")
    plan.storage, plan.name = storage_root(root or "."), name  # the folder may have moved
    activate_plugins(plan.plugins)
    space = apply_plan(plan, load_space(plan.space))
    return plan, space, collect(plan, space), group


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.wandb_sweep",
                                     description="Create the W&B sweep view of a finished search: a sweep whose "
                                                 "configuration mirrors the search space, with every trial's run "
                                                 "attached (upload offline runs first with wandb sync).")
    parser.add_argument("folder", help="the search folder (<storage>/<name>)")
    parser.add_argument("--project", default=None, help="W&B project of the runs (default: $WANDB_PROJECT or "
                                                        "fgvc-search, as the search logged them)")
    parser.add_argument("--entity", default=None, help="W&B entity (default: your default entity)")
    args = parser.parse_args(argv)
    try:
        plan, space, records, group = load_search(args.folder)
        entry = sweep_of(plan, space, records, args.project, args.entity, group)
    except (ValueError, OptionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"W&B sweep of search {plan.name!r} ({len(entry['runs'])} trial runs): {entry['url']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
