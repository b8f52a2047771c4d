"""Test-time cost (fgmodels.cost): FLOPs against a hand count, gholm's Grad-CAM
backward charged to its predict, and the cost columns of the leaderboard."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from fgmodels.cost import COST_KEYS, count_flops, measure_cost
from fgmodels.registry import create_method


class _ConvLinear(nn.Module):
    """conv 3->4, 3x3, padding 1 on 8x8, then a linear 256 -> 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(images).flatten(1))


def test_flops_of_conv_and_linear_equal_a_hand_count() -> None:
    model = _ConvLinear()
    batch = 2
    # a multiply-add counts 2; biases are not multiplications
    conv = 2 * batch * (4 * 8 * 8) * (3 * 3 * 3)  # outputs x (inputs per output)
    linear = 2 * batch * 256 * 5
    assert count_flops(model.predict, torch.zeros(batch, 3, 8, 8)) == conv + linear


def test_measure_cost_per_image() -> None:
    model = _ConvLinear()
    model.train()
    cost = measure_cost(model, torch.zeros(4, 3, 8, 8))
    assert set(cost) == set(COST_KEYS)
    assert math.isclose(cost["cost_gflops"], (2 * 256 * 27 + 2 * 256 * 5) / 1e9)  # one image
    assert math.isclose(cost["cost_params_m"], (4 * 27 + 4 + 256 * 5 + 5) / 1e6)
    assert cost["cost_ms_per_image"] > 0
    assert model.training  # left as found


def test_gholm_predict_is_charged_for_its_crop_and_cam_backward() -> None:
    torch.manual_seed(0)
    model = create_method("gholm", 4, backbone="test_convnext", pretrained=False).eval()
    images = torch.randn(1, 3, 32, 32)
    model.hp.test_logits = "raw"
    raw = count_flops(model.predict, images)
    model.hp.test_logits = "raw+crop"
    both = count_flops(model.predict, images)
    # raw+crop = two raw passes (the crop is resized to the input size) plus the
    # Grad-CAM backward through the head, whose one matmul is d(logits)/d(features):
    # 2 x classes x features per image (the norm and pooling count no FLOPs)
    assert raw > 0 and both - 2 * raw == 2 * 4 * model.backbone.num_features


def test_the_tally_equals_torchs_flop_counter_on_a_plain_backbone() -> None:
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model("test_resnet", num_classes=5).eval()
    images = torch.randn(2, 3, 32, 32)
    reference = FlopCounterMode(display=False)
    with torch.no_grad(), reference:
        model(images)
    assert count_flops(model, images) == reference.get_total_flops() > 0
