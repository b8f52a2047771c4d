"""The optimiser-switch training rule (``switch: epoch | plateau``), checked on
scripted validation accuracies: where the switch happens, which optimiser and
lr follow it, which weights it restarts from, resume across it, and the
fallback without a validation split."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fgmodels import loop
from fgmodels.checkpoint import load_state
from fgmodels.config import ConfigError, resolve_config
from fgmodels.engine import Trainer, fit
from fgmodels.hooks import install_hook, remove_hook
from fgmodels.optim import replay_switch, switch_point
from tests.test_engine import tiny_cfg

ACCS = [0.1, 0.3, 0.2, 0.25, 0.2, 0.1]  # best at epoch 2; with patience 2 it has stalled after epoch 4


def _history(accs: list[float]) -> list[dict[str, Any]]:
    return [{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]


# ------------------------------------------------------------------ the rule alone
@pytest.mark.parametrize("accs,patience,expected", [
    (ACCS, 2, 4),                       # best 0.3 at 2; epochs 3, 4 without improvement
    (ACCS, 3, 5),                       # ... 3, 4, 5
    (ACCS, 5, None),                    # would be 7: past the last epoch
    ([0.2, 0.2, 0.2], 2, 3),            # a tie is no improvement
    ([0.1, 0.2, 0.3, 0.4, 0.5], 1, None),  # still improving
    ([0.1, 0.2, 0.3, 0.1, 0.5], 1, 4),  # the first stall counts, a later recovery does not undo it
])
def test_plateau_point_of_scripted_accuracies(accs, patience, expected) -> None:
    cfg = {"epochs": 6, "switch": "plateau", "switch_patience": patience, "switch_epoch": None}
    assert switch_point(cfg, _history(accs)) == expected
    if expected is not None:  # known as soon as the stalled epoch is done, and stable afterwards
        assert switch_point(cfg, _history(accs[:expected - 1])) is None
        assert switch_point(cfg, _history(accs[:expected])) == expected


def test_epoch_rule_and_the_fallback_without_validation() -> None:
    cfg = {"epochs": 6, "switch": "epoch", "switch_patience": 2, "switch_epoch": 2}
    assert switch_point(cfg, _history(ACCS)) == 2  # the history does not matter
    plateau = {**cfg, "switch": "plateau"}
    assert switch_point(plateau, _history(ACCS)) == 4
    assert switch_point(plateau, _history(ACCS), validated=False) == 2
    assert switch_point({**plateau, "switch_epoch": None}, _history(ACCS), validated=False) is None
    assert switch_point({**cfg, "switch_epoch": 6}, ()) is None  # no epoch left for the second phase


def test_replay_switch_gives_the_final_fit_the_searched_point() -> None:
    ran = [{"epoch": e, "opt_phase": int(e > 4)} for e in range(1, 7)]
    assert replay_switch({"switch": "plateau"}, ran) == {"switch_epoch": 4}
    assert replay_switch({"switch": "plateau"}, [{"epoch": 1, "opt_phase": 0}]) == {"switch_epoch": None}
    assert replay_switch({"switch": "epoch"}, ran) == {}


def test_switch_keys_are_checked() -> None:
    assert resolve_config({"switch": "plateau"})["switch_patience"] == 3
    with pytest.raises(ConfigError, match="switch"):
        resolve_config({"switch": "loss"})
    with pytest.raises(ConfigError, match="switch_patience"):
        resolve_config({"switch_patience": 0})


# ------------------------------------------------------------------ in the training loop
class _Scripted:
    """Stands in for the loop's validation: the next scripted accuracy per call."""

    def __init__(self, accs: list[float]) -> None:
        self.accs = list(accs)

    def __call__(self, model, loader, device, cfg, max_batches=None) -> dict[str, float]:
        return {"acc": self.accs.pop(0), "loss": 1.0}


class _AtEpochStart:
    """A hook that keeps the weights and the optimiser seen at the first step of every epoch."""

    keys: dict[str, Any] = {}

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.optimizer: dict[int, tuple[type, float]] = {}

    def before_step(self, trainer, images, labels) -> None:
        epoch = trainer.epochs_done + 1
        if epoch not in self.weights:
            self.weights[epoch] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            self.optimizer[epoch] = (type(trainer.optimizer), trainer.optimizer.param_groups[0]["lr"])

    def after_loss(self, trainer, loss):
        return loss


def _plateau_cfg(**over) -> dict[str, Any]:
    cfg = dict(epochs=6, opt="adam", lr=3e-3, switch="plateau", switch_patience=2, switch_epoch=None,
               opt_after_switch="sgd", lr_after_switch=0.01, max_train_batches=2)
    return tiny_cfg(**{**cfg, **over})


def _after_epoch() -> tuple[dict[int, dict[str, torch.Tensor]], Any]:
    """The weights after every epoch, read from the epoch's checkpoint file, and the callback that keeps them."""
    saved: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(metrics, ckpt_dir) -> None:
        saved[metrics["epoch"]] = load_state(ckpt_dir)["model"]

    return saved, on_epoch_end


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_plateau_switch_in_the_loop_restarts_sgd_from_the_best_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(loop, "evaluate", _Scripted(ACCS))
    seen, (saved, on_epoch_end) = _AtEpochStart(), _after_epoch()
    install_hook(seen)
    try:
        result = fit(_plateau_cfg(), tmp_path / "run", on_epoch_end=on_epoch_end, progress=False)
    finally:
        remove_hook(seen)
    assert [h["optimizer"] for h in result.history] == ["adam"] * 4 + ["sgd"] * 2
    assert [h["opt_phase"] for h in result.history] == [0, 0, 0, 0, 1, 1]
    assert [h["lr"] for h in result.history] == pytest.approx([3e-3] * 4 + [0.01] * 2)
    assert seen.optimizer[4][0] is torch.optim.Adam
    assert seen.optimizer[5][0] is torch.optim.SGD and seen.optimizer[5][1] == pytest.approx(0.01)
    # epoch 5 starts from epoch 2's weights (the best), not from epoch 4's (the last)
    assert not _same(saved[2], saved[4])
    assert _same(seen.weights[5], saved[2])
    # within a phase, training continues from the last epoch's weights
    assert _same(seen.weights[4], saved[3]) and _same(seen.weights[6], saved[5])
    assert replay_switch(result.config, result.history) == {"switch_epoch": 4}


def test_resume_across_the_plateau_switch_replays_it(tmp_path: Path, monkeypatch) -> None:
    """Cut after the stalled epoch 4: the resumed run still switches before epoch 5,
    from the best weights, and trains epochs 5 and 6 exactly as the uninterrupted run."""
    monkeypatch.setattr(loop, "evaluate", _Scripted(ACCS))
    full = fit(_plateau_cfg(), tmp_path / "full", progress=False)

    class _Stop(Exception):
        pass

    def stop_after_4(metrics, ckpt) -> None:
        if metrics["epoch"] == 4:
            raise _Stop

    monkeypatch.setattr(loop, "evaluate", _Scripted(ACCS))
    with pytest.raises(_Stop):
        fit(_plateau_cfg(), tmp_path / "cut", on_epoch_end=stop_after_4, progress=False)
    resumed = fit(_plateau_cfg(), tmp_path / "cut", resume_from=tmp_path / "cut" / "checkpoint", progress=False)
    assert [h["optimizer"] for h in resumed.history] == [h["optimizer"] for h in full.history]
    for e in (4, 5):
        assert resumed.history[e]["train_loss"] == pytest.approx(full.history[e]["train_loss"], rel=1e-5, abs=1e-6)


def test_without_validation_the_plateau_rule_switches_at_switch_epoch(tmp_path: Path, monkeypatch) -> None:
    """No validation split (a final fit): the switch comes at switch_epoch, from the current weights."""
    monkeypatch.setattr(loop, "evaluate", _Scripted(ACCS))
    trainer = Trainer(_plateau_cfg(epochs=4, switch_epoch=3), tmp_path / "run", progress=False)
    trainer.data.val = []  # what a run on train + val has
    assert not trainer.validated
    seen, (saved, on_epoch_end) = _AtEpochStart(), _after_epoch()
    install_hook(seen)
    try:
        result = trainer.fit(on_epoch_end)
    finally:
        remove_hook(seen)
    assert [h["optimizer"] for h in result.history] == ["adam"] * 3 + ["sgd"]
    assert _same(seen.weights[4], saved[3]) and not _same(saved[2], saved[3])
