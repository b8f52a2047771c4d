"""``--ensemble K``: an ensemble of the K best trials' best checkpoints, its
members and weights chosen on validation only.

The candidates are the top K of the leaderboard (by best val_acc). Greedy
forward selection with replacement (Caruana et al., "Ensemble selection from
libraries of models", ICML 2004) picks them: the bag starts empty; each of
``2 K`` rounds adds (again, if it helps) the candidate whose softmax, averaged
with the bag's, scores best on the whole validation split (accuracy; a tie goes to the
lower log-loss, then to the better-ranked candidate); the ensemble is the bag
after the round of best accuracy (the earliest on a tie: the smaller bag).
A candidate's weight is how often it is in the bag, so the ensemble has
K' <= K members, and may be the best single checkpoint alone. The report
puts the chosen ensemble's val accuracy beside that of the best trial, both
measured here on the whole validation split (a trial's own val_acc may have
used ``max_eval_batches``). The test split is read once per chosen member
(and the best trial), in the search's single test evaluation, after the
choice: the best trial's test numbers and the ensemble's come from the same pass.
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
    """Each member's accuracy on ``split``, plus the logits and labels."""
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
            "images": int(labels.numel()),
            "logits": logits, "labels": labels}


def log_loss(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-probability of the true class (``scores``: probabilities)."""
    return float(-scores.gather(1, labels[:, None]).clamp_min(1e-12).log().mean())


def greedy_selection(logits: Sequence[torch.Tensor], labels: torch.Tensor,
                     rounds: int | None = None) -> list[int]:
    """How often each candidate is in the bag chosen by greedy forward selection
    with replacement (see the module docstring); ``rounds`` defaults to 2 K.
    Reads only the validation ``logits`` and ``labels`` it is given."""
    probs = [torch.softmax(x.float(), dim=1) for x in logits]
    counts, total = [0] * len(probs), torch.zeros_like(probs[0])
    best_acc, best_counts = -1.0, counts
    for step in range(1, (rounds or 2 * len(probs)) + 1):
        scores = [(accuracy(mean, labels), -log_loss(mean, labels))
                  for mean in ((total + p) / step for p in probs)]
        pick = max(range(len(probs)), key=lambda i: (scores[i], -i))
        counts[pick] += 1
        total = total + probs[pick]
        if scores[pick][0] > best_acc:
            best_acc, best_counts = scores[pick][0], list(counts)
    return best_counts


def write_val_report(members: list[TrialRecord], folder: Path) -> tuple[dict[str, Any], str]:
    """Choose the ensemble on validation; write ``ensemble.json`` (validation
    only, with ``weights`` per candidate) and return it with a printable line."""
    val = evaluate(members, "val")
    counts = greedy_selection(val["logits"], val["labels"])
    weights = [c / sum(counts) for c in counts]
    acc = accuracy(ensemble_probs(val["logits"], weights), val["labels"])
    best = val["members"][0]
    chosen = [{**m, "weight": w} for m, w in zip(val["members"], weights) if w > 0]
    report = {"note": "validation split only: the candidates are the top trials by val_acc, the members and their "
                      "weights chosen by greedy forward selection with replacement on the whole validation split, "
                      "where every accuracy here is measured",
              "k": len(members), "candidates": val["members"], "members": chosen, "weights": weights,
              "val_images": val["images"], "ensemble_val_acc": acc, "best_member_val_acc": best["acc"],
              "best_member": best["trial_id"], "ensemble_better": acc > best["acc"]}
    (folder / ENSEMBLE_JSON).write_text(json.dumps(report, indent=2) + "\n")
    verdict = "better than" if acc > best["acc"] else "equal to" if acc == best["acc"] else "worse than"
    names = ", ".join(f"{m['trial_id']} x{w:.2f}" for m, w in zip(val["members"], weights) if w > 0)
    text = (f"ensemble chosen on validation from the top {len(members)} trials ({names}): val_acc {acc:.4f} on "
            f"{val['images']} images, {verdict} the best trial {best['trial_id']} ({best['acc']:.4f}) "
            f"-> {folder / ENSEMBLE_JSON}")
    return report, text


def on_test_split(members: list[TrialRecord], weights: Sequence[float]) -> tuple[dict[str, float], dict[str, Any]]:
    """One pass over the test split per chosen member and the best trial
    (``members[0]``): the best trial's metrics (as
    :func:`fgmodels.evaluation.evaluate` reports them) and the ensemble entry."""
    used = [i for i, w in enumerate(weights) if w > 0 or i == 0]
    test = evaluate([members[i] for i in used], "test")
    best_logits, labels = test["logits"][0], test["labels"]
    best = {"acc": accuracy(best_logits, labels),
            "loss": float(torch.nn.functional.cross_entropy(best_logits, labels)), "n": test["images"]}
    used_weights = [weights[i] for i in used]
    members_out = [{**m, "weight": w} for m, w in zip(test["members"], used_weights) if w > 0]
    entry = {"k": len(members_out), "members": members_out, "best_trial_test_acc": best["acc"],
             "test_acc": accuracy(ensemble_probs(test["logits"], used_weights), labels),
             "test_images": test["images"]}
    return best, entry
