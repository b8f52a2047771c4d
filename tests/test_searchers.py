"""Every searcher of ``--searcher``: the space's first point comes first, every
proposal lies inside the space, the grid enumerates exactly the grid, TPE's
settings follow the search's size, and what a searcher cannot do is refused
before Ray starts. Proposals are drawn from the very searcher the tuner builds
(Ray's OptunaSearch around the sampler), fed a result after each; the real
searches live in tests/test_schedulers.py."""
from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from search.options import OptionError
from search.plan import SearchPlan, resolve_plan
from search.searchers import SEARCHERS, build_searcher, tpe_settings
from search.spaces import SearchSpace, load_space
from tests.test_cli import TINY, _no_ray_cli

# a space with a finite grid: 3 x 3 x 2 = 18 points, and one first point
GRID_PARAMS = {"drop_rate": {"type": "uniform", "low": 0.0, "high": 0.5, "step": 0.25},
               "label_smoothing": {"type": "uniform", "low": 0.0, "high": 0.2, "step": 0.1},
               "batch_size": {"type": "choice", "values": [8, 16]}}
GRID = {"drop_rate": [0.0, 0.25, 0.5], "label_smoothing": [0.0, 0.1, 0.2], "batch_size": [8, 16]}  # by hand
FIRST = {"drop_rate": 0.25, "label_smoothing": 0.1, "batch_size": 16}


def write_space(tmp_path: Path, params: dict[str, Any] | None = None, first: Any = None, **extra: Any) -> Path:
    fixed = {k: v for k, v in TINY["fixed"].items() if k not in (params or GRID_PARAMS)}
    space = {**TINY, "fixed": fixed, "params": params or GRID_PARAMS, **extra}
    if first is not None:
        space["first"] = first
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def plan_for(path: Path, tmp_path: Path, **opts: Any) -> tuple[SearchPlan, SearchSpace]:
    base = {"space": str(path), "name": "t", "storage": str(tmp_path / "r"), "max_epochs": 2, "smoke": False}
    return resolve_plan({**base, **opts}, load_space(str(path)), gpus=0, cpus=2)


def proposals(plan: SearchPlan, space: SearchSpace, n: int) -> list[dict[str, Any]]:
    """n configs from the searcher the tuner builds, each told a result before the next."""
    searcher = build_searcher(plan, space)
    out = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        assert config is not None, f"searcher stopped after {i} proposals"
        out.append(space.to_trial_config(config))
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.1 * (i % 7), "epoch": 2})
    return out


def searchable(name: str) -> bool:
    return name != "cmaes" or importlib.util.find_spec("cmaes") is not None


@pytest.mark.parametrize("name", [s for s in SEARCHERS if searchable(s)])
def test_every_searcher_proposes_the_first_point_first_then_only_configs_of_the_space(tmp_path: Path,
                                                                                      name: str) -> None:
    space_file = write_space(tmp_path, {**GRID_PARAMS, "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}}
                             if name != "grid" else None, first={**FIRST, "lr": 1.0e-3} if name != "grid" else FIRST)
    plan, space = plan_for(space_file, tmp_path, searcher=name, num_samples=8)
    configs = proposals(plan, space, 8)
    assert {k: configs[0][k] for k in space.first[0]} == space.first[0]
    params = space.member(space.method).params
    for config in configs:
        assert set(params) <= set(config)
        for key, spec in params.items():
            assert spec.contains(config[key]), (name, key, config[key])
        assert config["backbone"] == "test_convnext"  # the constants travel too
    assert len({tuple(sorted((k, c[k]) for k in params)) for c in configs}) >= 4  # not one point over and over


def test_grid_runs_the_first_point_then_exactly_every_other_grid_point(tmp_path: Path) -> None:
    plan, space = plan_for(write_space(tmp_path, first=FIRST), tmp_path, searcher="grid")
    size = len(list(itertools.product(*GRID.values())))
    assert plan.num_samples == size  # the default: every grid point once, the first point (on the grid) first
    configs = proposals(plan, space, plan.num_samples)
    assert {k: configs[0][k] for k in GRID} == FIRST
    seen = [tuple(c[k] for k in GRID) for c in configs]
    assert sorted(seen) == sorted(itertools.product(*GRID.values()))  # each point once, nothing else
    # --num-samples is capped at the grid, or kept when smaller
    assert plan_for(write_space(tmp_path, first=FIRST), tmp_path, searcher="grid", num_samples=500)[0].num_samples == 18
    assert plan_for(write_space(tmp_path, first=FIRST), tmp_path, searcher="grid", num_samples=5)[0].num_samples == 5


def test_a_first_point_off_the_grid_is_one_extra_trial(tmp_path: Path) -> None:
    params = {**GRID_PARAMS, "lr": {"type": "choice", "values": [1.0e-3, 1.0e-2]}}
    off = {**FIRST, "lr": 1.0e-3, "drop_rate": 0.3}  # 0.3 is inside drop_rate's range, between its steps
    params["drop_rate"] = {"type": "uniform", "low": 0.0, "high": 0.5, "step": 0.25}
    plan, space = plan_for(write_space(tmp_path, params, first=off), tmp_path, searcher="grid")
    assert plan.num_samples == 36 + 1
    configs = proposals(plan, space, plan.num_samples)
    assert {k: configs[0][k] for k in off} == off
    keys = [*GRID, "lr"]
    assert sorted(tuple(c[k] for k in keys) for c in configs[1:]) == \
        sorted(itertools.product(*GRID.values(), [1.0e-3, 1.0e-2]))


def test_grid_refuses_a_knob_without_a_finite_grid_naming_it(tmp_path: Path) -> None:
    space_file = write_space(tmp_path, {**GRID_PARAMS, "lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2}})
    with pytest.raises(OptionError, match=r"--searcher grid: knob 'lr' \(loguniform \[0.0001, 0.01\]\) has no "
                                          r"finite grid\. Fix: .*--set lr=VALUE"):
        plan_for(space_file, tmp_path, searcher="grid")
    # fixing the knob with --set gives the rest a grid again
    plan, _ = plan_for(space_file, tmp_path, searcher="grid", overrides={"lr": 1.0e-3})
    assert plan.num_samples == 18


@pytest.mark.parametrize("num_samples, concurrent, startup, liar", [
    (8, 2, 3, True),      # a small search: 3 random trials at least
    (32, None, 8, True),  # a quarter of the trials
    (200, 4, 10, True),   # never more than 10
    (16, 1, 4, False),    # one trial at a time: nothing to lie about
])
def test_tpe_settings_follow_the_search_size_and_concurrency(tmp_path: Path, num_samples: int,
                                                             concurrent: int | None, startup: int, liar: bool) -> None:
    plan, space = plan_for(write_space(tmp_path), tmp_path, num_samples=num_samples, max_concurrent=concurrent)
    assert tpe_settings(plan) == {"n_startup_trials": startup, "multivariate": True, "constant_liar": liar}
    sampler = build_searcher(plan, space)._sampler
    assert (sampler._n_startup_trials, sampler._multivariate, sampler._constant_liar) == (startup, True, liar)


def test_dry_run_shows_the_pair_and_the_grid_size(tmp_path: Path) -> None:
    done = _no_ray_cli(["--space", str(write_space(tmp_path, first=FIRST)), "--searcher", "grid", "--scheduler",
                        "median", "--dry-run", "--storage", str(tmp_path / "r"), "--no-smoke", "--max-epochs", "2"],
                       tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "searcher   Optuna grid over every choice and step of the space: 18 trial(s)" in done.stdout
    assert "scheduler  median stopping rule on val_acc (max)" in done.stdout
    assert "18 trials of space" in done.stdout


def test_cmaes_without_its_package_is_refused_with_the_install_fix(tmp_path: Path) -> None:
    if importlib.util.find_spec("cmaes") is not None:
        plan, _ = plan_for(write_space(tmp_path), tmp_path, searcher="cmaes")
        assert plan.searcher == "cmaes"
        return
    with pytest.raises(OptionError, match=r"--searcher cmaes needs the package\(s\) cmaes, not installed\. "
                                          r"Fix: pip install cmaes"):
        plan_for(write_space(tmp_path), tmp_path, searcher="cmaes")
