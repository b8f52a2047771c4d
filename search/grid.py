"""The finite grid of a space, for Optuna's GridSampler, which needs every
value of every knob up front: each ``choice``, and the ``step``s of an
``int`` or ``uniform`` range. A knob without a finite grid is refused with the
change that gives it one."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from optuna.samplers import GridSampler

from search.options import OptionError

if TYPE_CHECKING:
    from search.spaces import ParamSpec, SearchSpace

MAX_GRID = 100_000  # more points than any search runs: a typo in a step, not a plan


def knob_values(key: str, spec: "ParamSpec") -> list[Any]:
    """Every value of one knob, as Optuna stores it (lists as JSON text)."""
    if spec.type == "choice":
        return [spec.encode(v) for v in spec.values]
    if spec.type == "int":
        return list(range(int(spec.low), int(spec.high) + 1, int(spec.step or 1)))
    if spec.type == "uniform" and spec.step:
        count = round((spec.high - spec.low) / spec.step)
        # rounded so that each value is exactly what suggest_float(step=...) would return
        return [round(spec.low + i * spec.step, 12) for i in range(count + 1)]
    raise OptionError(f"--searcher grid: knob {key!r} ({spec.describe()}) has no finite grid. Fix: give it a "
                      f"`step` (type: uniform), list its values (type: choice), fix it with --set {key}=VALUE, "
                      f"or use another --searcher")


def space_grid(space: "SearchSpace") -> dict[str, list[Any]]:
    """Optuna parameter name -> its values, for every searched knob."""
    if space.is_union:
        raise OptionError(f"--searcher grid cannot enumerate the union space {space.name!r}: each method has "
                          f"its own knobs. Fix: search one method at a time (--space NAME or --set method=NAME)")
    grid = {space.names.name(space.method, k): knob_values(k, spec) for k, spec in space.member(space.method).params.items()}
    if not grid:
        raise OptionError(f"--searcher grid: space {space.name!r} searches no knob. Fix: add params to it")
    if grid_size(grid) > MAX_GRID:
        raise OptionError(f"--searcher grid: the grid of space {space.name!r} has {grid_size(grid)} points "
                          f"(more than {MAX_GRID}). Fix: larger steps or fewer choices, or --searcher tpe")
    return grid


def grid_size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(v) for v in grid.values())


class FirstAwareGridSampler(GridSampler):
    """Optuna's GridSampler that visits the grid in order and counts a
    ``first`` point lying on the grid as that point's visit (Optuna's own runs
    it again); a first point off the grid is one extra trial. Reads
    GridSampler's internals as of Optuna 5.0 (pinned in pyproject.toml)."""

    def before_trial(self, study: Any, trial: Any) -> None:
        if "grid_id" in trial.system_attrs:
            return
        fixed = trial.system_attrs.get("fixed_params")
        if fixed is not None:
            grid_id = self._grid_id_of(fixed)
            if grid_id is None:
                return
        else:
            unvisited = self._get_unvisited_grid_ids(study)
            if not unvisited:  # exhausted: Optuna re-evaluates a random point and stops
                return super().before_trial(study, trial)
            grid_id = min(unvisited)
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", grid_id)

    def _grid_id_of(self, point: dict[str, Any]) -> int | None:
        values = [point.get(name) for name in self._param_names]
        for i, cell in enumerate(self._all_grids):
            if all(self._grid_value_equal(a, b) for a, b in zip(cell, values)):
                return i
        return None


def first_points_off_grid(space: "SearchSpace", grid: dict[str, list[Any]]) -> int:
    """How many of the space's first points are not grid points (each one extra trial)."""
    def on_grid(point: dict[str, Any]) -> bool:
        return all(any(_same(point[name], v) for v in values) for name, values in grid.items())
    return sum(not on_grid(p) for p in space.points_to_evaluate())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b
