"""Where the pruning signal is: Spearman per rung against scipy on a fixed table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from search.records import COMPLETED, DIVERGED, PRUNED, TrialRecord
from search.rungs import RUNG_JSON, RUNG_PNG, rung_correlations, spearman, write_rung_correlation

# val_acc per epoch (3 epochs); ties at epoch 1 on purpose
CURVES = {
    "t1": ([0.2, 0.5, 0.7], COMPLETED),
    "t2": ([0.2, 0.3, 0.4], COMPLETED),
    "t3": ([0.4, 0.6, 0.5], COMPLETED),
    "t4": ([0.1, 0.6, 0.8], COMPLETED),
    "t5": ([0.3, 0.2], PRUNED),
    "t6": ([0.5], DIVERGED),  # never rankable: left out everywhere
}


def _records() -> list[TrialRecord]:
    out = []
    for tid, (accs, status) in CURVES.items():
        curve = list(enumerate(accs, 1))
        best = max(accs)
        out.append(TrialRecord(trial_id=tid, method="baseline", config={}, knobs={}, curve=curve, status=status,
                               best_val_acc=best, best_epoch=accs.index(best) + 1, epochs_run=len(accs)))
    return out


@pytest.mark.parametrize("xs,ys", [([1, 2, 2, 3, 5], [5, 3, 3, 1, 2]), ([0.1, 0.4, 0.4, 0.9], [1, 2, 3, 4])])
def test_spearman_equals_scipy(xs: list[float], ys: list[float]) -> None:
    assert math.isclose(spearman(xs, ys), spearmanr(xs, ys).statistic, abs_tol=1e-12)


def test_rung_correlations_equal_scipy_on_a_fixed_table(tmp_path: Path) -> None:
    rows = rung_correlations(_records(), 3)
    done = ["t1", "t2", "t3", "t4"]
    ranked = ["t1", "t2", "t3", "t4", "t5"]
    for row in rows:
        e = row["epoch"]
        final = spearmanr([CURVES[t][0][e - 1] for t in done], [CURVES[t][0][-1] for t in done]).statistic
        assert row["final_trials"] == 4 and math.isclose(row["final"], final, abs_tol=1e-12)
        reach = [t for t in ranked if len(CURVES[t][0]) >= e]
        best = spearmanr([CURVES[t][0][e - 1] for t in reach], [max(CURVES[t][0]) for t in reach]).statistic
        assert row["best_trials"] == len(reach) and math.isclose(row["best"], best, abs_tol=1e-12)
    assert rows[2]["final"] == pytest.approx(1.0)  # the last epoch ranks as itself

    written, text = write_rung_correlation(_records(), 3, tmp_path)
    assert json.loads((tmp_path / RUNG_JSON).read_text()) == written
    assert (tmp_path / RUNG_PNG).stat().st_size > 0 and "e1" in text


def test_too_few_trials_give_no_number() -> None:
    rows = rung_correlations(_records()[:2], 3)
    assert all(r["final"] is None and r["best"] is None for r in rows)


# finals t1 > t2 > t3 > t4; Spearman (no ties) = 1 - 6 sum(d^2) / (n (n^2 - 1)), n = 4:
# e1 ranks 1,3,2,4 -> -0.8; e2 3,4,2,1 -> 0.8; e3 3,4,1,2 -> 0.6; e4 4,3,2,1 -> 1; e5 the end -> 1
GRACE_CURVES = {"t1": [0.1, 0.5, 0.4, 0.8, 0.9], "t2": [0.3, 0.6, 0.6, 0.65, 0.7],
                "t3": [0.2, 0.3, 0.2, 0.4, 0.5], "t4": [0.4, 0.2, 0.3, 0.35, 0.3]}


def test_grace_rule_on_a_fixed_table_of_curves() -> None:
    from search.grace import first_reliable_epoch

    records = [TrialRecord(trial_id=t, method="baseline", config={}, knobs={}, curve=list(enumerate(c, 1)),
                           status=COMPLETED, best_val_acc=max(c), best_epoch=c.index(max(c)) + 1, epochs_run=5)
               for t, c in GRACE_CURVES.items()]
    rows = rung_correlations(records, 5)
    assert [round(r["final"], 6) for r in rows] == [-0.8, 0.8, 0.6, 1.0, 1.0]
    assert first_reliable_epoch(rows) == 4  # e2 passes 0.7 but e3 falls back: the rung goes at e4
    assert first_reliable_epoch(rows, threshold=0.5) == 2
    assert first_reliable_epoch([{"epoch": 1, "final": None}, {"epoch": 2, "final": 0.65}]) is None


@pytest.mark.parametrize("max_epochs,fraction,grace", [(10, 0.3, 3), (12, 0.3, 4), (5, 0.3, 2), (2, 0.1, 1),
                                                       (4, 1.0, 4), (30, 0.25, 8)])
def test_auto_grace_is_the_fraction_rounded_half_up(max_epochs: int, fraction: float, grace: int) -> None:
    from search.grace import auto_grace

    assert auto_grace(max_epochs, fraction) == grace


def test_grace_auto_resolves_on_the_command_line_and_says_why(tmp_path: Path) -> None:
    from search.options import build_parser
    from search.plan import describe_plan, resolve_plan
    from search.spaces import load_space

    parser = build_parser("x", "", "")
    assert parser.parse_args(["--space", "gholm", "--grace-period", "auto"]).grace_period == "auto"
    assert parser.parse_args(["--space", "gholm", "--grace-period", "5"]).grace_period == 5
    opts = {"space": "gholm", "name": "g", "storage": str(tmp_path), "wandb": "off", "max_epochs": 20,
            "grace_period": "auto"}
    plan, _ = resolve_plan(opts, load_space("gholm"), gpus=1, cpus=4)
    assert (plan.grace_period, plan.grace_auto) == (6, True)  # 0.3 x 20
    assert "--grace-period auto = 6" in describe_plan(plan)
    plan, _ = resolve_plan({**opts, "grace_period": 2}, load_space("gholm"), gpus=1, cpus=4)
    assert (plan.grace_period, plan.grace_auto) == (2, False) and "--grace-period auto" not in describe_plan(plan)
