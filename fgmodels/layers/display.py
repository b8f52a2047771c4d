"""Images for dashboards: boxes drawn on images, heat overlays, per-image rescaling.

Display only: nothing here builds an autograd graph or feeds a loss.
"""
from __future__ import annotations

import torch


def draw_boxes(images: torch.Tensor, boxes: torch.Tensor, color: tuple[float, float, float] = (1.0, 0.0, 0.0), width: int = 2) -> torch.Tensor:
    """Draw box outlines onto images [B, 3, H, W] (a copy), batched via coordinate masks."""
    b, _, h, w = images.shape
    ys = torch.arange(h, device=images.device).view(1, h, 1).float()
    xs = torch.arange(w, device=images.device).view(1, 1, w).float()
    x0, y0, x1, y1 = (boxes.to(images.device).float()[:, i].view(b, 1, 1) for i in range(4))
    inside_outer = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    inside_inner = (xs >= x0 + width) & (xs < x1 - width) & (ys >= y0 + width) & (ys < y1 - width)
    edge = (inside_outer & ~inside_inner)[:, None]
    paint = torch.tensor(color, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return torch.where(edge, paint, images)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Per-image min-max rescale of [B, C, H, W] to [0, 1] for display (normalisation
    constants are unknown here); a constant image becomes all zeros."""
    flat = images.flatten(1)
    lo = flat.amin(dim=1).view(-1, *([1] * (images.dim() - 1)))
    hi = flat.amax(dim=1).view(-1, *([1] * (images.dim() - 1)))
    return ((images - lo) / (hi - lo).clamp_min(1e-8)).clamp(0.0, 1.0)


def heat_overlay(images01: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Blend a red-to-yellow rendering of the per-image normalised heat onto [0, 1] images."""
    peak = heat.flatten(1).amax(dim=1).view(-1, 1, 1).clamp_min(1e-8)
    hn = (heat / peak).clamp(0.0, 1.0)[:, None]
    colour = torch.cat([hn.clamp(max=0.5) * 2, (hn - 0.5).clamp_min(0) * 2, torch.zeros_like(hn)], dim=1)
    return ((1 - alpha) * images01 + alpha * colour).clamp(0.0, 1.0)
