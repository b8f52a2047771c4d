"""Tests for the gholm method, its attention ops and the SupCon loss.

Independent references: a hooked plain forward + backward for Grad-CAM,
scipy.ndimage.label for connected components, explicit per-pixel loops for the
drop mask, and an O(B^2) Python loop for SupCon.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from fgmodels.layers import heatmap as ops
from fgmodels.layers.supcon import supcon_loss
from fgmodels.methods.gholm import Gholm
from fgmodels.registry import create_method, method_hparams


def _method(backbone: str = "test_convnext", num_classes: int = 4, **kw) -> Gholm:
    return create_method("gholm", num_classes, backbone=backbone, **kw)


# ---------------------------------------------------------------- registry / config
def test_registered_with_paper_defaults() -> None:
    assert method_hparams("gholm") == {
        "mu": 1.7, "theta_low": 1.0, "theta_high": 2.0, "gamma": 0.2, "tau": 0.7,
        "lambda_con": 1.0, "use_crop": True, "use_drop": True, "use_supcon": True,
        "test_logits": "raw+crop", "supcon_features": "logits", "cam_class": "pred",
    }
    assert Gholm.default_backbone == "convnext_small" and Gholm.backbone_passes == 3
    from fgmodels.config import resolve_config

    cfg = resolve_config({"method": "gholm", "mu": 1.9})
    assert cfg["backbone"] == "convnext_small" and cfg["mu"] == 1.9


# ---------------------------------------------------------------- Grad-CAM
def _hooked_reference_cam(model: Gholm, layer: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain full forward + backward on a copy, A captured by a forward hook."""
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        out.retain_grad()
        store["A"] = out

    handle = layer.register_forward_hook(hook)
    logits = model.fc(model.dropout(model.backbone(x)))
    handle.remove()
    logits[torch.arange(len(target)), target].sum().backward()
    a, g = store["A"], store["A"].grad
    w = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((w * a).sum(dim=1)).detach()


@pytest.mark.parametrize("backbone,layer_name,train", [("test_convnext", "stages", True), ("test_resnet", "layer4", False)])
def test_grad_cam_equals_hooked_backward_and_leaves_param_grads(backbone: str, layer_name: str, train: bool) -> None:
    m = _method(backbone)
    m.train(train)
    x = torch.randn(3, 3, 96, 96)
    y = torch.tensor([0, 3, 1])
    ref_model = copy.deepcopy(m)
    ref = _hooked_reference_cam(ref_model, getattr(ref_model.backbone, layer_name), x, y)
    assert ref.shape == (3, 3, 3) and ref.abs().sum() > 0

    # training path: A stays in the graph; parameter .grad must remain None
    _, logits, cam = m._raw_with_cam(x, y)
    assert logits.requires_grad
    torch.testing.assert_close(cam, ref, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in m.parameters())

    # pre-existing gradients stay exactly as they were
    for p in m.parameters():
        p.grad = torch.full_like(p, 0.5)
    _, _, cam2 = m._raw_with_cam(x, y)
    torch.testing.assert_close(cam2, ref, rtol=1e-4, atol=1e-6)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in m.parameters())

    # evaluation path (no_grad / inference_mode): same cam, argmax target by default
    heat, _ = m.localize(x, y)
    torch.testing.assert_close(heat, ops.upsample_heat(ref, (96, 96)), rtol=1e-4, atol=1e-6)
    with torch.inference_mode():
        _, logits_eval, cam_eval = m._raw_with_cam(x, None)
    ref_model2 = copy.deepcopy(m)
    ref_argmax = _hooked_reference_cam(ref_model2, getattr(ref_model2.backbone, layer_name), x, logits_eval.argmax(1))
    torch.testing.assert_close(cam_eval, ref_argmax, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cam_class", ["label", "pred"])
def test_training_step_takes_the_cam_of_the_chosen_class(monkeypatch, cam_class: str) -> None:
    """The crop and drop views of a training step come from the Grad-CAM of the
    LABEL (``cam_class: label``) or of the PREDICTED class (``pred``, the paper):
    the cam the step hands on is recorded and compared with independent hooked
    Grad-CAMs for the label and for the predicted class (labels chosen != argmax)."""
    m = _method(cam_class=cam_class)
    m.train()
    x, _ = _batch(4, 96)
    with torch.no_grad():
        pred = m.fc(m.backbone(x)).argmax(dim=1)
    y = (pred + 1) % 4  # every label differs from the prediction
    seen: list[torch.Tensor] = []
    real = ops.upsample_heat

    def recording(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        seen.append(cam.detach().clone())
        return real(cam, size)

    monkeypatch.setattr(ops, "upsample_heat", recording)
    m.training_step(x, y)
    assert len(seen) == 1
    ref_model = copy.deepcopy(m)
    for_label = _hooked_reference_cam(ref_model, ref_model.backbone.stages, x, y)
    for_argmax = _hooked_reference_cam(ref_model, ref_model.backbone.stages, x, pred)
    assert not torch.allclose(for_label, for_argmax, rtol=1e-3, atol=1e-5)  # the test can tell them apart
    torch.testing.assert_close(seen[0], for_label if cam_class == "label" else for_argmax, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- connected components / boxes
def _blob_heat(h: int = 48, w: int = 64, big_peak: float = 3.0, small_peak: float = 10.0) -> torch.Tensor:
    heat = torch.zeros(1, h, w)
    heat[0, 2:5, 3:6] = small_peak  # 3x3 small blob (top left)
    heat[0, 30:40, 40:52] = big_peak  # 10x12 large blob (bottom right)
    return heat


@pytest.mark.parametrize("big_peak,small_peak", [(3.0, 10.0), (10.0, 3.0)])
def test_crop_box_is_largest_component_not_highest_peak(big_peak: float, small_peak: float) -> None:
    heat = _blob_heat(big_peak=big_peak, small_peak=small_peak)
    box = ops.crop_boxes_from_heat(heat, mu=1.7)
    assert box.tolist() == [[40.0, 30.0, 52.0, 40.0]]


def test_diagonal_touch_is_connected_only_with_8_connectivity() -> None:
    mask = torch.zeros(1, 10, 12, dtype=torch.bool)
    mask[0, 1:4, 1:4] = True  # 9 px
    mask[0, 4:6, 4:6] = True  # 4 px touching diagonally
    mask[0, 7:9, 0:5] = True  # 10 px, separate
    assert ops.mask_to_box(ops.largest_component(mask, 8)).tolist() == [[1.0, 1.0, 6.0, 6.0]]
    assert ops.mask_to_box(ops.largest_component(mask, 4)).tolist() == [[0.0, 7.0, 5.0, 9.0]]


def test_empty_or_flat_heat_gives_whole_image() -> None:
    heat = torch.zeros(2, 40, 56)
    heat[1] = 5.0  # constant: nothing exceeds mu * mean for mu > 1
    boxes = ops.crop_boxes_from_heat(heat, mu=1.7)
    assert boxes.tolist() == [[0.0, 0.0, 56.0, 40.0]] * 2
    img = torch.randn(2, 3, 40, 56)
    torch.testing.assert_close(ops.crop_and_resize(img, boxes), img, rtol=0, atol=1e-4)


def _random_masks(b: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(b, 1, h // 4 + 1, w // 4 + 1, generator=g)
    smooth = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return smooth + 0.25 * torch.rand(b, h, w, generator=g)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_components_match_scipy_label(connectivity: int) -> None:
    heat = _random_masks(6, 40, 52, seed=connectivity)
    mask = ops.threshold_mask(heat, 1.15)
    labels = ops.connected_components(mask, connectivity)
    largest = ops.largest_component(mask, connectivity)
    boxes = ops.mask_to_box(largest)
    structure = np.ones((3, 3)) if connectivity == 8 else None
    for i in range(mask.shape[0]):
        ref, n = ndimage.label(mask[i].numpy(), structure=structure)
        assert n >= 2  # the test needs several regions to mean anything
        ours = labels[i].numpy()
        assert ((ours >= 0) == (ref > 0)).all()
        # same partition: a bijection between our labels and scipy's
        pairs = {(a, r) for a, r in zip(ours[ref > 0].ravel(), ref[ref > 0].ravel())}
        assert len(pairs) == n == len({a for a, _ in pairs})
        sizes = np.bincount(ref.ravel())[1:]
        chosen = largest[i].numpy()
        chosen_ids = set(np.unique(ref[chosen]))
        assert len(chosen_ids) == 1 and sizes[chosen_ids.pop() - 1] == sizes.max()
        ys, xs = np.nonzero(chosen)
        assert boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_random_heat_boxes_stay_inside_image() -> None:
    heat = _random_masks(16, 33, 47, seed=3) ** 3
    heat[::4] = 0.0
    boxes = ops.crop_boxes_from_heat(heat, mu=1.7)
    x0, y0, x1, y1 = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 47).all() and (y1 <= 33).all()
    assert (x1 > x0).all() and (y1 > y0).all()


def test_crop_and_resize_takes_the_right_pixels() -> None:
    img = torch.randn(2, 3, 48, 64)
    boxes = torch.tensor([[8.0, 4.0, 40.0, 36.0], [30.0, 10.0, 62.0, 42.0]])
    out = ops.crop_and_resize(img, boxes, size=(32, 32))  # box size == output size: exact slice
    torch.testing.assert_close(out[0], img[0, :, 4:36, 8:40], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[1], img[1, :, 10:42, 30:62], rtol=0, atol=1e-5)
    assert ops.crop_and_resize(img, boxes).shape == img.shape


# ---------------------------------------------------------------- drop mask
def test_drop_erases_exactly_pixels_over_threshold() -> None:
    b, h, w = 3, 12, 14
    heat = torch.rand(b, h, w) ** 2
    mask = ops.drop_mask(heat, 1.0, 2.0, generator=torch.Generator().manual_seed(7))
    u = torch.rand(b, generator=torch.Generator().manual_seed(7)).tolist()
    images = torch.randn(b, 3, h, w)
    dropped = ops.apply_drop(images, mask)
    for i in range(b):
        theta = 1.0 + (2.0 - 1.0) * u[i]
        mean = sum(float(heat[i, y, x]) for y in range(h) for x in range(w)) / (h * w)
        for y in range(h):
            for x in range(w):
                over = float(heat[i, y, x]) > theta * mean
                assert bool(mask[i, y, x]) == over
                expect = torch.zeros(3) if over else images[i, :, y, x]
                assert torch.equal(dropped[i, :, y, x], expect)
    assert 0 < mask.sum() < mask.numel()


# ---------------------------------------------------------------- SupCon
def _supcon_reference(feats: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    """Khosla et al. with base temperature = tau, written as explicit loops (float64)."""
    b, v, _ = feats.shape
    z = F.normalize(feats.double(), dim=2)
    items = [(z[i, k], int(labels[i])) for k in range(v) for i in range(b)]
    total, anchors = 0.0, 0
    for a, (za, la) in enumerate(items):
        denom = sum(math.exp(float(za @ zo) / tau) for o, (zo, _) in enumerate(items) if o != a)
        pos = [math.log(math.exp(float(za @ zp) / tau) / denom) for p, (zp, lp) in enumerate(items) if p != a and lp == la]
        if pos:
            total += -sum(pos) / len(pos)
            anchors += 1
    return total / anchors if anchors else 0.0


@pytest.mark.parametrize("tau", [0.7, 0.1])
def test_supcon_equals_loop_reference_without_rescaling(tau: float) -> None:
    feats = torch.randn(6, 2, 5)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    ours = supcon_loss(feats, labels, temperature=tau)
    assert ours.item() == pytest.approx(_supcon_reference(feats, labels, tau), rel=1e-5)
    # the reference code's 0.07 base temperature would scale the loss by tau / 0.07
    scaled = supcon_loss(feats, labels, temperature=tau, base_temperature=0.07)
    assert scaled.item() == pytest.approx(ours.item() * tau / 0.07, rel=1e-5)


def test_supcon_finite_without_shared_labels_and_without_positives() -> None:
    feats = torch.randn(5, 2, 8, requires_grad=True)
    labels = torch.arange(5)  # only the other view is a positive
    loss = supcon_loss(feats, labels, temperature=0.7)
    assert loss.item() == pytest.approx(_supcon_reference(feats.detach(), labels, 0.7), rel=1e-5)
    loss.backward()
    assert torch.isfinite(feats.grad).all()
    # one view: no anchor has a positive -> exact zero, finite (zero) gradient
    single = torch.randn(4, 1, 8, requires_grad=True)
    loss1 = supcon_loss(single, torch.arange(4), temperature=0.7)
    loss1.backward()
    assert loss1.item() == 0.0 and torch.equal(single.grad, torch.zeros_like(single))
    # one view, some anchors with positives: those without are left out of the mean
    mixed = torch.randn(4, 1, 8)
    lab = torch.tensor([0, 0, 1, 2])
    assert supcon_loss(mixed, lab, 0.7).item() == pytest.approx(_supcon_reference(mixed, lab, 0.7), rel=1e-5)
    # near-identical features at a tiny temperature: max subtraction keeps it finite
    same = torch.ones(4, 2, 8, requires_grad=True)
    sl = supcon_loss(same, torch.tensor([0, 1, 0, 1]), temperature=0.001)
    sl.backward()
    assert torch.isfinite(sl) and torch.isfinite(same.grad).all()


# ---------------------------------------------------------------- method: training
@pytest.mark.parametrize("features", ["logits", "pooled"])
def test_supcon_branch_contrasts_raw_with_crop_features(features: str) -> None:
    """The SupCon loss of a step equals an independent SupCon on [raw, crop]
    features, the crop cut from the step's own boxes (feeding raw twice fails);
    the features are the classifier's output (``logits``, the paper) or the pooled
    backbone features (``pooled``), and the two readings give different losses."""
    m = _method(supcon_features=features)
    m.eval()  # no randomness between the step's forwards and the reference ones
    x, y = _batch(6, 64)
    out = m.training_step(x, y)
    boxes = out.extras["crop_boxes"]
    whole = torch.tensor([0.0, 0.0, 64.0, 64.0])
    assert (boxes != whole).any(dim=1).any(), "every crop is the whole image: raw and crop would coincide"
    with torch.no_grad():
        pooled = {"raw": m.backbone(x), "crop": m.backbone(ops.crop_and_resize(x, boxes))}  # timm num_classes=0
        z = {k: (v @ m.fc.weight.T + m.fc.bias if features == "logits" else v) for k, v in pooled.items()}
        other = {k: (v if features == "logits" else v @ m.fc.weight.T + m.fc.bias) for k, v in pooled.items()}
    ref = _supcon_reference(torch.stack([z["raw"], z["crop"]], dim=1), y, 0.7)
    raw_twice = _supcon_reference(torch.stack([z["raw"], z["raw"]], dim=1), y, 0.7)
    other_reading = _supcon_reference(torch.stack([other["raw"], other["crop"]], dim=1), y, 0.7)
    assert abs(ref - raw_twice) > 1e-3  # the two inputs give different losses
    assert abs(ref - other_reading) > 1e-3  # logits and pooled features can be told apart
    assert out.branch_losses["supcon"].item() == pytest.approx(ref, rel=1e-4)


def _batch(b: int = 8, size: int = 96, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, size, size, generator=g), torch.arange(b) % classes


def test_training_step_branches_gradients_and_loss_decrease() -> None:
    m = _method()
    m.train()
    x, y = _batch(6, 64)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for step in range(5):
        out = m.training_step(x, y)
        assert set(out.branch_losses) == {"raw", "crop", "drop", "supcon"}
        assert all(torch.isfinite(v) and not v.requires_grad for v in out.branch_losses.values())
        expect = sum(out.branch_losses[k] for k in ("raw", "crop")) + 0.2 * out.branch_losses["drop"] + out.branch_losses["supcon"]
        assert out.loss.item() == pytest.approx(expect.item(), rel=1e-5)
        boxes = out.extras["crop_boxes"]
        assert boxes.shape == (6, 4) and not boxes.requires_grad
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            stem = m.backbone.stem[0].weight.grad
            assert stem is not None and stem.abs().sum() > 0
            assert m.fc.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize(
    "switches,keys",
    [
        ({"use_crop": False}, {"raw", "drop"}),
        ({"use_drop": False}, {"raw", "crop", "supcon"}),
        ({"use_supcon": False}, {"raw", "crop", "drop"}),
        ({"use_crop": False, "use_drop": False, "use_supcon": False}, {"raw"}),
    ],
)
def test_ablation_switches_remove_branches(switches: dict, keys: set) -> None:
    with pytest.warns(UserWarning) if not switches.get("use_crop", True) else _no_warning():
        m = _method(**switches)
    x, y = _batch(4, 64)
    out = m.training_step(x, y)
    assert set(out.branch_losses) == keys
    assert ("crop_boxes" in out.extras) == ("crop" in keys)
    if keys == {"raw"}:
        assert out.loss.item() == pytest.approx(F.cross_entropy(out.logits, y).item(), rel=1e-6)
    if not switches.get("use_crop", True):
        m.eval()
        with torch.no_grad():
            torch.testing.assert_close(m.predict(x), m._branch(x)[1])


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_test_logit_modes_match_explicit_crop_pipeline() -> None:
    m = _method()
    m.eval()
    x, _ = _batch(4, 64)
    with torch.no_grad():
        raw = m._branch(x)[1]
        _, boxes = m.localize(x)  # argmax-class cam
        crop = m._branch(ops.crop_and_resize(x, boxes))[1]
        preds = {}
        for mode in ("raw+crop", "raw", "crop"):
            m.hp.test_logits = mode
            preds[mode] = m.predict(x)
    torch.testing.assert_close(preds["raw"], raw)
    torch.testing.assert_close(preds["crop"], crop)
    torch.testing.assert_close(preds["raw+crop"], raw + crop)
    with torch.inference_mode():
        m.hp.test_logits = "raw+crop"
        torch.testing.assert_close(m.predict(x), raw + crop)


def test_visualize_returns_unit_range_images() -> None:
    m = _method()
    x, y = _batch(2, 64)
    vis = m.visualize(x, y)
    assert set(vis) == {"crop_box", "heat", "drop", "crop"}
    for img in vis.values():
        assert img.shape == (2, 3, 64, 64) and img.min() >= 0 and img.max() <= 1
    assert all(p.grad is None for p in m.parameters())


# ---------------------------------------------------------------- shared loop + synthetic data
def _engine_and_data():
    try:
        from fgmodels import engine
        from fgmodels.data import box_after_eval_transform, build_datasets  # noqa: F401
    except ImportError as err:  # pragma: no cover - only while the shared modules are missing
        pytest.skip(f"shared training loop / synthetic data not available yet: {err}")
    return engine


def _gholm_cfg(**over) -> dict:
    cfg = {
        "method": "gholm", "backbone": "test_convnext", "data": "synthetic", "device": "cpu",
        "synthetic_classes": 4, "synthetic_per_class": 60, "epochs": 1, "batch_size": 8,
        "opt": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "sched": "constant", "seed": 0,
        "amp": "off",
    }
    cfg.update(over)
    return cfg


def _objective(model: Gholm, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The training loss on a fixed batch with a fixed drop-threshold draw."""
    torch.manual_seed(123)
    with torch.no_grad():
        return model.training_step(images, labels).loss.item()


def test_one_epoch_in_shared_loop_reduces_training_loss(tmp_path) -> None:
    engine = _engine_and_data()
    trainer = engine.Trainer(_gholm_cfg(data_root=str(tmp_path / "data")), tmp_path / "run", progress=False)
    train = trainer.data.train
    torch.manual_seed(5)  # same augmentation draw for both measurements
    idx = list(range(0, len(train), max(1, len(train) // 24)))[:24]
    images = torch.stack([train[i][0] for i in idx])
    labels = torch.tensor([train.samples[i].label for i in idx])
    trainer.model.train()
    before = _objective(trainer.model, images, labels)
    result = trainer.fit()
    after = _objective(trainer.model, images, labels)
    hist = result.history[0]
    assert {"train_loss_raw", "train_loss_crop", "train_loss_drop", "train_loss_supcon"} <= set(hist)
    assert math.isfinite(hist["train_loss"]) and 0.0 <= hist["val_acc"] <= 1.0
    print(f"gholm one epoch: fixed-batch training loss {before:.4f} -> {after:.4f}")
    assert after < before - 0.05, (before, after)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two [N, 4] x0, y0, x1, y1 box arrays."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _random_boxes_iou(boxes: np.ndarray, gt: np.ndarray, size: int, draws: int = 50, seed: int = 0) -> float:
    """Mean IoU of boxes of the same sizes placed uniformly at random inside the image."""
    rng = np.random.default_rng(seed)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    vals = []
    for _ in range(draws):
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        vals.append(_iou(np.stack([x0, y0, x0 + w, y0 + h], 1), gt).mean())
    return float(np.mean(vals))


@pytest.mark.slow
def test_crop_boxes_localise_object_and_part_after_short_training(tmp_path) -> None:
    """~1-2 CPU minutes: 4 epochs (60 steps) on 4 synthetic classes at 96 px (3x3 cam grid)."""
    engine = _engine_and_data()
    from PIL import Image

    from fgmodels.data import box_after_eval_transform

    cfg = _gholm_cfg(
        data_root=str(tmp_path / "data"), backbone="test_resnet", synthetic_per_class=150,
        epochs=4, img_size=96, resize_size=108,
    )
    trainer = engine.Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    model = trainer.model.eval()
    test = trainer.data.test  # held-out images with the eval transform (not used for any choice)
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor(test.targets)
    _, boxes = model.localize(images, labels)  # the label-class cam that drives the training crops
    boxes = boxes.numpy()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
    report = {}
    for key in ("bbox", "part_box"):
        gt = []
        for s in test.samples:
            with Image.open(s.path) as im:
                x, y, w, h = box_after_eval_transform(getattr(s, key), im.size, 96, 108)
            gt.append([x, y, x + w, y + h])
        gt = np.array(gt)
        report[key] = (float(_iou(boxes, gt).mean()), _random_boxes_iou(boxes, gt, 96))
    print("gholm crop-box mean IoU (crop, random same-size):", report)
    assert report["bbox"][0] > report["bbox"][1] + 0.02, report
    assert report["part_box"][0] > 1.5 * report["part_box"][1], report


def test_space_first_point_is_the_papers_reading_of_the_variant_knobs() -> None:
    """The paper point: SupCon on the classifier's output and Grad-CAM of the
    predicted class; both readings stay searchable."""
    from search.spaces import load_space

    space = load_space("gholm")
    assert space.first[0]["supcon_features"] == "logits" and space.first[0]["cam_class"] == "pred"
    assert set(space.params["supcon_features"].values) == {"logits", "pooled"}
    assert set(space.params["cam_class"].values) == {"pred", "label"}
