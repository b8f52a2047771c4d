"""Bilinear ("linear fusion") pooling pieces, reusable by any method.

Two convolutions ("fusion kernels") turn one feature map X into f (n channels)
and f' (m channels) of the same H x W; their per-image outer product averaged
over positions, G = f f'^T / (H W), is flattened, passed through a signed square
root and L2-normalised (Lin et al.'s bilinear CNN recipe, as AT-CNN uses it).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FUSIONS: tuple[str, ...] = ("1x1_1x1", "1x1_3x3", "1x1_1x3_3x1")


class FusionKernels(nn.Module):
    """Conv1 (1x1, n channels) and Conv2 (m channels; shape set by ``fusion``).

    Every pair keeps H x W, so f and f' index the same positions:
    ``1x1_1x1``: 1x1 / 1x1; ``1x1_3x3``: 1x1 / 3x3 pad 1;
    ``1x1_1x3_3x1``: 1x1 / (1x3 pad (0,1) then 3x1 pad (1,0)), no activation in
    between (the paper shows none; the pair factorises a 3x3 receptive field).
    """

    def __init__(self, in_channels: int, n: int, m: int, fusion: str = "1x1_1x3_3x1") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {list(FUSIONS)}")
        for key, val in (("in_channels", in_channels), ("n", n), ("m", m)):
            if int(val) != val or val <= 0:
                raise ValueError(f"{key} must be a positive integer, got {val!r}")
        self.fusion = fusion
        self.conv1 = nn.Conv2d(in_channels, n, kernel_size=1)
        if fusion == "1x1_1x1":
            self.conv2: nn.Module = nn.Conv2d(in_channels, m, kernel_size=1)
        elif fusion == "1x1_3x3":
            self.conv2 = nn.Conv2d(in_channels, m, kernel_size=3, padding=1)
        else:
            self.conv2 = nn.Sequential(
                nn.Conv2d(in_channels, m, kernel_size=(1, 3), padding=(0, 1)),
                nn.Conv2d(m, m, kernel_size=(3, 1), padding=(1, 0)),
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv1(x), self.conv2(x)


def bilinear_pool(f: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """vec(G) with G[b] = sum_p f[b,:,p] f2[b,:,p]^T / (H W); shape [B, n*m].

    Computed in float32 with autocast off: bf16 sums of H*W products lose the
    small entries that the signed square root then magnifies.
    """
    if f.ndim != 4 or f2.ndim != 4 or f.shape[0] != f2.shape[0] or f.shape[2:] != f2.shape[2:]:
        raise ValueError(
            f"bilinear_pool needs two [B, C, H, W] maps with equal B, H, W; got "
            f"{tuple(f.shape)} and {tuple(f2.shape)}"
        )
    b, _, h, w = f.shape
    with torch.autocast(device_type=f.device.type, enabled=False):
        a = f.float().flatten(2)  # [B, n, HW]
        c = f2.float().flatten(2)  # [B, m, HW]
        g = torch.bmm(a, c.transpose(1, 2)) / (h * w)  # [B, n, m]
    return g.reshape(b, -1)


def signed_sqrt(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """sign(x) * sqrt(|x| + eps).

    ``eps`` bounds the slope by 1 / (2 sqrt(eps)) near 0 (1e-12 would allow 5e5);
    at exactly 0 both sign and abs have zero derivative, so the gradient is 0.
    """
    if eps <= 0:
        raise ValueError(f"signed_sqrt eps must be > 0 (e.g. 1e-6), got {eps!r}")
    return torch.sign(x) * torch.sqrt(x.abs() + eps)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Row-wise x / ||x||, safe for an all-zero row."""
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)


class BilinearHead(nn.Module):
    """Fusion kernels -> bilinear pool -> signed sqrt -> L2 -> dropout -> fc."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        n: int = 256,
        m: int = 256,
        fusion: str = "1x1_1x3_3x1",
        eps: float = 1e-6,
        dropout: nn.Module | None = None,
    ) -> None:
        """``dropout`` is applied before ``fc`` (a method passes its own; None: no dropout)."""
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (e.g. 1e-6), got {eps!r}")
        self.kernels = FusionKernels(in_channels, n, m, fusion)
        self.eps = float(eps)
        self.dropout = dropout if dropout is not None else nn.Identity()
        self.fc = nn.Linear(n * m, num_classes)
        self.feature_dim = n * m

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised bilinear vector c, [B, n*m] (float32)."""
        f, f2 = self.kernels(x)
        return l2_normalize(signed_sqrt(bilinear_pool(f, f2), self.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.features(x)
        return self.fc(self.dropout(c).to(self.fc.weight.dtype))
