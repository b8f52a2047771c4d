"""``--final-fit full``: the winner's configuration trained again on the whole
official training split, then the test split read once per final model.

The search's trials train on the training pool minus a validation split
(``val_fraction``, 0.2 by default): right for choosing, but the papers report
models trained on all of it. So after the search the winner (the best trial,
or the best seed mean when seed re-runs exist) is trained again with
``val_fraction`` 0, every training image once per epoch (``max_train_batches``
off), for the epochs its configuration names: the space's ``epochs``
(``--max-epochs``), over which its learning-rate schedule is defined; the
best trial's best epoch would shorten that schedule. With no validation split
there is no epoch to choose, so the last epoch's weights are evaluated.
A configuration that switches optimiser on a validation plateau
(``switch: plateau``) cannot see one here; it switches where the search's
trial switched (:func:`fgmodels.optim.replay_switch`, from the trial's reports).
``--final-seeds N`` trains N seeds (``seed``, ``seed`` + 1, ...) and reports the
mean and sd of their test accuracy.

The final fits are Ray trials of the search's trainable in ``final_fit/``
under the search folder (:func:`search.reruns.run_fixed`): resumable, logged,
on the cluster.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from search.plan import SearchPlan
from search.records import TrialRecord
from search.reruns import FixedRun, fixed_config, run_fixed
from search.seeds import SeedStats, mean_sd

FINAL_DIR = "final_fit"
EPOCHS_RULE = "the configuration's epochs (the space's, --max-epochs): its learning-rate schedule is defined over them"


def final_configs(best: TrialRecord, seeds: int) -> list[dict[str, Any]]:
    """The winner's config on the whole training split, one per seed."""
    base = int(best.config["seed"])
    return [fixed_config(best.config, seed=base + i, val_fraction=0.0, max_train_batches=None, **replayed(best))
            for i in range(seeds)]


def replayed(best: TrialRecord) -> dict[str, Any]:
    """Overrides that make a run without validation train as the search's trial did
    (today: the epoch of a plateau switch of optimiser)."""
    from fgmodels.optim import replay_switch

    if best.config.get("switch", "epoch") == "epoch":
        return {}
    return replay_switch(best.config, trial_history(best.path))


def trial_history(path: str) -> list[dict[str, Any]]:
    """A trial's reports (``result.json`` in its folder, local or in a bucket); [] when unreadable."""
    import pyarrow.fs as pafs

    fs, where = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
    try:
        with fs.open_input_stream(f"{where}/result.json") as fh:
            text = fh.read().decode()
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def evaluate_once(run: FixedRun) -> dict[str, Any]:
    """The run's last epoch's weights on the test split: the one read of it for this model."""
    from fgmodels.engine import evaluate_checkpoint

    if run.checkpoint is None or run.status == "ERROR" or run.diverged:
        raise RuntimeError(f"final-fit trial {run.trial_id} ended without a usable last checkpoint "
                           f"({run.status}{', diverged' if run.diverged else ''}). Fix: read its error.txt, "
                           f"then run --resume again (it retries an errored run from its last checkpoint)")
    with run.checkpoint.as_directory() as ckpt:
        metrics = evaluate_checkpoint(ckpt, run.config, split="test")
    last = max((r for r in run.rows if "train_images" in r), key=lambda r: r["epoch"], default={})
    return {"seed": int(run.config["seed"]), "trial_id": run.trial_id, "epochs": run.epochs_run,
            "train_images_per_epoch": int(last.get("train_images", 0)), "test_acc": metrics["acc"],
            "test_loss": metrics["loss"], "test_images": metrics["n"], "checkpoint": str(run.checkpoint.path)}


def final_result(plan: SearchPlan, best: TrialRecord, stats: Mapping[str, SeedStats] | None = None) -> dict[str, Any]:
    """Train the final fits (or continue them) and evaluate each once on test:
    the ``test_result.json`` entries (without the ensemble's)."""
    configs = final_configs(best, plan.final_seeds)
    runs = run_fixed(plan, FINAL_DIR, configs, "final fit")
    evaluated = [evaluate_once(run) for run in runs]
    return summarize_runs(best, evaluated, stats)


def summarize_runs(best: TrialRecord, evaluated: Sequence[Mapping[str, Any]],
                   stats: Mapping[str, SeedStats] | None = None) -> dict[str, Any]:
    """The test result of the final fits: their mean and sd beside the search's val_acc."""
    acc, acc_sd = mean_sd([e["test_acc"] for e in evaluated])
    loss, _ = mean_sd([e["test_loss"] for e in evaluated])
    seed = (stats or {}).get(best.trial_id)
    result: dict[str, Any] = {
        "note": "the test split is read once per final model (last epoch; no validation split to choose one); "
                "model selection used val_acc only",
        "trial_id": best.trial_id, "method": best.method, "best_epoch": best.best_epoch,
        "val_acc": best.best_val_acc,  # the search's: that trial, trained without its validation images
        "selected_by": f"seed mean of best val_acc over {len(seed.values)} seeds" if seed else "best val_acc",
        "test_of": "final fit: trained on the whole training split (val_fraction 0), last epoch",
        "test_acc": acc, "test_acc_sd": acc_sd, "test_loss": loss, "test_images": evaluated[0]["test_images"],
        "final_fit": {"seeds": [e["seed"] for e in evaluated], "epochs_rule": EPOCHS_RULE,
                      "val_fraction": 0.0, "replayed": replayed(best), "runs": list(evaluated)},
    }
    if seed:
        result["val_acc_mean"], result["val_acc_sd"] = seed.mean, seed.sd
    return result


def describe(result: Mapping[str, Any]) -> str:
    """One line for the terminal and ``leaderboard.md``."""
    runs = result["final_fit"]["runs"]
    sd = f" +- {result['test_acc_sd']:.4f}" if result.get("test_acc_sd") is not None else ""
    return (f"final fit of trial {result['trial_id']} on the whole training split ({runs[0]['train_images_per_epoch']} "
            f"images per epoch, {runs[0]['epochs']} epochs, {len(runs)} seed(s)): TEST acc {result['test_acc']:.4f}"
            f"{sd} on {result['test_images']} images; its search val_acc {result['val_acc']:.4f}")
