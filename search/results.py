"""The artefacts of a finished search, written into its folder:

* ``leaderboard.csv`` / ``leaderboard.md`` (and the table in the terminal); with
  several methods also ``leaderboard_by_method.csv`` and a by-method section,
* ``best_config.yaml``: the best trial's resolved config, which ``python -m fgmodels.train --config`` retrains,
* ``test_result.json``: the TEST split, read ONCE per model (it is never recomputed:
  an existing file is kept and reported): the best checkpoint, or with
  ``--final-fit full`` the winner retrained on the whole training split
  (:mod:`search.final_fit`), its mean and sd over ``--final-seeds``,
* with ``--rerun-top K`` (:mod:`search.reruns`) the leaderboard's ``val_acc_mean``,
  ``val_acc_sd`` and ``seeds`` columns, the winner chosen by seed mean, and a
  sentence saying whether its lead exceeds the seed spread,
* ``ensemble.json`` (``--ensemble K``): the ensemble chosen on validation among the top K
  trials, beside the best trial; ``test_result.json`` then has an ``ensemble`` entry,
* ``learning_curves.png``, ``knobs_vs_accuracy.png``, ``param_importance.png``,
* ``pareto.png``: best val_acc against the first cost of the front, the front connected
  (the leaderboard's ``pareto`` column marks the same trials),
* ``rung_correlation.json`` / ``.png``: how well each epoch's val_acc ranks trials as their end does,
* ``best_trial_viz/``: the best trial's visualisation PNGs, when its method has any.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fgmodels.cost import COST_KEYS
from search import ensemble, plots
from search.importance import param_importances
from search.objective import METRIC, rank_key
from search.pareto import COST_LABELS, COSTS, front_costs, pareto_mask, parse_objective
from search.plan import FINAL_FULL, SearchPlan
from search.records import COMPLETED, DIVERGED, ERRORED, PRUNED, STATUSES, UNFINISHED, TrialRecord
from search.rungs import write_rung_correlation
from search.seeds import SeedStats, by_mean, spread_verdict
from search.spaces import SearchSpace
from search.trainable import VIZ_DIR

LEADERBOARD_CSV, LEADERBOARD_MD, METHODS_CSV = "leaderboard.csv", "leaderboard.md", "leaderboard_by_method.csv"
BEST_CONFIG, TEST_RESULT = "best_config.yaml", "test_result.json"
SEED_COLUMNS = ("val_acc_mean", "val_acc_sd", "seeds")
VIZ_COPY = "best_trial_viz"
PLOTS = {"curves": "learning_curves.png", "knobs": "knobs_vs_accuracy.png", "importance": "param_importance.png",
         "pareto": "pareto.png"}
_STATUS_ORDER = {COMPLETED: 0, PRUNED: 0, UNFINISHED: 1, DIVERGED: 2, ERRORED: 3}


def rank(records: list[TrialRecord]) -> list[TrialRecord]:
    """Best first: rankable trials by best val_acc, then diverged, then errored."""
    def key(r: TrialRecord) -> tuple:
        acc = r.best_val_acc if not math.isnan(r.best_val_acc) else -1.0
        return (_STATUS_ORDER[r.status], *rank_key(acc, r.epochs_run, r.trial_id))
    return sorted(records, key=key)


def best_record(records: list[TrialRecord]) -> TrialRecord | None:
    ranked = [r for r in rank(records) if r.ranked]
    return ranked[0] if ranked else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return ""
    return str(value)


def on_front(records: list[TrialRecord], costs: list[str]) -> set[str]:
    """Trial ids on the Pareto front of best val_acc (max) against the named
    costs (min, :data:`search.pareto.COSTS`), among rankable trials that measured them."""
    keys = [COSTS[c] for c in costs]
    usable = [r for r in records if r.ranked and all(k in r.cost for k in keys)]
    mask = pareto_mask([(r.best_val_acc, *(r.cost[k] for k in keys)) for r in usable])
    return {r.trial_id for r, keep in zip(usable, mask) if keep}


def leaderboard_rows(records: list[TrialRecord], costs: list[str] | None = None,
                     seeds: Mapping[str, SeedStats] | None = None,
                     final: Mapping[str, float] | None = None) -> tuple[list[str], list[list[str]]]:
    """The table, best first; ``costs``: those the ``pareto`` column is taken over
    (default: latency). ``seeds`` (trial id -> seed statistics of its re-runs) adds
    ``val_acc_mean``, ``val_acc_sd``, ``seeds``; ``final`` (trial id -> test accuracy
    of its final fit) adds ``final_test_acc``: columns only when they hold something."""
    knobs: list[str] = []
    for r in records:
        knobs += [k for k in r.knobs if k not in knobs]
    front = on_front(records, costs or front_costs([METRIC]))
    seeds, final = seeds or {}, final or {}
    header = ["rank", "trial_id", "method", *knobs, "best_val_acc", *(SEED_COLUMNS if seeds else ()),
              "best_epoch", "epochs_run", "status", *COST_KEYS, "pareto", *(("final_test_acc",) if final else ())]
    rows = []
    for i, r in enumerate(rank(records), 1):
        acc = "" if math.isnan(r.best_val_acc) else f"{r.best_val_acc:.4f}"
        s = seeds.get(r.trial_id)
        spread = ([f"{s.mean:.4f}", f"{s.sd:.4f}", str(len(s.values))] if s else ["", "", ""]) if seeds else []
        test = [f"{final[r.trial_id]:.4f}" if r.trial_id in final else ""] if final else []
        rows.append([str(i), r.trial_id, r.method, *[_fmt(r.knobs.get(k)) for k in knobs], acc, *spread,
                     str(r.best_epoch or ""), str(r.epochs_run), r.status, *[_fmt(r.cost.get(k)) for k in COST_KEYS],
                     "yes" if r.trial_id in front else "no", *test])
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def method_summary_rows(records: list[TrialRecord]) -> tuple[list[str], list[list[str]]]:
    """One row per method, best first: how each method did across its trials,
    so a cross-method search answers "which method?" before "which trial?"."""
    header = ["method", "trials", "best_val_acc", "best_trial", COMPLETED, PRUNED, "failed"]
    rows = []
    ranked = rank(records)
    for method in dict.fromkeys(r.method for r in ranked):
        mine = [r for r in ranked if r.method == method]
        top = next((r for r in mine if r.ranked), None)
        count = lambda *st: str(sum(r.status in st for r in mine))  # noqa: E731
        rows.append([method, str(len(mine)), f"{top.best_val_acc:.4f}" if top else "",
                     top.trial_id if top else "", count(COMPLETED), count(PRUNED),
                     count(DIVERGED, ERRORED, UNFINISHED)])
    return header, rows


def write_leaderboard(records: list[TrialRecord], folder: Path, costs: list[str] | None = None,
                      seeds: Mapping[str, SeedStats] | None = None, final: Mapping[str, float] | None = None,
                      notes: Sequence[str] = ()) -> str:
    """The leaderboard files and the printable table; ``notes``: sentences after the table in ``leaderboard.md``."""
    header, rows = leaderboard_rows(records, costs, seeds, final)
    per_method = len({r.method for r in records}) > 1
    with open(folder / LEADERBOARD_CSV, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    md = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    table = format_table(header, rows)
    if per_method:
        m_header, m_rows = method_summary_rows(records)
        with open(folder / METHODS_CSV, "w", newline="") as fh:
            csv.writer(fh).writerows([m_header, *m_rows])
        md = ["## By method", "", "| " + " | ".join(m_header) + " |", "|" + "|".join("---" for _ in m_header) + "|",
              *["| " + " | ".join(row) + " |" for row in m_rows], "", "## All trials", "", *md]
        table = format_table(m_header, m_rows) + "\n\n" + table
    md += ["", *notes] if notes else []
    (folder / LEADERBOARD_MD).write_text("\n".join(md) + "\n")
    return table


def write_best_config(best: TrialRecord, plan: SearchPlan, folder: Path) -> Path:
    """The best trial's resolved config (every key spelled out, as it ran:
    retraining does not depend on later defaults)."""
    from fgmodels.config import save_config

    path = folder / BEST_CONFIG
    save_config(best.config, path)
    header = (f"# best trial {best.trial_id} of search {plan.name!r}: val_acc {best.best_val_acc:.4f} "
              f"at epoch {best.best_epoch}\n# retrain: python -m fgmodels.train --config {path}\n")
    path.write_text(header + path.read_text())
    return path


def evaluate_on_test_once(best: TrialRecord, folder: Path, members: list[TrialRecord] | None = None,
                          weights: list[float] | None = None, plan: SearchPlan | None = None,
                          seeds: Mapping[str, SeedStats] | None = None) -> dict[str, Any]:
    """The ONE evaluation of this search on the test split (kept if it exists).
    ``members``/``weights``: the ensemble's candidates (best first) and the
    weights chosen on validation; each chosen member reads the test split once,
    the best trial too. With ``plan.final_fit`` full the models read are the
    winner's final fits instead (:mod:`search.final_fit`), and the ensemble's
    chosen members for its entry."""
    from fgmodels.engine import evaluate_checkpoint

    path = folder / TEST_RESULT
    if path.exists():
        return json.loads(path.read_text()) | {"reused": True}
    if plan is not None and plan.final_fit == FINAL_FULL:
        from search import final_fit

        result = final_fit.final_result(plan, best, seeds)
        if members:
            result["ensemble"] = ensemble.on_test_split(members, weights or [1.0] * len(members))[1]
        path.write_text(json.dumps(result, indent=2) + "\n")
        return result
    if best.checkpoint is None:
        raise RuntimeError(f"trial {best.trial_id} has no kept checkpoint to evaluate on the test split")
    entry = None
    if members:
        assert members[0] is best, "the ensemble's first member is the best trial"
        metrics, entry = ensemble.on_test_split(members, weights or [1.0] * len(members))
    else:
        with best.checkpoint.as_directory() as ckpt:
            metrics = evaluate_checkpoint(ckpt, best.config, split="test")
    result = {
        "note": "the only evaluation on the test split in this search; model selection used val_acc only",
        "trial_id": best.trial_id, "method": best.method, "checkpoint": str(best.checkpoint.path),
        "best_epoch": best.best_epoch, "val_acc": best.best_val_acc,
        "test_acc": metrics["acc"], "test_loss": metrics["loss"], "test_images": metrics["n"],
    }
    if entry is not None:
        result["ensemble"] = entry
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def copy_best_viz(best: TrialRecord, folder: Path) -> Path | None:
    """The best trial's visualisation PNGs (if its method makes any)."""
    if best.checkpoint is None:
        return None
    with best.checkpoint.as_directory() as ckpt:
        source = Path(ckpt) / VIZ_DIR
        if not source.is_dir():
            return None
        shutil.copytree(source, folder / VIZ_COPY, dirs_exist_ok=True)
    return folder / VIZ_COPY


def write_plots(records: list[TrialRecord], space: SearchSpace, plan: SearchPlan, folder: Path) -> dict[str, Path]:
    importances = param_importances(space, records)
    (folder / "param_importance.json").write_text(json.dumps(importances, indent=2) + "\n")
    costs = _front_costs(plan)
    cost = costs[0]  # the plot's x axis: the first cost of the front; the front is the leaderboard's
    return {
        "curves": plots.learning_curves(records, plan.max_epochs, folder / PLOTS["curves"]),
        "knobs": plots.knob_scatter(records, folder / PLOTS["knobs"]),
        "importance": plots.importance_bars(importances, folder / PLOTS["importance"]),
        "pareto": plots.pareto_scatter(records, COSTS[cost], COST_LABELS[cost], on_front(records, costs),
                                       folder / PLOTS["pareto"]),
    }


def _front_costs(plan: SearchPlan) -> list[str]:
    return front_costs(parse_objective(plan.objective))


def winner(records: list[TrialRecord], seeds: Mapping[str, SeedStats] | None = None) -> TrialRecord | None:
    """The configuration the search settles on: the best seed mean among the
    re-run trials when there are re-runs, else the best trial."""
    best = best_record(records)
    if not seeds or best is None:
        return best
    top = by_mean([seeds[r.trial_id] for r in rank(records) if r.trial_id in seeds])[0]
    return next(r for r in records if r.trial_id == top.trial_id)


def summarize(records: list[TrialRecord], space: SearchSpace, plan: SearchPlan, test: bool = True,
              seeds: Mapping[str, SeedStats] | None = None) -> dict[str, Any]:
    """Write every artefact and print the leaderboard and the test result.
    ``seeds``: the seed statistics of the re-run trials (:func:`search.reruns.seed_reruns`)."""
    folder = plan.local_dir
    folder.mkdir(parents=True, exist_ok=True)
    verdict = spread_verdict(list(seeds.values())) if seeds else None
    notes = [f"seed re-runs: {verdict}"] if verdict else []
    table = write_leaderboard(records, folder, _front_costs(plan), seeds, notes=notes)
    counts = {s: sum(r.status == s for r in records) for s in STATUSES}
    print("\n" + table)
    print("trials: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    out: dict[str, Any] = {"records": records, "counts": counts, "plots": write_plots(records, space, plan, folder)}
    out["rungs"], rung_text = write_rung_correlation(records, plan.max_epochs, folder)
    print(rung_text)
    best = winner(records, seeds)
    if best is None:
        print("no trial finished an epoch without error: no best config and no test evaluation")
        return out
    if seeds:
        s = seeds[best.trial_id]
        print(f"seed re-runs of the top {len(seeds)} trials: the winner is chosen by the seed mean of best val_acc: "
              f"trial {best.trial_id}, {s.mean:.4f} +- {s.sd:.4f} over {len(s.values)} seeds")
        print(*notes)
    out["best"] = best
    out["best_config"] = write_best_config(best, plan, folder)
    print(f"best trial {best.trial_id} ({best.method}): val_acc {best.best_val_acc:.4f} at epoch {best.best_epoch}")
    print(f"best config: {out['best_config']}  (retrain: python -m fgmodels.train --config {out['best_config']})")
    out["viz"] = copy_best_viz(best, folder)
    ranked = rank(records)  # the winner first: it is the ensemble's best member
    ranked = [best, *(r for r in ranked if r is not best)]
    members = ensemble.members_of(ranked, plan.ensemble) if plan.ensemble else []
    if plan.ensemble and len(members) < 2:
        print(f"--ensemble {plan.ensemble}: only {len(members)} trial(s) with a kept checkpoint, no ensemble")
        members = []
    if members:
        out["ensemble"], text = ensemble.write_val_report(members, folder)
        print(text)
    if counts[UNFINISHED]:
        print("the search is unfinished: continue it with --resume before trusting a test number")
    elif test:
        result = evaluate_on_test_once(best, folder, members, out.get("ensemble", {}).get("weights"), plan, seeds)
        out["test"] = result
        again = " (already evaluated earlier: not recomputed)" if result.get("reused") else ""
        if "final_fit" in result:
            from search.final_fit import describe

            line = describe(result)
            write_leaderboard(records, folder, _front_costs(plan), seeds, {best.trial_id: result["test_acc"]},
                              [*notes, line])
            print(f"{line}{again} -> {folder / TEST_RESULT}")
        else:
            print(f"TEST split (the only test evaluation of this search){again}: acc {result['test_acc']:.4f} "
                  f"on {result['test_images']} images -> {folder / TEST_RESULT}")
        if "ensemble" in result:
            print(f"TEST split, the ensemble chosen on validation ({result['ensemble']['k']} members): "
                  f"acc {result['ensemble']['test_acc']:.4f}")
    return out
