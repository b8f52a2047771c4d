"""``clca``: any input size, cross-layer gradient flow, an explicit co-attention
reference, group-local channel attention, the test-logit rule, the weighted loss,
learning, and the search space's group choices."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml

from fgmodels.config import known_keys, resolve_config
from fgmodels.methods.clca import ChannelGroupAttention, cross_attend
from fgmodels.registry import create_method

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "clca.yaml"


def _model(**kw):
    kw.setdefault("groups", 8)
    kw.setdefault("proj_width", 16)
    return create_method("clca", num_classes=5, backbone="test_resnet", **kw)


def test_two_input_sizes_same_weights() -> None:
    model = _model().eval()
    with torch.no_grad():
        for size in (64, 96, 72):
            logits = model(torch.randn(2, 3, size, size))
            assert set(logits) == {"branch3", "branch4", "branch5", "fused"}
            for v in logits.values():
                assert v.shape == (2, 5) and torch.isfinite(v).all()
        assert model.predict(torch.randn(2, 3, 64, 80)).shape == (2, 5)  # non-square


def test_cross_attend_matches_naive_loop() -> None:
    q, k, v = torch.randn(2, 3, 5), torch.randn(2, 3, 7), torch.randn(2, 4, 7)
    out = cross_attend(q, k, v)
    ref = torch.zeros(2, 4, 5)
    for b in range(2):
        for n in range(5):
            scores = torch.tensor([sum(q[b, d, n] * k[b, d, m] for d in range(3)) / math.sqrt(3) for m in range(7)])
            w = torch.exp(scores - scores.max())
            w = w / w.sum()
            ref[b, :, n] = sum(w[m] * v[b, :, m] for m in range(7))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_each_branch_gets_gradients_from_the_other_two() -> None:
    model = _model().train()
    x = torch.randn(2, 3, 48, 48)
    for i, name in enumerate(("branch3", "branch4", "branch5")):
        model.zero_grad(set_to_none=True)
        model(x)[name].pow(2).sum().backward()
        for j in range(3):
            grad = model.proj[j][0].weight.grad
            assert grad is not None and grad.abs().sum() > 0, f"{name} gets no gradient from projection {j}"
        others = [n for n in ("branch3", "branch4", "branch5", "fused") if n != name]
        assert all(model.heads[n].weight.grad is None for n in others)
    # control: without co-attention, branch 3 is blind to the stage-4/5 projections
    model.zero_grad(set_to_none=True)
    model.coatt.forward = lambda feats: feats
    model(x)["branch3"].pow(2).sum().backward()
    assert model.proj[1][0].weight.grad is None and model.proj[2][0].weight.grad is None


def test_channel_group_attention_is_group_local() -> None:
    cga = ChannelGroupAttention(16, groups=4)
    with torch.no_grad():
        cga.sp_weight.uniform_(0.5, 1.5)  # make the spatial map input-dependent
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    out = cga(x)
    assert out.shape == x.shape
    (grad,) = torch.autograd.grad(out[:, 4:8].pow(2).sum(), x)  # group 1
    per_group = grad.abs().sum(dim=(0, 2, 3)).view(4, 4).sum(1)
    assert per_group[1] > 0 and per_group[0] == 0 and per_group[2] == 0 and per_group[3] == 0
    cga(torch.randn(2, 16, 1, 1, requires_grad=True)).sum().backward()  # 1x1 map: no NaN
    assert all(torch.isfinite(p.grad).all() for p in cga.parameters() if p.grad is not None)


@pytest.mark.parametrize("rule", ["sum", "fused"])
def test_predict_returns_configured_combination(rule) -> None:
    model = _model(test_logits=rule).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        parts = model(x)
        pred = model.predict(x)
    expected = parts["fused"] if rule == "fused" else parts["branch3"] + parts["branch4"] + parts["branch5"] + parts["fused"]
    torch.testing.assert_close(pred, expected, rtol=0, atol=1e-6)
    other = parts["branch3"] + parts["branch4"] + parts["branch5"] + parts["fused"] if rule == "fused" else parts["fused"]
    assert (pred - other).abs().max() > 1e-3


def test_loss_is_weighted_sum_of_branch_ces() -> None:
    w = {"w_branch3": 0.3, "w_branch4": 0.0, "w_branch5": 1.7, "w_fused": 0.9}
    model = _model(**w).eval()  # eval: deterministic BN, so two forwards agree
    x, y = torch.randn(3, 3, 48, 48), torch.tensor([0, 3, 4])
    out = model.training_step(x, y)
    with torch.no_grad():
        parts = model(x)
    ces = {k: F.cross_entropy(v, y) for k, v in parts.items()}
    expected = 0.3 * ces["branch3"] + 1.7 * ces["branch5"] + 0.9 * ces["fused"]
    torch.testing.assert_close(out.loss.detach(), expected)
    assert set(out.branch_losses) == {"branch3", "branch4", "branch5", "fused"}
    torch.testing.assert_close(out.branch_losses["branch4"], ces["branch4"])


def test_training_step_reduces_loss() -> None:
    model = _model().train()
    x, y = torch.randn(6, 3, 48, 48), torch.arange(6) % 5
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(5):
        out = model.training_step(x, y)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert out.logits.shape == (6, 5)
    assert losses[-1] < 0.7 * losses[0]


def test_bad_inputs_rejected() -> None:
    with pytest.raises(ValueError, match=r"G=5.*C=96.*\[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96\]"):
        _model(groups=5)


# ---- search space -------------------------------------------------------------------


def _stage5_channels(name: str) -> int:
    with torch.device("meta"):  # no weight init, fast even for resnet101
        model = timm.create_model(name, pretrained=False, features_only=True)
    return model.feature_info.channels()[-1]


def test_space_groups_divide_stage5_of_every_backbone() -> None:
    space = yaml.safe_load(SPACE.read_text())
    keys = known_keys("clca")
    p, first, smoke = space["params"], space["first"], space["smoke"]
    assert space["fixed"]["method"] == "clca"
    assert set(p) | set(space["fixed"]) <= keys
    assert set(first) == set(p) and set(smoke) <= set(p) | set(space["fixed"])
    for key, dist in p.items():
        if dist["type"] == "choice":
            assert dist["values"] and first[key] in dist["values"], key
        else:
            assert 0 <= dist["low"] < dist["high"] and dist["low"] <= first[key] <= dist["high"], key
    resolve_config({**space["fixed"], **first, **smoke})
    pairs = [(bb, g) for bb in p["backbone"]["values"] for g in p["groups"]["values"]]
    pairs.append((smoke["backbone"], smoke["groups"]))
    for bb, g in pairs:
        c5 = _stage5_channels(bb)
        assert c5 % g == 0, f"G={g} does not divide the {c5} stage-5 channels of {bb}"
    # the smoke config builds and runs
    model = create_method("clca", num_classes=3, **resolve_config({**space["fixed"], **first, **smoke}))
    assert model.predict(torch.randn(2, 3, 64, 64)).shape == (2, 3)
