"""The search plan and the driver's pieces, without a search: options declared
once (argparse, --help, --resume, the printout all follow the declaration),
the searcher/scheduler registries and what they build, the scheduler's record
of early stops, the storage probe, plugins and the exit-status reasons."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from search import driver  # noqa: E402
from search.options import (IGNORED, OptionError, all_options, build_parser, flag_of, ignored_on_resume,  # noqa: E402
                            plan_options)
from search.plan import SearchPlan, describe_plan, resolve_plan  # noqa: E402
from search.spaces import load_space  # noqa: E402

BASE = {"space": "gholm", "name": "x", "storage": "/tmp/nowhere"}


def _cpu_plan(**opts) -> tuple[SearchPlan, object]:
    return resolve_plan({**BASE, **opts}, load_space("gholm"), gpus=0, cpus=2)


def _help() -> str:
    return " ".join(build_parser("p", "", "").format_help().split())


# ----------------------------------------------------------------- one declaration per option
def test_help_states_the_defaults_the_plan_really_uses() -> None:
    """--help said 6 epochs for the CPU demo while the demo ran 12: the text is
    now derived, and here checked against resolved plans, not against itself."""
    text = _help()
    demo, _ = _cpu_plan()
    full, _ = resolve_plan(dict(BASE), load_space("gholm"), gpus=1, cpus=16)
    for flag, field in [("--num-samples", "num_samples"), ("--max-epochs", "max_epochs"),
                        ("--reduction-factor", "reduction_factor"),
                        ("--cpus-per-trial", "cpus_per_trial"), ("--max-concurrent", "max_concurrent")]:
        said = re.search(re.escape(flag) + r" [A-Z_]+ .*?\(CPU demo: ([0-9.]+);", text)
        assert said, flag
        assert float(said.group(1)) == getattr(demo, field), flag
    assert re.search(r"--num-samples [A-Z_]+ .*?otherwise: (\d+)\)", text).group(1) == str(full.num_samples)
    assert full.max_epochs == 40 and "otherwise: the space's epochs" in text  # gholm.yaml's epochs
    # a plan file written without a field takes the dataclass default: the demo's value, not another number
    assert SearchPlan(space="s", name="n", storage="/x").max_epochs == demo.max_epochs == 10
    # --grace-period says auto for the demo, and the demo's plan resolved it to a number
    assert re.search(r"--grace-period [A-Z_]+ [^(]*\(measured, see docs/searchers.md\) \(CPU demo: auto;", text)
    assert demo.grace_auto and isinstance(demo.grace_period, int)


def test_argparse_and_resume_notes_follow_the_declarations() -> None:
    flags = {flag_of(o) for o in all_options()}
    parser = build_parser("p", "", "")
    assert flags == {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    # every option --resume would ignore is reported when given
    given = ["--resume", "--name", "n"]
    for o in all_options():
        if o.resume == IGNORED and o.dest != "smoke":
            value = o.cli["choices"][0] if "choices" in o.cli else "1" if o.rule else "x"
            given += [flag_of(o)] if o.cli.get("action") == "store_true" else [flag_of(o), value]
    args = driver.parse_args(given + ["--no-smoke"])
    assert set(ignored_on_resume(args)) == {flag_of(o) for o in all_options() if o.resume == IGNORED}
    assert ignored_on_resume(driver.parse_args(["--resume", "--name", "n", "--address", "auto"])) == []


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if isinstance(value, list):
        return [*value, "extra_plugin"]
    return "auto" if value is None else f"{value}z"


def test_every_option_is_shown_in_the_plan_printout() -> None:
    plan, _ = _cpu_plan()
    before = describe_plan(plan)
    for opt in plan_options():
        if opt.dest in ("searcher", "scheduler"):  # one entry each today: shown by name below
            continue
        other = dataclasses.replace(plan, **{opt.dest: _changed(getattr(plan, opt.dest))})
        assert describe_plan(other) != before, f"{flag_of(opt)} does not appear in the plan printout"
    assert "Optuna TPE (seed 0)" in before and "ASHA on val_acc (max), time unit epoch" in before


def test_bad_values_are_refused_with_the_flag_and_a_fix() -> None:
    for opts, flag in [({"num_samples": True}, "--num-samples"), ({"seed": -1}, "--seed"),
                       ({"max_concurrent": 0}, "--max-concurrent"), ({"wandb": "maybe"}, "--wandb"),
                       ({"scheduler": "nope"}, "--scheduler"), ({"searcher": "nope"}, "--searcher"),
                       ({"max_failures": 1.5}, "--max-failures")]:
        with pytest.raises(OptionError) as err:
            _cpu_plan(**opts)
        assert str(err.value).startswith(flag) and "Fix:" in str(err.value), err.value


# ----------------------------------------------------------------- registries and what they build
def test_built_scheduler_maximises_val_acc_over_epochs_and_stops_the_worse_trial(tmp_path: Path) -> None:
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from search.stops import RecordingScheduler, load_stop_decisions
    from search.tuner import tune_config_for

    plan, space = _cpu_plan(storage=str(tmp_path), max_epochs=4, grace_period=1, reduction_factor=2)
    config = tune_config_for(plan, space)
    scheduler = config.scheduler
    assert isinstance(scheduler, RecordingScheduler) and isinstance(scheduler.inner, ASHAScheduler)
    asha = scheduler.inner
    assert (asha._metric, asha._mode, asha._time_attr, asha._max_t) == ("val_acc", "max", "epoch", 4)
    # behaviour, not only attributes: at the first rung the lower val_acc is stopped and recorded
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, good, {"epoch": 1, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, bad, {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.STOP
    assert load_stop_decisions(plan.experiment_path) == {"bad": {"epoch": 1, "scheduler": "asha"}}
    # a STOP at the last epoch ends a trial that completed its budget: not an early stop
    assert scheduler.on_trial_result(None, good, {"epoch": 4, "val_acc": 0.9}) == TrialScheduler.STOP
    assert set(load_stop_decisions(plan.experiment_path)) == {"bad"}

    searcher = config.search_alg
    assert (searcher._metric, searcher._mode) == ("val_acc", "max")
    sampler = searcher._sampler  # seeded with the plan's seed: draws as a fresh TPESampler(seed=0) does
    assert type(sampler).__name__ == "TPESampler"
    assert sampler._rng.rng.bytes(8) == type(sampler)(seed=plan.seed)._rng.rng.bytes(8)


class Fixed:
    """A scheduler that always makes the same decision."""

    metric = "val_acc"

    def __init__(self, decision: str) -> None:
        self.decision = decision

    def on_trial_result(self, *args: object) -> str:
        return self.decision


def test_stop_records_survive_a_restored_scheduler(tmp_path: Path) -> None:
    """--resume unpickles the scheduler Ray saved when the search began: its
    new decisions are added to the file, never replace it, and a trial the
    file says was stopped stays stopped if it comes back."""
    from search.stops import STOPS_FILE, RecordingScheduler, load_stop_decisions

    exp = str(tmp_path / "exp")
    first = RecordingScheduler(Fixed("STOP"), "asha", last_epoch=5, experiment_path=exp)
    pickled = pickle.dumps(first)  # as Ray saves it at the start of the search
    first.on_trial_result(None, SimpleNamespace(trial_id="a"), {"epoch": 2})
    restored = pickle.loads(pickled)
    restored.inner.decision = "CONTINUE"
    assert restored.on_trial_result(None, SimpleNamespace(trial_id="a"), {"epoch": 3}) == "STOP"
    assert restored.on_trial_result(None, SimpleNamespace(trial_id="c"), {"epoch": 3}) == "CONTINUE"
    restored.inner.decision = "STOP"
    restored.on_trial_result(None, SimpleNamespace(trial_id="b"), {"epoch": 3})
    assert load_stop_decisions(exp) == {"a": {"epoch": 2, "scheduler": "asha"}, "b": {"epoch": 3, "scheduler": "asha"}}
    assert [p.name for p in Path(exp).iterdir()] == [STOPS_FILE]  # no temporary file left
    assert load_stop_decisions(str(tmp_path / "none")) == {}


# ----------------------------------------------------------------- storage probe
def test_storage_probe_proves_the_folder_creatable_and_leaves_nothing(tmp_path: Path) -> None:
    from search.storage import probe_local_folder

    assert probe_local_folder(str(tmp_path / "a" / "b" / "c")) is None
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    assert probe_local_folder(str(tmp_path / "file" / "sub")) == f"{tmp_path / 'file'} is a file, not a folder"
    with pytest.raises(OptionError, match=r"^cannot create the results folder .*file/sub \(--storage\): .*Fix: "):
        _cpu_plan(storage=str(tmp_path / "file" / "sub"))


# ----------------------------------------------------------------- plugins
def test_building_the_parser_loads_no_method_registry() -> None:
    """--plugin must reach FGVC_PLUGINS before the method registry is imported."""
    code = ("import sys; from search import driver; driver.parse_args(['--space', 'x', '--plugin', 'json']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fgmodels', 'ray', 'torch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_plugins_are_exported_saved_and_restored_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    from fgmodels.registry import PLUGINS_ENV

    plugin = tmp_path / "my_methods.py"
    plugin.write_text("# registers nothing\n")
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    args = driver.parse_args(["--space", "gholm", "--storage", str(tmp_path / "res"), "--name", "p",
                              "--plugin", "my_methods.py", "--plugin", "json"])
    plan, _ = driver.prepare(args)
    assert plan.plugins == [str(plugin), "json"]
    assert os.environ[PLUGINS_ENV] == f"{plugin},json"
    (tmp_path / "res" / "p").mkdir(parents=True)
    (tmp_path / "res" / "p" / "search_plan.json").write_text(plan.to_json())
    monkeypatch.delenv(PLUGINS_ENV)
    resumed, _ = driver.prepare(driver.parse_args(["--resume", "--storage", str(tmp_path / "res"), "--name", "p",
                                                   "--num-samples", "3", "--address", "auto"]))
    assert os.environ[PLUGINS_ENV] == f"{plugin},json" and resumed.plugins == plan.plugins
    assert resumed.num_samples == plan.num_samples and resumed.address == "auto"  # ignored / replaced
    assert "ignored: --num-samples" in capsys.readouterr().out
    with pytest.raises(OptionError, match="--plugin nowhere.py: no such Python file.*Fix"):
        driver.prepare(driver.parse_args(["--space", "gholm", "--plugin", "nowhere.py"]))
    with pytest.raises(OptionError, match="--plugin no_such_module_x: .*Fix"):
        driver.prepare(driver.parse_args(["--space", "gholm", "--plugin", "no_such_module_x"]))


# ----------------------------------------------------------------- how a run ended
def _record(trial_id: str, status: str, curve: list[tuple[int, float]], message: str = "") -> SimpleNamespace:
    best = max(curve, key=lambda p: p[1]) if curve else (0, math.nan)
    return SimpleNamespace(trial_id=trial_id, method="gholm", status=status, epochs_run=len(curve),
                           best_val_acc=best[1], best_epoch=best[0], message=message, path=f"/exp/trial_{trial_id}")


def test_failure_reason_names_why_a_search_found_nothing() -> None:
    from search.outcome import failure_reason

    crashed = [_record("a", "errored", [], "ConfigError: lr must be > 0"), _record("b", "errored", [], "x")]
    reason = failure_reason(crashed)
    assert reason.startswith("no trial completed an epoch (2 errored)") and "lr must be > 0" in reason
    assert "/exp/trial_a/error.txt" in reason and "Fix:" in reason
    best_crashed = [_record("a", "completed", [(1, 0.4), (2, 0.5)]), _record("b", "errored", [(1, 0.7)], "boom")]
    reason = failure_reason(best_crashed)
    assert reason.startswith("the best trial by val_acc, b (0.7000 at epoch 1), errored") and "Fix:" in reason
    fine = [_record("a", "completed", [(1, 0.4)]), _record("b", "errored", [(1, 0.3)], "boom"),
            _record("c", "pruned", [(1, 0.2)])]
    assert failure_reason(fine) is None


def test_interrupted_summary_counts_trials_and_epochs_and_says_how_to_continue() -> None:
    from search.outcome import interrupted_summary

    plan = SimpleNamespace(name="demo", storage="/r s", num_samples=8)
    text = interrupted_summary([_record("a", "unfinished", [(1, 0.5), (2, 0.6)]), _record("b", "unfinished", [])], plan)
    assert text.splitlines()[0].startswith("search interrupted (Ctrl-C): 2 of 8 trial(s) started, 2 epoch(s) done")
    assert "trial a (gholm): 2 epoch(s), best val_acc 0.6000, interrupted" in text
    assert text.splitlines()[-1].strip().endswith("--resume --name demo --storage '/r s'")


def test_plan_file_round_trips_and_older_files_get_todays_names(tmp_path: Path) -> None:
    plan, _ = _cpu_plan(storage=str(tmp_path))
    again = SearchPlan.from_json(plan.to_json())
    assert again == plan
    old = json.loads(plan.to_json())
    for key in ("searcher", "scheduler", "plugins"):
        del old[key]
    older = SearchPlan.from_json(json.dumps(old))
    assert (older.searcher, older.scheduler, older.plugins) == ("tpe", "asha", [])
