"""Accuracy against test-time cost: the objectives ``--objective`` may name and
the Pareto front of a finished search.

``val_acc`` is always the first objective (maximised; the scheduler ranks by it
alone); each cost named after it is minimised. The costs are the ones every
trial measures once (:mod:`fgmodels.cost`).
"""
from __future__ import annotations

from collections.abc import Sequence

from search.objective import METRIC, MODE
from search.options import Rule

# --objective name -> the key each trial reports (fgmodels.cost.COST_KEYS)
COSTS: dict[str, str] = {"latency": "cost_ms_per_image", "gflops": "cost_gflops", "params": "cost_params_m"}
COST_LABELS: dict[str, str] = {"latency": "ms per image (predict)", "gflops": "GFLOPs per image (predict)",
                               "params": "parameters (millions)"}
DEFAULT_COST = "latency"  # the cost of the front when --objective names none


def parse_objective(text: str) -> tuple[str, ...]:
    """``val_acc[,cost...]`` -> the names, checked; raises ValueError with a fix."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    fix = f"Fix: e.g. --objective {METRIC} or --objective {METRIC},latency (costs: {', '.join(COSTS)})"
    if not names or names[0] != METRIC:
        raise ValueError(f"--objective {text!r} must start with {METRIC}. {fix}")
    unknown = [n for n in names[1:] if n not in COSTS]
    if unknown:
        raise ValueError(f"--objective {text!r}: unknown cost {', '.join(unknown)}. {fix}")
    if len(set(names)) != len(names):
        raise ValueError(f"--objective {text!r} names an objective twice. {fix}")
    return names


def _is_objective(text: str) -> bool:
    try:
        parse_objective(text)
    except ValueError:
        return False
    return True


OBJECTIVE = Rule(str, f"{METRIC} optionally followed by costs to minimise ({', '.join(COSTS)})", _is_objective)


def searcher_objective(objective: str) -> tuple[str | list[str], str | list[str]]:
    """(metric, mode) for the searcher: the plain pair for val_acc alone, lists
    (one direction per objective) for a multi-objective search."""
    names = parse_objective(objective)
    if len(names) == 1:
        return METRIC, MODE
    return [METRIC, *(COSTS[n] for n in names[1:])], [MODE, *("min" for _ in names[1:])]


def front_costs(objective: Sequence[str]) -> list[str]:
    """The costs the leaderboard's front is taken over: the objective's, or latency."""
    return list(objective[1:]) or [DEFAULT_COST]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` = (accuracy, cost, ...) is at least as good as ``b`` everywhere and
    better somewhere (accuracy higher, costs lower)."""
    no_worse = a[0] >= b[0] and all(x <= y for x, y in zip(a[1:], b[1:]))
    better = a[0] > b[0] or any(x < y for x, y in zip(a[1:], b[1:]))
    return no_worse and better


def pareto_mask(points: Sequence[Sequence[float]]) -> list[bool]:
    """For each (accuracy, cost, ...) point: is it on the front, i.e. dominated
    by no other? Equal points dominate neither: both stay on the front."""
    return [not any(dominates(other, p) for j, other in enumerate(points) if j != i) for i, p in enumerate(points)]
