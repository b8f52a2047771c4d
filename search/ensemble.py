"""``--ensemble K``: the K best trials' best checkpoints, their softmax outputs
averaged (equal weights).

Chosen on validation only: the members are the top K of the leaderboard (by
best val_acc), and the ensemble's val accuracy is reported beside that of its
best member, both measured here on the whole validation split (a trial's own
val_acc may have used ``max_eval_batches``). The test split is then read once
per member, in the search's single test evaluation: the best member's test
numbers and the ensemble's come from the same pass.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from search.records import TrialRecord

ENSEMBLE_JSON = "ensemble.json"


def ensemble_probs(logits: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted mean of the members' softmax outputs ([N, C] each)."""
    weights = list(weights) if weights is not None else [1.0] * len(logits)
    total = sum(weights)
    return sum(w / total * torch.softmax(x.float(), dim=1) for w, x in zip(weights, logits))


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return int((scores.argmax(1) == labels).sum()) / labels.numel()


def split_logits(record: TrialRecord, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, C], labels [N]) of a trial's best checkpoint on a whole split,
    in the split's fixed order, as evaluation computes them (``predict``)."""
    from fgmodels.assembly import build_model, load_data
    from fgmodels.checkpoint import load_state
    from fgmodels.config import resolve_config
    from fgmodels.runtime import autocast_for, make_loader, pick_device, to_device

    cfg = resolve_config({**record.config, "compile": False})
    device = pick_device(cfg["device"])
    data = load_data(cfg)
    model = build_model(cfg, data.num_classes, device)
    with record.checkpoint.as_directory() as ckpt:
        model.load_state_dict(load_state(ckpt, map_location=device)["model"])
    model.eval()
    loader = make_loader({"test": data.test, "val": data.val}[split], int(cfg["batch_size"]), False, cfg, device)
    outs, labels = [], []
    with torch.no_grad():
        for images, target in loader:
            images, target = to_device(images, target, device, cfg)
            with autocast_for(cfg, device):
                outs.append(model.predict(images).detach().float().cpu())
            labels.append(target.cpu())
    return torch.cat(outs), torch.cat(labels)


def members_of(ranked: list[TrialRecord], k: int) -> list[TrialRecord]:
    """The top ``k`` rankable trials (``ranked``: best first) with a kept checkpoint."""
    return [r for r in ranked if r.ranked and r.checkpoint is not None][:k]


def evaluate(members: list[TrialRecord], split: str) -> dict[str, Any]:
    """Each member's and the ensemble's accuracy on ``split``, plus the logits."""
    logits, labels = [], None
    for record in members:
        out, target = split_logits(record, split)
        if labels is not None and not torch.equal(labels, target):
            raise RuntimeError(f"trial {record.trial_id} sees the {split} split in another order or size than "
                               f"trial {members[0].trial_id}: an ensemble needs the same images. Fix: ensemble "
                               f"trials of the same dataset and split (--set fixes data keys for all trials)")
        labels = target
        logits.append(out)
    return {"members": [{"trial_id": r.trial_id, "method": r.method, "acc": accuracy(x, labels)}
                        for r, x in zip(members, logits)],
            "acc": accuracy(ensemble_probs(logits), labels), "images": int(labels.numel()),
            "logits": logits, "labels": labels}


def write_val_report(members: list[TrialRecord], folder: Path) -> tuple[dict[str, Any], str]:
    """``ensemble.json`` (validation only) and a printable line."""
    val = evaluate(members, "val")
    best = val["members"][0]
    report = {"note": "validation split only; members are the top trials by val_acc, softmax averaged with equal "
                      "weights; accuracies measured here on the whole validation split",
              "k": len(members), "members": val["members"], "val_images": val["images"],
              "ensemble_val_acc": val["acc"], "best_member_val_acc": best["acc"],
              "best_member": best["trial_id"], "ensemble_better": val["acc"] > best["acc"]}
    (folder / ENSEMBLE_JSON).write_text(json.dumps(report, indent=2) + "\n")
    verdict = "better than" if val["acc"] > best["acc"] else "equal to" if val["acc"] == best["acc"] else "worse than"
    text = (f"ensemble of the top {len(members)} trials: val_acc {val['acc']:.4f} on {val['images']} images, "
            f"{verdict} its best member {best['trial_id']} ({best['acc']:.4f}) -> {folder / ENSEMBLE_JSON}")
    return report, text


def on_test_split(members: list[TrialRecord]) -> tuple[dict[str, float], dict[str, Any]]:
    """One pass over the test split per member: the best member's metrics (as
    :func:`fgmodels.evaluation.evaluate` reports them) and the ensemble entry."""
    test = evaluate(members, "test")
    best_logits, labels = test["logits"][0], test["labels"]
    best = {"acc": accuracy(best_logits, labels),
            "loss": float(torch.nn.functional.cross_entropy(best_logits, labels)), "n": test["images"]}
    entry = {"k": len(members), "members": test["members"], "test_acc": test["acc"], "test_images": test["images"]}
    return best, entry
