"""Does the search pay? Search-efficiency benchmark of the CPU demo.

Stages (each writes under benchmarks/results_search/ and can be rerun alone):

  --pool N    train the paper point (5 seeds), N configurations drawn by Sobol from
              the demo's space (seed 0), then the pool's winner (5 seeds), and both
              under the demo's previous recipe (5 seeds each), to full length with
              ``python -m fgmodels.train`` (no Ray); cached in pool.jsonl, resumable.
  --long      the pool's winner with 5 seeds and 20 epochs (seed spread of longer training).
  --replay    seed_spread.*, grace_rule.md, replay of every strategy at the same
              budget in trial-epochs on the pool (benchmarks/replay.py), tables and
              anytime plots (search_efficiency.*, anytime_*.png).
  --live S    one real ``run_search.py`` search per strategy S (comma-separated
              names, or "all") at the same budget; appended to live.csv.
              ``--live report`` sets each beside its replay range (live_check.md).

  python benchmarks/bench_search.py --pool 20 && python benchmarks/bench_search.py --replay
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import search_pool as sp  # noqa: E402
from benchmarks.replay import PoolEntry, Replay  # noqa: E402
from benchmarks.strategies import STRATEGIES, Strategy, run_strategy, summarise  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results_search"
POOL = RESULTS / "pool.jsonl"
SEEDS = range(5)
BUDGET = 50  # trial-epochs per search: about what the demo's 8 trials under ASHA spend
CONCURRENCY = 2  # the demo's --max-concurrent
REPLAY_SEEDS = 12
MACHINE = f"shared 2-core CPU VM ({platform.processor() or platform.machine()}), other jobs running beside"


def set_results(folder: Path) -> None:
    global RESULTS, POOL
    RESULTS, POOL = folder, folder / "pool.jsonl"


# ---------------------------------------------------------------- stage 1: the pool
def pool_stage(n: int, workers: int) -> None:
    space = sp.demo_space()
    paper = sp.paper_params(space)
    drawn = sp.draw_params(space, n, seed=7)
    jobs = [sp.Job("paper", "after", s, paper, sp.full_config(space, paper, "after", s)) for s in SEEDS]
    jobs += [sp.Job("pool", "after", 0, p, sp.full_config(space, p, "after", 0)) for p in drawn]
    sp.run_jobs(jobs, POOL, workers)
    win = winner(sp.load(POOL))
    jobs = [sp.Job("winner", "after", s, win, sp.full_config(space, win, "after", s)) for s in SEEDS if s]
    jobs += [sp.Job(role, "before", s, p, sp.full_config(space, p, "before", s))
             for s in SEEDS for role, p in (("paper", paper), ("winner", win))]  # by seed: a cut run stays balanced
    sp.run_jobs(jobs, POOL, workers)


def long_stage(workers: int) -> None:
    """The winner with 5 seeds and twice the epochs: does longer training shrink the seed spread?"""
    space = sp.demo_space()
    win = winner(sp.load(POOL))
    sp.run_jobs([sp.Job("winner", "after, 20 epochs", s, win, sp.full_config(space, win, "after, 20 epochs", s))
                 for s in SEEDS], POOL, workers)


def winner(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The search's pick: the seed-0 configuration with the best val_acc (as the leaderboard ranks)."""
    pool = [r for r in rows if r["recipe"] == "after" and r["seed"] == 0 and r["role"] in ("pool", "paper")]
    return max(pool, key=lambda r: max(r["curve"]))["params"]


def pool_entries(rows: list[dict[str, Any]]) -> list[PoolEntry]:
    """The seed-0 curves of the current recipe, one per configuration (the paper point first)."""
    seen, out = set(), []
    for r in sorted(rows, key=lambda r: r["role"] != "paper"):
        key = json.dumps(r["params"], sort_keys=True)
        if r["recipe"] == "after" and r["seed"] == 0 and key not in seen:
            seen.add(key)
            out.append(PoolEntry(r["params"], tuple(r["curve"]), tuple(r["epoch_s"])))
    return out


# ---------------------------------------------------------------- stage 2: tables
def seed_spread(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best val_acc per seed of the paper point and the winner, before and after the recipe change."""
    out = []
    for recipe in sp.RECIPES:
        for role in ("paper", "winner"):
            win = winner(rows)
            runs = [r for r in rows if r["recipe"] == recipe and (
                r["role"] == role or (role == "winner" and r["params"] == win and r["role"] != "paper"))]
            by_seed = {r["seed"]: max(r["curve"]) for r in runs}
            if not by_seed:
                continue
            cfg = runs[0]["config"]
            val = int(round(10 * cfg["synthetic_per_class"] // 2 * cfg["val_fraction"]))
            mean, sd, n = summarise(list(by_seed.values()))
            out.append({"recipe": recipe, "config": role, "val_images": val, "epochs": cfg["epochs"],
                        "batches_per_epoch": cfg["max_train_batches"],
                        **{f"seed{s}": round(by_seed[s], 4) for s in sorted(by_seed)},
                        "mean": round(mean, 4), "sd": round(sd, 4), "seeds": n,
                        "mean_wall_s": round(sum(r["wall_s"] for r in runs) / len(runs), 1)})
    return out


def rung_rows(pool: list[PoolEntry]) -> list[dict[str, Any]]:
    """Spearman of each epoch's val_acc with the final val_acc over the pool (search.rungs' ``final``)."""
    from search.rungs import spearman

    max_t = len(pool[0].curve)
    return [{"epoch": e, "final": spearman([p.curve[e - 1] for p in pool], [p.curve[-1] for p in pool])}
            for e in range(1, max_t + 1)]


def replay_all(pool: list[PoolEntry], grace: int, seeds: int) -> dict[str, list[Replay]]:
    space = sp.demo_space()
    max_t = len(pool[0].curve)
    out = {}
    for strategy in STRATEGIES:
        trials = BUDGET // max_t if strategy.scheduler == "none" else 8
        out[strategy.name] = [run_strategy(strategy, pool, space, seed, BUDGET, max_t, grace, 2.0, CONCURRENCY,
                                           trials) for seed in range(seeds)]
        print(f"replayed {strategy.name}: {seeds} seeds", flush=True)
    return out


def paper_replays(rows: list[dict[str, Any]]) -> list[Replay]:
    """The paper default alone: its own curve under each seed, one trial, no search."""
    out = []
    for r in (r for r in rows if r["role"] == "paper" and r["recipe"] == "after"):
        rep, best, wall = Replay(trials=[0]), -math.inf, 0.0
        for e, (v, s) in enumerate(zip(r["curve"], r["epoch_s"]), 1):
            best, wall = max(best, v), wall + s
            rep.epochs.append(e), rep.wall.append(wall), rep.best.append(best)
        out.append(rep)
    return out


def efficiency_table(replays: dict[str, list[Replay]]) -> tuple[list[dict[str, Any]], float]:
    target = summarise([r.final_best for r in replays["random"]])[0]
    rows = []
    for name, reps in replays.items():
        mean, sd, n = summarise([r.final_best for r in reps])
        need = [r.budget_to_reach(target) for r in reps]
        bmean, bsd, reached = summarise(need)
        rows.append({"strategy": name, "seeds": n, "final_best_mean": round(mean, 4), "final_best_sd": round(sd, 4),
                     "budget_to_random_best_mean": round(bmean, 1), "budget_to_random_best_sd": round(bsd, 1),
                     "reached": f"{reached}/{len(reps)}", "budget": max(r.epochs[-1] for r in reps),
                     "trials_mean": round(sum(len(r.trials) for r in reps) / len(reps), 1),
                     "wall_s_mean": round(sum(r.wall[-1] for r in reps) / len(reps))})
    return rows, target


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def replay_stage(seeds: int) -> None:
    from benchmarks.search_plots import anytime_plot, seed_spread_plot
    from search.grace import RELIABLE, first_reliable_epoch

    rows = sp.load(POOL)
    spread = seed_spread(rows)
    write_csv(RESULTS / "seed_spread.csv", spread)
    (RESULTS / "seed_spread.md").write_text(f"# Seed spread (best val_acc per training seed; {MACHINE})\n\n"
                                            + markdown(spread))
    seed_spread_plot(spread, RESULTS / "seed_spread.png")

    pool = pool_entries(rows)
    max_t = len(pool[0].curve)
    corr = rung_rows(pool)
    first = first_reliable_epoch(corr)
    grace = first if first is not None else max_t
    (RESULTS / "rung_correlation_pool.json").write_text(json.dumps(corr, indent=2) + "\n")
    (RESULTS / "grace_rule.md").write_text(
        f"# Where ASHA's first rung goes ({len(pool)} pool configurations, {max_t} epochs)\n\n"
        + markdown([{"epoch": r["epoch"], "spearman_with_final": f"{r['final']:+.2f}"} for r in corr])
        + f"\nFirst epoch from which on the correlation stays >= {RELIABLE:g}: {first} of {max_t} "
          f"(fraction {grace / max_t:.2f}); the replays below use grace {grace}.\n")

    replays = {"paper default alone": paper_replays(rows), **replay_all(pool, grace, seeds)}
    table, target = efficiency_table(replays)
    write_csv(RESULTS / "search_efficiency.csv", table)
    (RESULTS / "search_efficiency.md").write_text(
        f"# Search efficiency (replay on {len(pool)} recorded curves, {seeds} searcher seeds, budget {BUDGET} "
        f"trial-epochs, {CONCURRENCY} trials at a time, ASHA grace {grace} rf 2)\n\n"
        f"Target: random search's mean final best {target:.4f}. Machine: {MACHINE}.\n\n" + markdown(table))
    anytime_plot(replays, "epochs", "cumulative trial-epochs", RESULTS / "anytime_epochs.png")
    anytime_plot(replays, "wall", "wall time of the replayed search (s)", RESULTS / "anytime_wall.png")
    per_seed = [{"strategy": k, "seed": i, "final_best": r.final_best,
                 "budget_to_random_best": r.budget_to_reach(target),
                 "trials": len(r.trials)} for k, reps in replays.items() for i, r in enumerate(reps)]
    write_csv(RESULTS / "replay_runs.csv", per_seed)
    print(markdown(table))


# ---------------------------------------------------------------- stage 3: live searches
def live_stage(names: list[str], grace: int) -> None:
    from benchmarks.live import live_search

    path = RESULTS / "live.csv"
    done = [r for r in csv.DictReader(path.open())] if path.exists() else []
    for strategy in (s for s in STRATEGIES if s.name in names):
        trials = BUDGET // 10 if strategy.scheduler == "none" else 8
        row = live_search(strategy, trials, strategy.grace or grace)
        done.append(row)
        write_csv(path, done)
        print(row, flush=True)


def live_report() -> None:
    """Each live search beside its strategy's replay distribution (live_check.md)."""
    replays = list(csv.DictReader((RESULTS / "replay_runs.csv").open()))
    rows = []
    for live in csv.DictReader((RESULTS / "live.csv").open()):
        finals = sorted(float(r["final_best"]) for r in replays if r["strategy"] == live["strategy"])
        acc = float(live["best_val_acc"])
        rows.append({"strategy": live["strategy"], "live_best_val_acc": acc, "live_trials": live["trials"],
                     "live_trial_epochs": live["trial_epochs"], "live_wall_s": live["wall_s"],
                     "replay_min": round(min(finals), 4), "replay_max": round(max(finals), 4),
                     "replay_seeds_at_or_below_live": f"{sum(f <= acc for f in finals)}/{len(finals)}",
                     "inside": min(finals) <= acc <= max(finals)})
    (RESULTS / "live_check.md").write_text(f"# Live searches against the replay ({MACHINE})\n\n" + markdown(rows))
    print(markdown(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, metavar="N", help="train N drawn configurations (+ seeds) to full length")
    ap.add_argument("--long", action="store_true", help="the pool's winner with 5 seeds and 20 epochs")
    ap.add_argument("--workers", type=int, default=2, help="pool runs at once")
    ap.add_argument("--replay", action="store_true", help="tables, grace rule and replays from pool.jsonl")
    ap.add_argument("--seeds", type=int, default=REPLAY_SEEDS, help="searcher seeds per strategy in the replay")
    ap.add_argument("--live", metavar="STRATEGIES",
                    help="comma-separated strategy names, all, or report (live_check.md)")
    ap.add_argument("--grace", type=int, default=3, help="ASHA grace of the live searches (the auto value)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results folder")
    args = ap.parse_args()
    set_results(args.results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.pool:
        pool_stage(args.pool, args.workers)
    if args.long:
        long_stage(args.workers)
    if args.replay:
        replay_stage(args.seeds)
    if args.live == "report":
        live_report()
    elif args.live:
        names = [s.name for s in STRATEGIES] if args.live == "all" else args.live.split(",")
        live_stage(names, args.grace)


if __name__ == "__main__":
    main()
