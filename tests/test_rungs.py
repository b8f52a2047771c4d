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
