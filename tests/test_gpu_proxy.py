"""A CPU proxy of the GPU path: every registered method trains and predicts under
bf16 autocast + channels_last + the pixel-cache pipeline (what ``auto`` picks on a
modern GPU), on tiny backbones at 48 px. ``compile`` is left to
benchmarks/bench_compile.py (slow on CPU).

Tolerance of bf16 predictions against fp32 (the same weights, the same eval
batch): bf16 keeps 8 significant bits, a relative rounding of 2^-8 = 0.4% per
operation, which compounds over a network, so each logit may differ from fp32 by
at most 5% of the largest fp32 logit magnitude + 0.02, and each softmax
probability by at most 0.02. Measured on this test's tiny models: at most
0.025 per logit (racnn), 0.006 per probability.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fgmodels.assembly import build_model, load_data
from fgmodels.config import resolve_config
from fgmodels.registry import get_method_class, list_methods
from fgmodels.runtime import autocast_for, make_loader, to_device

LOGIT_RTOL, LOGIT_ATOL, PROB_ATOL = 0.05, 0.02, 0.02
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy_data")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "proxy_cache"))


def _gpu_path_cfg(name: str, root: Path) -> dict:
    return resolve_config({
        "method": name, "backbone": get_method_class(name).test_backbone, "device": "cpu", "batch_size": 4,
        "data": "synthetic", "data_root": str(root), "synthetic_classes": 3, "synthetic_per_class": 6,
        "synthetic_image_size": 56, "img_size": 48, "resize_size": 52,
        "amp": "bf16", "channels_last": True, "pipeline": "cache", "compile": False,
    })


@pytest.mark.parametrize("name", list_methods())
def test_training_step_and_predict_on_the_gpu_path(name: str, data_root: Path) -> None:
    cfg = _gpu_path_cfg(name, data_root)
    data = load_data(cfg)
    assert data.train.pixel_cache is not None
    images, labels = next(iter(make_loader(data.train, 4, True, cfg, CPU, torch.Generator().manual_seed(0))))
    images, labels = to_device(images, labels, CPU, cfg)
    assert images.is_contiguous(memory_format=torch.channels_last) and images.dtype == torch.float32

    model = build_model(cfg, data.num_classes, CPU).train()
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    model.on_epoch_start(0)
    with autocast_for(cfg, CPU):
        out = model.training_step(images, labels)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter received a gradient"
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad[:3]}"
    assert all(g.dtype == torch.float32 for g in grads.values())  # autocast keeps the weights fp32
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0

    model.eval()
    eval_images, _ = next(iter(make_loader(data.val, 4, False, cfg, CPU)))
    eval_images = eval_images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fp32 = model.predict(eval_images).float()
        with autocast_for(cfg, CPU):
            bf16 = model.predict(eval_images).float()
    assert fp32.shape == bf16.shape == (len(eval_images), data.num_classes) and torch.isfinite(bf16).all()
    assert not torch.equal(fp32, bf16), "bf16 autocast changed nothing: it did not run"
    limit = LOGIT_RTOL * float(fp32.abs().max()) + LOGIT_ATOL
    assert float((bf16 - fp32).abs().max()) <= limit
    assert float((bf16.softmax(1) - fp32.softmax(1)).abs().max()) <= PROB_ATOL
