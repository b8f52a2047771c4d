"""Plots of the search benchmark: anytime curves and the seed-spread bars."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.replay import Replay  # noqa: E402


def _step(rep: Replay, attr: str, grid: list[float]) -> list[float]:
    """Best val_acc so far at each grid point (NaN before the first epoch ends)."""
    xs, out, i, best = getattr(rep, attr), [], 0, math.nan
    for g in grid:
        while i < len(xs) and xs[i] <= g:
            best = rep.best[i]
            i += 1
        out.append(best)
    return out


def anytime_plot(replays: dict[str, list[Replay]], attr: str, xlabel: str, path: Path) -> None:
    """Mean best val_acc so far (band: +- one sd over seeds) against trial-epochs or wall time."""
    end = max(getattr(r, attr)[-1] for reps in replays.values() for r in reps)
    grid = [end * k / 200 for k in range(1, 201)]
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, reps in replays.items():
        curves = [_step(r, attr, grid) for r in reps]
        mean, sd = [], []
        for col in zip(*curves):
            vals = [v for v in col if not math.isnan(v)]
            mean.append(sum(vals) / len(vals) if len(vals) == len(col) else math.nan)
            m = mean[-1]
            sd.append(math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0)
        style = "--" if "grace 1" in name else ":" if "paper" in name else "-"
        line, = ax.plot(grid, mean, style, label=f"{name} ({len(reps)} seeds)")
        ax.fill_between(grid, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                        color=line.get_color(), alpha=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best val_acc so far (mean over seeds, band: +- 1 sd)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_spread_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Each seed's best val_acc (dots) and mean +- sd (bar) per recipe and configuration."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(rows):
        seeds = [v for k, v in r.items() if k.startswith("seed") and k != "seeds"]
        ax.errorbar([i], [r["mean"]], yerr=[r["sd"]], fmt="o", capsize=6, color="k")
        ax.scatter([i + 0.1] * len(seeds), seeds, s=14, alpha=0.7)
    ax.set_xticks(range(len(rows)), [f"{r['recipe']}\n{r['config']}\n{r['val_images']} val img" for r in rows],
                  fontsize=8)
    ax.set_ylabel("best val_acc per training seed")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
