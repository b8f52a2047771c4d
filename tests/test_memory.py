"""Per-trial GPU memory estimate: exact saved-tensor counting, scaling, and the fraction check."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from fgmodels import memory
from fgmodels.memory import (
    activation_profile, check_gpu_fraction, estimate_trial_memory_gb, max_trials_per_gpu, memory_breakdown,
    saved_tensor_bytes,
)


def test_saved_tensor_bytes_equals_hand_count_on_known_network() -> None:
    b, h, w = 3, 5, 6
    conv, lin = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * h * w, 7)
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)
    x = torch.randn(b, 3, h, w)
    params = list(net.parameters())
    got, out = saved_tensor_bytes(lambda: net(x), exclude=params)
    # conv saves its input; ReLU saves its output, which Flatten views and Linear saves again (one storage)
    expect = b * 3 * h * w * 4 + b * 4 * h * w * 4
    assert got == expect and out.shape == (b, 7)
    # without the exclusion the weights conv and linear keep for grad-input are counted too (biases are not saved)
    with_params, _ = saved_tensor_bytes(lambda: net(x))
    assert with_params - got == conv.weight.numel() * 4 + lin.weight.numel() * 4
    # nothing is saved without autograd
    with torch.no_grad():
        assert saved_tensor_bytes(lambda: net(x), exclude=params)[0] == 0


def _gholm(**over) -> dict:
    cfg = {"method": "gholm", "backbone": "test_convnext", "img_size": 128, "batch_size": 8, "opt": "adamw"}
    cfg.update(over)
    return cfg


def test_profile_predicts_an_unprobed_batch_and_resolution() -> None:
    cfg = _gholm(amp="off")
    profile = activation_profile(cfg, num_classes=10)
    model = memory._build(_resolved(cfg), 10)
    measured = memory._step_saved_bytes(model, batch=3, size=224, num_classes=10, bf16=False)
    assert profile.bytes(3, 224) == pytest.approx(measured, rel=0.03)
    # bf16 autocast stores activations at half size (roughly: norms and losses stay fp32)
    half = activation_profile(_gholm(amp="bf16"), num_classes=10)
    assert 0.45 < half.bytes(16, 448) / profile.bytes(16, 448) < 0.8


def _resolved(cfg: dict) -> dict:
    from fgmodels.config import resolve_config

    return resolve_config(cfg)


def test_estimate_grows_with_batch_resolution_and_branches() -> None:
    base = estimate_trial_memory_gb(_gholm(), num_classes=10)
    assert estimate_trial_memory_gb(_gholm(batch_size=16), num_classes=10) > base
    assert estimate_trial_memory_gb(_gholm(img_size=256), num_classes=10) > base
    # accumulation halves the micro-batch, hence the activations
    assert estimate_trial_memory_gb(_gholm(batch_size=16, accum_steps=2), num_classes=10) == pytest.approx(base)
    # activations ~ batch and ~ resolution^2 (up to the batch-independent bf16 weight copies)
    act = memory_breakdown(_gholm(), 10)["activations"]
    assert memory_breakdown(_gholm(batch_size=16), 10)["activations"] == pytest.approx(2 * act, rel=0.05)
    assert memory_breakdown(_gholm(img_size=256), 10)["activations"] == pytest.approx(4 * act, rel=0.1)
    # more branches (backbone passes) -> more activations: raw only < raw + drop < raw + crop + drop
    one = memory_breakdown(_gholm(use_crop=False, use_drop=False, use_supcon=False), 10)["activations"]
    two = memory_breakdown(_gholm(use_crop=False, use_supcon=False), 10)["activations"]
    three = memory_breakdown(_gholm(), 10)["activations"]
    assert one < two < three and three > 2.2 * one
    # Adam keeps two state copies, momentum SGD one
    sgd = memory_breakdown(_gholm(opt="sgd"), 10)
    adam = memory_breakdown(_gholm(), 10)
    assert adam["optimizer"] == pytest.approx(2 * sgd["optimizer"]) and adam["optimizer"] == pytest.approx(2 * adam["grads"])


def test_gpu_fraction_check_refuses_what_cannot_fit() -> None:
    cfg = _gholm()
    est = estimate_trial_memory_gb(cfg, num_classes=10)
    gpu = 3.5 * est / memory.USABLE_FRACTION  # room for 3 trials, not 4
    assert max_trials_per_gpu(cfg, gpu, num_classes=10) == 3
    for k in range(1, 6):
        if k <= 3:
            check_gpu_fraction(cfg, 1.0 / k, gpu, num_classes=10)
        else:
            with pytest.raises(ValueError, match=r"use --gpus-per-trial 0\.333 \(3 per GPU\)") as err:
                check_gpu_fraction(cfg, 1.0 / k, gpu, num_classes=10)
            assert f"{est:.1f} GiB" in str(err.value)
    check_gpu_fraction(cfg, 0.0, gpu, num_classes=10)  # CPU trials
    check_gpu_fraction(cfg, 2.0, gpu, num_classes=10)  # one trial per GPU (or more GPUs)
    with pytest.raises(ValueError, match="lower batch_size"):
        check_gpu_fraction(cfg, 1.0, est * 0.5, num_classes=10)
    with pytest.raises(ValueError, match=">= 0"):
        check_gpu_fraction(cfg, -0.5, gpu, num_classes=10)
    assert math.isfinite(est) and est > memory.CUDA_OVERHEAD_GB


def test_search_refuses_gpu_sharing_that_cannot_fit() -> None:
    """The plan is checked before Ray starts: two GHOLM trials at 448 px with the
    largest batch of the space (~4.1 GiB each on the tiny test_resnet) do not fit
    on one 6 GiB GPU, one per GPU does."""
    import pytest

    from search.packing import check_packing, worst_case_configs
    from search.spaces import load_space

    # as run_search applies --data cub (448 px crops); a tiny backbone keeps the probe fast
    space = load_space("gholm").apply_overrides({"data": "cub", "backbone": "test_resnet"})
    worst = worst_case_configs(space)
    assert worst[0]["batch_size"] == max(space.params["batch_size"].values)
    with pytest.raises(ValueError, match=r"--gpus-per-trial 0.5 puts 2 trials on each 6 GiB GPU.*use --gpus-per-trial 1 "):
        check_packing(space, 0.5, 6.0)
    assert check_packing(space, 1.0, 6.0) is None  # whole GPUs: nothing to pack
    assert check_packing(space, 0.5, 16.0) is None  # two fit on 16 GiB
    assert "not checked" in check_packing(space, 0.5, None)
