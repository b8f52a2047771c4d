"""LGAM module and ``lgam`` method: shapes, identity at init, an explicit reference,
the ladder's dependency structure, group validation, the paper's parameter
overhead, batch size 1, learning, and the search space's group choices."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
import yaml

from fgmodels.backbones import create_backbone
from fgmodels.config import known_keys, resolve_config
from fgmodels.methods.lgam import LGAM, attach_lgam, parse_stages, resnet_stage_channels
from fgmodels.registry import create_method

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "lgam.yaml"


def _randomise_bn(module: nn.Module) -> None:
    """Non-trivial running stats and affine params, so eval-mode BN is not a no-op."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def naive_lgam(m: LGAM, a: torch.Tensor) -> torch.Tensor:
    """Eq. (1)-(7) written out with explicit loops (eval-mode BN), scale applied."""
    cg = m.channels // m.groups
    ys = []
    for k in range(m.groups):
        x = a[:, k * cg:(k + 1) * cg]
        if k:
            x = x + ys[-1]
        f = m.group_att[k]
        s = torch.stack([x[:, c].mean(dim=(1, 2)) for c in range(cg)], dim=1)  # GAP
        hid = torch.clamp(s @ f.fc1.weight.T + f.fc1.bias, min=0)
        z = hid @ f.fc2.weight.T + f.fc2.bias
        z = (z - f.bn.running_mean) / torch.sqrt(f.bn.running_var + f.bn.eps) * f.bn.weight + f.bn.bias
        w = 1 / (1 + torch.exp(-torch.clamp(z, min=0)))
        ys.append(x * w[:, :, None, None] + x)
    a_prime = torch.cat(ys, 1)
    pooled = sum(a_prime[:, c] for c in range(m.channels))
    if m.spatial_pool == "mean":
        pooled = pooled / m.channels
    mask = 1 / (1 + torch.exp(-torch.clamp(pooled, min=0)))
    return a + m.scale * a_prime * mask[:, None]


@pytest.mark.parametrize("shape,groups", [((2, 16, 5, 7), 4), ((3, 24, 4, 4), 3), ((2, 8, 1, 1), 1)])
def test_output_shape_equals_input(shape, groups) -> None:
    m = LGAM(shape[1], groups=groups, reduction=2, init_scale=1.0)
    a = torch.randn(shape)
    assert m(a).shape == a.shape


@pytest.mark.parametrize("spatial_pool", ["sum", "mean"])
def test_matches_explicit_reference(spatial_pool) -> None:
    m = LGAM(12, groups=3, reduction=2, spatial_pool=spatial_pool, init_scale=0.7)
    _randomise_bn(m)
    m.eval()
    a = torch.randn(2, 12, 5, 6) * 0.3
    torch.testing.assert_close(m(a), naive_lgam(m, a), rtol=1e-5, atol=1e-5)


def test_identity_at_init_on_resnet_stage() -> None:
    plain = create_backbone("test_resnet").eval()
    wrapped = copy.deepcopy(plain)
    lgams = attach_lgam(wrapped, (3, 4), groups=4, reduction=8)
    _randomise_bn(nn.ModuleList(lgams.values()))
    wrapped.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        h = plain.layer2(plain.layer1(plain.maxpool(plain.act1(plain.bn1(plain.conv1(x))))))
        diff_stage = (wrapped.layer3(h) - plain.layer3(h)).abs().max().item()
        diff_net = (wrapped(x) - plain(x)).abs().max().item()
        ref_scale = plain.layer3(h).abs().max().item()
        # control: the literal eq. (7) (scale 1) changes the stage a lot
        lgams[3].scale.fill_(1.0)
        diff_literal = (wrapped.layer3(h) - plain.layer3(h)).abs().max().item()
    assert diff_stage < 1e-6 and diff_net < 1e-6
    a = torch.rand(2, 8, 3, 3)
    assert torch.equal(LGAM(8, groups=2)(a), a)  # the module's own default starts at identity
    assert diff_literal > 0.1 * ref_scale


def test_ladder_group_k_depends_on_k_minus_1_not_k_plus_1() -> None:
    m = LGAM(16, groups=4, reduction=2, init_scale=1.0)
    _randomise_bn(m)
    m.eval()
    a = torch.randn(2, 16, 4, 4, requires_grad=True)
    out = m.ladder(a)
    k = 2  # third group (0-based), channels 8..11
    (grad,) = torch.autograd.grad(out[:, 8:12].pow(2).sum(), a, retain_graph=True)
    per_group = grad.abs().sum(dim=(0, 2, 3)).view(4, 4).sum(1)
    assert per_group[k] > 0
    assert per_group[k - 1] > 1e-3  # direct ladder link y_{k-1}
    assert per_group[k - 2] > 1e-3  # transitively through y_{k-1}
    assert per_group[k + 1] == 0  # later groups never feed earlier ones
    # the first group sees only itself
    (g0,) = torch.autograd.grad(out[:, 0:4].sum(), a)
    assert g0[:, 4:].abs().sum() == 0 and g0[:, :4].abs().sum() > 0


def test_bad_groups_rejected_naming_valid_values() -> None:
    with pytest.raises(ValueError, match=r"G=5.*C=48.*\[1, 2, 3, 4, 6, 8, 12, 16, 24, 48\]"):
        LGAM(48, groups=5)
    # on a backbone: test_resnet stages 3, 4 have 192 and 96 channels
    with pytest.raises(ValueError, match=r"stage 3.*G=5.*C=192.*all chosen stages \[3, 4\]: \[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96\]"):
        create_method("lgam", num_classes=5, backbone="test_resnet", groups=5, stages="3,4")


def test_non_resnet_backbone_rejected() -> None:
    with pytest.raises(ValueError, match=r"ConvNeXt.*ResNet-family"):
        create_method("lgam", num_classes=5, backbone="test_convnext")


def test_parse_stages() -> None:
    assert parse_stages("3,4") == (3, 4)
    assert parse_stages([4, 2]) == (2, 4)
    assert parse_stages(4) == (4,)
    for bad in ("5", "3,3", "", "a,b", [0]):
        with pytest.raises(ValueError, match="stages"):
            parse_stages(bad)


def test_batch_size_one_in_train_mode() -> None:
    m = LGAM(8, groups=2, reduction=2, init_scale=1.0)
    _randomise_bn(m)
    before = [b.clone() for b in m.buffers()]
    a = torch.randn(1, 8, 3, 3)
    out_train = m.train()(a)
    out_eval = m.eval()(a)
    torch.testing.assert_close(out_train, out_eval)
    for b0, b1 in zip(before, m.buffers()):
        assert torch.equal(b0, b1) or b0.dtype == torch.long  # running stats untouched
    method = create_method("lgam", num_classes=3, backbone="test_resnet").train()
    out = method.training_step(torch.randn(1, 3, 64, 64), torch.tensor([1]))  # 64 px: backbone BN needs > 1 value
    assert torch.isfinite(out.loss)


def _cifar_stem(model: nn.Module) -> None:
    """The paper's CIFAR ResNet: 3x3 stride-1 first conv, no max pooling."""
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()


def test_parameter_overhead_resnet18_cifar100() -> None:
    base = timm.create_model("resnet18", pretrained=False, num_classes=100)
    _cifar_stem(base)
    method = create_method("lgam", num_classes=100, backbone="resnet18")  # defaults G=4, r=8, stages 1-4
    _cifar_stem(method.backbone)
    n_base = sum(p.numel() for p in base.parameters())
    n_lgam = sum(p.numel() for p in method.parameters())
    overhead = n_lgam - n_base
    print(f"\nCIFAR-100 ResNet-18: {n_base / 1e6:.3f}M -> +LGAM {n_lgam / 1e6:.3f}M (+{overhead / 1e6:.4f}M); paper 11.22M -> 11.25M")
    # independent count: per stage, G groups of Linear(C',h) + Linear(h,C') + BN(C'), plus one scale
    g, r = 4, 8
    expected = 0
    for c in (64, 128, 256, 512):
        cp = c // g
        h = max(1, cp // r)
        expected += g * (cp * h + h + h * cp + cp + 2 * cp) + 1
    assert overhead == expected
    assert 0.020e6 < overhead < 0.040e6  # paper: +0.03M (two-decimal rounding of both totals)
    assert abs(n_base - 11.22e6) < 0.01e6


def test_training_step_reduces_loss() -> None:
    method = create_method("lgam", num_classes=4, backbone="test_resnet", groups=4, reduction=2)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    method.train()
    losses = []
    for _ in range(5):
        out = method.training_step(x, y)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert set(out.branch_losses) == {"ce"} and out.logits.shape == (8, 4)
    assert losses[-1] < 0.7 * losses[0]
    # the modules are trained too: their output scale left zero
    assert all(abs(m.scale.item()) > 0 for m in method.lgams.values())
    assert method.predict(x).shape == (8, 4)


# ---- search space -------------------------------------------------------------------


def _stage_channels(name: str) -> dict[int, int]:
    with torch.device("meta"):  # no weight init, fast even for resnet101
        return resnet_stage_channels(timm.create_model(name, pretrained=False, num_classes=0))


def _check_space_format(space: dict, method: str) -> None:
    keys = known_keys(method)
    assert set(space) >= {"description", "fixed", "params", "first", "smoke"}
    assert space["fixed"]["method"] == method
    for key, dist in {**space["params"], **{k: None for k in space["fixed"]}}.items():
        assert key in keys, key
    for key, dist in space["params"].items():
        value = space["first"][key]
        if dist["type"] == "choice":
            assert dist["values"] and value in dist["values"], key
        else:
            assert dist["low"] < dist["high"] and (not dist["type"].startswith("log") or dist["low"] > 0), key
            assert dist["low"] <= value <= dist["high"], key
    assert set(space["first"]) == set(space["params"])
    assert set(space["smoke"]) <= set(space["params"]) | set(space["fixed"])
    resolve_config({**space["fixed"], **space["first"]})
    resolve_config({**space["fixed"], **space["first"], **space["smoke"]})


def test_space_groups_divide_every_stage_of_every_backbone() -> None:
    space = yaml.safe_load(SPACE.read_text())
    _check_space_format(space, "lgam")
    p = space["params"]
    backbones = p["backbone"]["values"] + [space["smoke"]["backbone"]]
    checked = 0
    for bb in backbones:
        chans = _stage_channels(bb)
        stage_sets = p["stages"]["values"]
        group_choices = p["groups"]["values"] if bb != space["smoke"]["backbone"] else [space["smoke"]["groups"]]
        for stages in stage_sets:
            for g in group_choices:
                for s in parse_stages(stages):
                    assert chans[s] % g == 0, f"G={g} does not divide {bb} stage {s} ({chans[s]} ch)"
                    checked += 1
    assert checked > 50
    assert parse_stages(space["smoke"]["stages"]) and space["smoke"]["stages"] in p["stages"]["values"]


def test_smoke_config_builds_and_runs() -> None:
    space = yaml.safe_load(SPACE.read_text())
    cfg = resolve_config({**space["fixed"], **space["first"], **space["smoke"]})
    method = create_method("lgam", num_classes=3, **cfg)
    assert method.predict(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert method.predict(torch.randn(2, 3, 40, 40)).shape == (2, 3)
