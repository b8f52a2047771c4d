"""PNG plots of a search (matplotlib, Agg backend): learning curves, knobs
against accuracy, parameter importance. Colours are per method, so a search
over several methods stays readable."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from search.records import COMPLETED, DIVERGED, PRUNED, STATUSES, STOPPED_BY_SCHEDULER, TrialRecord  # noqa: E402
from search.spaces import OptunaNames  # noqa: E402

DPI = 110


def _colours(records: list[TrialRecord]) -> dict[str, Any]:
    methods = sorted({r.method for r in records})
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _line_colours(records: list[TrialRecord]) -> dict[str, Any]:
    """Per trial: the method's colour when several methods share the plot,
    else one colour per trial (a single-method search needs to tell trials apart)."""
    if len({r.method for r in records}) > 1:
        by_method = _colours(records)
        return {r.trial_id: by_method[r.method] for r in records}
    cmap = plt.get_cmap("tab20")
    return {r.trial_id: cmap(i % 20) for i, r in enumerate(records)}


def learning_curves(records: list[TrialRecord], max_epochs: int, path: Path) -> Path:
    """val_acc vs epoch for every trial; pruned ones dashed and ended with an x,
    diverged ones ended with a red triangle."""
    colours = _colours(records)
    lines = _line_colours(records)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in records:
        if not r.curve:
            continue
        xs, ys = zip(*r.curve)
        style = "--" if r.status == PRUNED else "-"
        ax.plot(xs, ys, style, color=lines[r.trial_id], alpha=0.85, linewidth=1.4, marker=".")
        if r.status == PRUNED:
            ax.plot(xs[-1], ys[-1], "x", color="black", markersize=8)
        elif r.status == DIVERGED:
            ax.plot(xs[-1], ys[-1], "v", color="red", markersize=8)
    handles = [plt.Line2D([], [], color=c, label=m) for m, c in colours.items()] if len(colours) > 1 else []
    handles += [plt.Line2D([], [], color="grey", linestyle="--", marker="x", markeredgecolor="black",
                           label=STOPPED_BY_SCHEDULER),
                plt.Line2D([], [], color="grey", linestyle="-", label="ran to max epochs")]
    if any(r.status == DIVERGED for r in records):
        handles.append(plt.Line2D([], [], color="red", marker="v", linestyle="", label=DIVERGED))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_xlim(0.5, max_epochs + 0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    counts = {s: sum(r.status == s for r in records) for s in STATUSES}
    ax.set_title(f"learning curves of {len(records)} trials (" + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def knob_scatter(records: list[TrialRecord], path: Path) -> Path:
    """One panel per searched knob: its value against the trial's best val_acc."""
    colours = _colours(records)
    usable = [r for r in records if r.best_val_acc == r.best_val_acc]
    knobs = sorted({k for r in usable for k in r.knobs})
    if len(colours) > 1:
        knobs = ["method", *knobs]
    cols = min(4, max(1, len(knobs)))
    rows = max(1, math.ceil(len(knobs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax, knob in zip(axes.flat, knobs):
        points = [(r.method if knob == "method" else r.knobs.get(knob), r) for r in usable
                  if knob == "method" or knob in r.knobs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in points)
        if numeric and points:
            xs = [float(v) for v, _ in points]
            if min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            labels = sorted({str(v) for v, _ in points})
            index = {lab: i for i, lab in enumerate(labels)}
            xs = [index[str(v)] for v, _ in points]
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=30, fontsize=7)
        ys = [r.best_val_acc for _, r in points]
        ax.scatter(xs, ys, c=[colours[r.method] for _, r in points],
                   marker="o", edgecolors=["black" if r.status == COMPLETED else "none" for _, r in points])
        ax.set_title(knob, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(knobs):]:
        ax.axis("off")
    if len(colours) > 1:
        fig.legend(handles=[plt.Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()],
                   loc="upper right", fontsize=8)
    fig.supylabel("best validation accuracy")
    fig.suptitle("searched knobs vs accuracy (black edge: ran to max epochs)", fontsize=10)
    return _save(fig, path)


def pareto_scatter(records: list[TrialRecord], cost_key: str, cost_label: str, front: set[str], path: Path) -> Path:
    """Best val_acc against one test-time cost, one colour per method; the
    trials on the Pareto front ringed and connected in order of cost."""
    colours = _colours(records)
    usable = [r for r in records if r.ranked and cost_key in r.cost]
    fig, ax = plt.subplots(figsize=(7, 5))
    if not usable:
        ax.text(0.5, 0.5, "no trial finished an epoch with a measured cost", ha="center", va="center", fontsize=10)
        ax.axis("off")
        return _save(fig, path)
    for method, colour in colours.items():
        mine = [r for r in usable if r.method == method]
        if mine:
            ax.scatter([r.cost[cost_key] for r in mine], [r.best_val_acc for r in mine], color=colour, label=method,
                       zorder=3)
    best = sorted((r for r in usable if r.trial_id in front), key=lambda r: (r.cost[cost_key], -r.best_val_acc))
    ax.plot([r.cost[cost_key] for r in best], [r.best_val_acc for r in best], "-", color="black", linewidth=1,
            zorder=2, label="Pareto front")
    ax.scatter([r.cost[cost_key] for r in best], [r.best_val_acc for r in best], s=120, facecolors="none",
               edgecolors="black", zorder=4)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("best validation accuracy")
    ax.set_title(f"accuracy vs cost: {len(best)} of {len(usable)} trials on the Pareto front", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def rung_correlation_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Spearman correlation of val_acc at each epoch with the end (see
    :mod:`search.rungs`); epochs with too few trials are left out."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in (("final", "with the final val_acc (trials that ran every epoch)", "o-"),
                              ("best", "with the best val_acc (every rankable trial that reached the epoch)", "s--")):
        points = [(r["epoch"], r[key]) for r in rows if r[key] is not None]
        if points:
            ax.plot(*zip(*points), style, label=label)
    if not any(r["final"] is not None or r["best"] is not None for r in rows):
        ax.text(0.5, 0.5, "too few trials per epoch for a rank correlation", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("epoch (a possible rung)")
    ax.set_ylabel("Spearman rank correlation")
    ax.set_ylim(-1.05, 1.05)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title("where the pruning signal is: does an early epoch rank trials as their end does?", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def importance_bars(importances: dict[str, dict[str, float]], path: Path) -> Path:
    """Horizontal bars; one group per method when there are several (the
    overall group then shows only the method choice: each method's knobs are
    shown, comparably named, in that method's group)."""
    if len(importances) > 1 and "all" in importances:
        importances = {**importances, "all": {k: v for k, v in importances["all"].items() if not OptunaNames.is_scoped(k)}}
    groups = list(importances) or ["all"]
    params = sorted({p for g in importances.values() for p in g},
                    key=lambda p: -max(g.get(p, 0.0) for g in importances.values()) if importances else 0)
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(params)) + 1.2))
    if not params:
        ax.text(0.5, 0.5, "not enough finished trials with different scores\nto estimate parameter importance",
                ha="center", va="center", fontsize=10)
        ax.axis("off")
        return _save(fig, path)
    height = 0.8 / len(groups)
    cmap = plt.get_cmap("tab10")
    for gi, group in enumerate(groups):
        values = [importances.get(group, {}).get(p, 0.0) for p in params]
        ax.barh([i + gi * height for i in range(len(params))], values, height=height, label=group,
                color=cmap(gi % 10))
    ax.set_yticks([i + height * (len(groups) - 1) / 2 for i in range(len(params))])
    ax.set_yticklabels(params, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("importance for validation accuracy (Optuna, normalised)")
    if len(groups) > 1:
        ax.legend(fontsize=8)
    ax.set_title("parameter importance")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
