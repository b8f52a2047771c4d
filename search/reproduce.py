"""``--reproduce METHOD --data D``: one run at the point where the paper reports
its accuracy on D, instead of a search.

The point is the ``paper:`` section of ``spaces/<method>.yaml``
(:mod:`search.spaces.paper`). :func:`reproduce_plan` turns it into the plan
values a search would take from the command line: the method's space, one
trial, no early stopping, the paper's epochs, and the whole point fixed as
``--set`` keys (so the searcher has nothing left to choose and ``--resume``
finds it in the saved plan). The user's own ``--set`` keys come after it
(e.g. ``checkpoint_path`` on a machine without internet).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.options import OptionError
from search.plan import FINAL_FULL

if TYPE_CHECKING:
    from search.plan import SearchPlan
    from search.spaces.paper import Paper, PaperResult

# what --reproduce decides; giving one of these beside it is refused rather than silently overruled
_DECIDES = {"space": "--space", "num_samples": "--num-samples", "scheduler": "--scheduler",
            "max_epochs": "--max-epochs", "grace_period": "--grace-period"}
PENDING = "pending: needs a GPU"


def paper_of(method: str, spaces_dir: Path | None = None) -> "Paper":
    """The validated ``paper:`` section of the method's space file (OptionError if none)."""
    from search.spaces import SPACES_DIR, SpaceError, load_space

    try:
        space = load_space(method, spaces_dir or SPACES_DIR)
    except SpaceError as err:
        raise OptionError(f"--reproduce {method!r}: {err}") from None
    paper = None if space.is_union else getattr(space, "paper", None)
    if paper is None:
        raise OptionError(f"--reproduce {method!r}: spaces/{method}.yaml has no `paper:` section. Fix: reproduce "
                          f"one of {reproducible_methods()}, or add the paper's accuracies to that file")
    return paper


def paper_result(method: str, data: str, spaces_dir: Path | None = None) -> "PaperResult":
    """What the paper reports for ``data``; OptionError naming the datasets it does report."""
    paper = paper_of(method, spaces_dir)
    if data not in paper.datasets:
        reported = f"only {sorted(paper.datasets)}" if paper.datasets else f"no dataset this tool loads ({paper.note})"
        raise OptionError(f"--reproduce {method}: the paper ({paper.source}) reports {reported}, not --data {data}. "
                          f"Fix: " + (f"--data one of {sorted(paper.datasets)} with its --data-root"
                                      if paper.datasets else "reproduce another method"))
    return paper.datasets[data]


def reproduce_plan(method: str, data: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan values ``--reproduce`` sets (``given``: the options on the command
    line, by plan field name; one that --reproduce decides is refused)."""
    result = paper_result(method, data)
    clash = [flag for name, flag in _DECIDES.items() if (given or {}).get(name) is not None]
    if clash:
        raise OptionError(f"--reproduce sets {', '.join(clash)} itself (the paper's single point, no early stop). "
                          f"Fix: drop {', '.join(clash)}, or run a search with --space {method}")
    return {
        "space": method,
        "num_samples": 1,
        "scheduler": "none",  # every epoch runs: nothing to stop early with one trial
        "max_epochs": int(result.config["epochs"]),
        "overrides": {k: v for k, v in result.config.items() if k != "data"},  # --data sets data
        "final_fit": FINAL_FULL,  # the papers train on the whole training split (an explicit --final-fit wins)
    }


def reproduce_args(args: argparse.Namespace) -> argparse.Namespace:
    """The command line of ``--reproduce`` rewritten as the search it runs: the
    paper's point first in ``--set``, then the user's own keys (which win)."""
    from search.spaces import SpaceError, parse_overrides

    given = {name: getattr(args, name, None) for name in _DECIDES}
    values = reproduce_plan(args.reproduce, args.data or "synthetic", given)
    if getattr(args, "final_fit", None) is not None:
        values.pop("final_fit")
    try:
        own = parse_overrides(args.set or [])
    except SpaceError as err:
        raise OptionError(str(err)) from None
    point = values.pop("overrides")
    epochs = own.get("epochs", values["max_epochs"])
    out = argparse.Namespace(**vars(args))
    for name, value in values.items():
        setattr(out, name, value)
    out.max_epochs = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else values["max_epochs"]
    out.set = [f"{k}={json.dumps(v)}" for k, v in point.items()] + list(args.set or [])
    return out


def describe_reproduction(plan: "SearchPlan") -> str:
    """The plan printout's line: the paper's accuracy, and the config the one trial runs."""
    if not plan.reproduce:
        return ""
    try:
        result = paper_result(plan.reproduce, plan.data)
        source = paper_of(plan.reproduce).source
    except OptionError as err:  # a plan built by hand, not through the CLI, which refuses it first
        return f"{plan.reproduce} on {plan.data}: {err}"
    config = {**result.config, **plan.overrides}
    return (f"{plan.reproduce} on {plan.data}: the paper reports {result.accuracy:g}% top-1 ({source}); one trial "
            f"at the paper's point, {plan.max_epochs} epochs, no early stop\n  config     {json.dumps(config)}")


# ---------------------------------------------------------------- the README table
def reproducible_methods(spaces_dir: Path | None = None) -> list[str]:
    """Methods whose space file has a ``paper:`` section, in registry order."""
    from search.spaces import SPACES_DIR
    from search.spaces.checks import known_methods

    from search.spaces import load_space

    root = spaces_dir or SPACES_DIR
    return [m for m in known_methods()
            if (root / f"{m}.yaml").is_file() and getattr(load_space(m, root), "paper", None) is not None]


def paper_table(spaces_dir: Path | None = None) -> str:
    """The README's table: one row per method and dataset its paper reports
    (a paper without one, such as LGAM's CIFAR results, has no row)."""
    rows = ["| method | dataset | paper (top-1 %) | command | ours |", "| --- | --- | --- | --- | --- |"]
    for method in reproducible_methods(spaces_dir):
        paper = paper_of(method, spaces_dir)
        for data, result in paper.datasets.items():
            ours = f"{result.ours:.1f}" if result.ours is not None else PENDING
            rows.append(f"| {method} | {data} | {result.accuracy:.1f} | "
                        f"`fgvc-search --reproduce {method} --data {data} --data-root DIR` | {ours} |")
    return "\n".join(rows)
