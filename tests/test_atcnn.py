"""AT-CNN: bilinear pooling, signed sqrt, fusion kernels, per-image mask, training."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fgmodels.layers.bilinear import FUSIONS, BilinearHead, FusionKernels, bilinear_pool, l2_normalize, signed_sqrt
from fgmodels.methods.atcnn import ATCNN, attention_mask, channel_weights
from fgmodels.registry import create_method, get_method_class


def _tiny(**kw) -> ATCNN:
    args = dict(backbone="test_resnet", n=8, m=6, top_m=4)
    args.update(kw)
    return create_method("atcnn", num_classes=5, **args)


# -- bilinear pieces -----------------------------------------------------------
def test_bilinear_pool_matches_explicit_outer_products() -> None:
    f = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    f2 = torch.randn(3, 7, 5, 6, dtype=torch.float64)
    got = bilinear_pool(f, f2)
    assert got.shape == (3, 4 * 7)
    for b in range(3):
        ref = torch.zeros(4, 7, dtype=torch.float64)
        for i in range(5):
            for j in range(6):
                ref += torch.outer(f[b, :, i, j], f2[b, :, i, j])
        ref /= 5 * 6
        torch.testing.assert_close(got[b].double(), ref.flatten(), rtol=1e-5, atol=1e-6)


def test_bilinear_pool_rejects_mismatched_maps() -> None:
    with pytest.raises(ValueError, match="equal B, H, W"):
        bilinear_pool(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 5))


def test_signed_sqrt_values_and_finite_gradient_at_zero() -> None:
    eps = 1e-8
    x = torch.tensor([0.0, 0.0, 4.0, -9.0, 1e-20, -1e-20], requires_grad=True)
    y = signed_sqrt(x, eps)
    torch.testing.assert_close(
        y.detach(), torch.tensor([0.0, 0.0, 2.0, -3.0, 1e-4, -1e-4]), rtol=1e-4, atol=1e-6
    )
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(g).all()
    assert g[0] == 0 and g[1] == 0
    assert g.abs().max() <= 1 / (2 * eps**0.5) * 1.01  # slope bounded by eps
    torch.testing.assert_close(g[2], torch.tensor(0.25), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="eps"):
        signed_sqrt(x, 0.0)


def test_l2_normalize_unit_rows_and_zero_row() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


@pytest.mark.parametrize("hw", [(5, 7), (1, 1), (2, 3)])
def test_all_kernel_pairs_keep_size_and_feature_dim(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 12, *hw)
    dims = set()
    for fusion in FUSIONS:
        f, f2 = FusionKernels(12, 5, 3, fusion)(x)
        assert f.shape == (2, 5, *hw) and f2.shape == (2, 3, *hw), fusion
        head = BilinearHead(12, num_classes=4, n=5, m=3, fusion=fusion)
        c = head.features(x)
        dims.add(c.shape)
        torch.testing.assert_close(c.norm(dim=1), torch.ones(2))
        assert head(x).shape == (2, 4)
    assert dims == {(2, 15)}


def test_fusion_kernel_shapes_differ_as_specified() -> None:
    k = FusionKernels(4, 2, 3, "1x1_1x3_3x1")
    assert k.conv1.kernel_size == (1, 1)
    assert [c.kernel_size for c in k.conv2] == [(1, 3), (3, 1)]
    assert [c.padding for c in k.conv2] == [(0, 1), (1, 0)]
    assert FusionKernels(4, 2, 3, "1x1_3x3").conv2.kernel_size == (3, 3)
    with pytest.raises(ValueError, match="1x1_1x3_3x1"):
        FusionKernels(4, 2, 3, "3x3_3x3")


# -- attention mask ------------------------------------------------------------
def test_channel_weights_follow_eq8() -> None:
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = 4.0
    x[0, 1] = 1.0
    x[0, 2] = 9.0
    w = channel_weights(x)
    torch.testing.assert_close(w, torch.tensor([[4.0, 1.0, 9.0]]) / (2 + 1 + 3))


def test_mask_selects_top_channels_per_image_and_normalises() -> None:
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0, 0, 0] = 10.0  # image 0: channel 0 strongest, peak top-left
    x[0, 1, 3, 3] = 1.0
    x[1, 2, 1, 2] = 50.0  # image 1: channel 2 strongest, 5x image 0's peak
    x[1, 1, 2, 2] = 5.0
    mask = attention_mask(x, top_m=1)
    assert mask.shape == (2, 1, 4, 4)
    expect0 = torch.zeros(4, 4)
    expect0[0, 0] = 1.0
    expect1 = torch.zeros(4, 4)
    expect1[1, 2] = 1.0
    torch.testing.assert_close(mask[0, 0], expect0)
    torch.testing.assert_close(mask[1, 0], expect1)
    mask2 = attention_mask(x, top_m=2)  # plain sum of the two top maps, max 1
    torch.testing.assert_close(mask2[1, 0, 2, 2], torch.tensor(0.1))
    up = attention_mask(x, top_m=2, out_size=(16, 16))
    assert up.shape == (2, 1, 16, 16)
    torch.testing.assert_close(up.amax(dim=(1, 2, 3)), torch.ones(2))
    assert up.min() >= 0 and not up.requires_grad


def test_mask_of_all_zero_features_is_all_ones() -> None:
    mask = attention_mask(torch.zeros(2, 4, 3, 3), top_m=2, out_size=(8, 8))
    assert torch.equal(mask, torch.ones(2, 1, 8, 8))


def test_mask_rejects_top_m_above_channels() -> None:
    with pytest.raises(ValueError, match="top_m"):
        attention_mask(torch.rand(1, 4, 2, 2), top_m=5)
    with pytest.raises(ValueError, match="top_m"):
        _tiny(top_m=97)  # test_resnet has 96 channels


def test_model_mask_is_per_image() -> None:
    model = _tiny().eval()
    images = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        _, m_a = model.attention_images(images, model.features(images))
        changed = images.clone()
        changed[1] = torch.randn(3, 96, 96) * 3
        _, m_b = model.attention_images(changed, model.features(changed))
    assert m_a.shape == (3, 1, 96, 96)
    torch.testing.assert_close(m_a[0], m_b[0])
    torch.testing.assert_close(m_a[2], m_b[2])
    assert not torch.allclose(m_a[1], m_b[1])
    for m in (m_a, m_b):
        assert m.min() >= 0
        torch.testing.assert_close(m.amax(dim=(1, 2, 3)), torch.ones(3))


# -- method ---------------------------------------------------------------------
def test_registered_with_paper_defaults() -> None:
    cls = get_method_class("atcnn")
    assert cls is ATCNN and cls.backbone_passes == 2
    assert cls.hparams["fusion"] == "1x1_1x3_3x1"
    assert {"fusion", "n", "m", "top_m", "eps", "use_attention", "test_logits"} <= set(cls.hparams)


def test_step_losses_and_test_rules_match_explicit_branches() -> None:
    model = _tiny().eval()  # eval: BN fixed, so repeated passes agree
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        out = model.training_step(images, labels)
        lm, x = model.branch(images)
        att, mask = model.attention_images(images, x)
        la, _ = model.branch(att)
        torch.testing.assert_close(att, images * mask)
        torch.testing.assert_close(out.branch_losses["main"], F.cross_entropy(lm, labels))
        torch.testing.assert_close(out.branch_losses["att"], F.cross_entropy(la, labels))
        torch.testing.assert_close(out.loss, F.cross_entropy(lm, labels) + F.cross_entropy(la, labels))
        torch.testing.assert_close(model.predict(images), lm + la)
        model.hp.test_logits = "main"
        torch.testing.assert_close(model.predict(images), lm)
        model.hp.test_logits = "att"
        torch.testing.assert_close(model.predict(images), la)
    solo = _tiny(use_attention=False)
    out = solo.training_step(images, labels)
    assert set(out.branch_losses) == {"main"} and solo.backbone_passes == 1


def test_gradients_reach_backbone_through_both_branches() -> None:
    model = _tiny().train()
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    lm, x = model.branch(images)
    att, mask = model.attention_images(images, x)
    assert not mask.requires_grad and not att.requires_grad
    la, _ = model.branch(att)
    for loss in (F.cross_entropy(lm, labels), F.cross_entropy(la, labels)):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        norm = sum(g.abs().sum() for g in grads if g is not None)
        assert torch.isfinite(norm) and norm > 0
    stem = params[0]  # first conv of the stem: the deepest point of the graph
    out = model.training_step(images, labels)
    out.loss.backward()
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_training_steps_reduce_loss_on_fixed_batch() -> None:
    model = _tiny().train()
    images, labels = torch.randn(8, 3, 64, 64), torch.arange(8) % 5
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        out = model.training_step(images, labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0], losses


# -- with the shared training loop ------------------------------------------------
def test_fit_switches_adam_to_sgd_and_loss_keeps_falling(tmp_path) -> None:
    """The paper's Adam-then-SGD schedule, run by the shared loop on synthetic data.

    resize == crop and no colour jitter: only flips vary between epochs, so the
    per-epoch train loss on the 16 memorised images is a clean trend.
    """
    from fgmodels.checkpoint import load_state
    from fgmodels.engine import fit

    cfg = {
        "method": "atcnn", "data": "synthetic", "backbone": "test_resnet", "n": 8, "m": 8, "top_m": 4,
        "synthetic_classes": 4, "synthetic_per_class": 10, "data_root": str(tmp_path / "data"),
        "img_size": 64, "resize_size": 64, "color_jitter": 0.0,
        "epochs": 5, "switch_epoch": 2, "opt": "adam", "lr": 1e-2,
        "opt_after_switch": "sgd", "lr_after_switch": 0.01, "sched": "constant", "weight_decay": 0.0,
        "batch_size": 8, "max_train_batches": 2, "max_eval_batches": 1, "seed": 0, "device": "cpu",
    }
    seen: list[dict] = []

    def record(metrics: dict, ckpt) -> None:
        state = load_state(ckpt)["optimizer"]
        slots = {k for s in state["state"].values() for k in s}
        steps = {int(s["step"]) for s in state["state"].values() if "step" in s}
        seen.append({**metrics, "slots": slots, "steps": steps, "group": state["param_groups"][0]})

    result = fit(cfg, tmp_path / "run", on_epoch_end=record, progress=False)
    assert [m["optimizer"] for m in seen] == ["adam", "adam", "sgd", "sgd", "sgd"]
    assert all({"exp_avg", "exp_avg_sq"} <= m["slots"] and "momentum_buffer" not in m["slots"] for m in seen[:2])
    assert seen[1]["steps"] == {4}  # 2 epochs x 2 batches, one Adam state throughout phase 0
    for m in seen[2:]:  # a fresh SGD: no Adam moments carried over
        assert m["slots"] == {"momentum_buffer"}
        assert m["group"]["momentum"] == pytest.approx(0.9) and "betas" not in m["group"]
        assert m["lr"] == pytest.approx(0.01)
    assert seen[0]["lr"] == pytest.approx(1e-2)
    losses = [m["train_loss"] for m in result.history]
    assert losses[1] < losses[0], losses  # Adam phase
    assert losses[2] < losses[1], losses  # across the switch: SGD starts from the Adam weights
    assert losses[4] < losses[2], losses  # SGD phase keeps it falling
    assert losses[4] < losses[0] - 0.1, losses
    for m in result.history:
        assert m["train_loss"] == pytest.approx(m["train_loss_main"] + m["train_loss_att"], rel=1e-4)


def test_space_file_is_valid_with_paper_first_point_and_runnable_smoke() -> None:
    spaces = pytest.importorskip("search.spaces")
    space = spaces.load_space("atcnn")
    keys = {"backbone", "fusion", "n", "m", "top_m", "lr", "switch", "switch_patience", "switch_epoch", "lr_after_switch",
            "weight_decay", "batch_size"}
    assert set(space.params) == keys
    assert space.fixed["opt"] == "adam" and space.fixed["opt_after_switch"] == "sgd"
    (first,) = space.first
    assert first["backbone"] == "inception_v3" and first["fusion"] == "1x1_1x3_3x1"
    assert first["batch_size"] == 16 and first["weight_decay"] == pytest.approx(1e-4) and first["lr"] == pytest.approx(1e-3)
    assert first["switch"] == "plateau"  # the paper: Adam until the accuracy stops improving, then SGD
    assert set(space.params["switch"].values) == {"plateau", "epoch"}
    assert space.params["switch_epoch"].high < space.fixed["epochs"]  # the SGD phase always runs
    (smoke,) = space.smoke().first
    assert smoke["switch"] == "epoch" and 1 <= smoke["switch_epoch"] < smoke["epochs"]
    model = create_method("atcnn", num_classes=3, **smoke)  # top_m fits the tiny backbone
    assert model.training_step(torch.randn(2, 3, 64, 64), torch.tensor([0, 2])).loss.isfinite()
