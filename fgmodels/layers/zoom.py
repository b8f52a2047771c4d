"""Differentiable square crop-and-zoom, the attention step of RA-CNN.

Box convention used everywhere here: ``box = (cx, cy, l)`` of shape [B, 3] in
*normalised image units*: ``cx`` is a fraction of the width, ``cy`` of the
height, ``l`` is the HALF side as a fraction of the width (x) and of the height
(y), so the box covers ``[cx - l, cx + l] x [cy - l, cy + l]`` of the unit
square and the whole image is ``(0.5, 0.5, 0.5)``. x is always the column
(width) axis and y the row (height) axis, as in ``affine_grid``.

Why not integer crops + ``interpolate``: casting box corners to int cuts the
autograd graph, which is how public re-implementations ended up hand-writing a
heuristic backward. ``affine_grid``/``grid_sample`` is a smooth function of the
box, so autograd gives its exact gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FULL_IMAGE = (0.5, 0.5, 0.5)


def _check_box(box: torch.Tensor, batch: int) -> None:
    if box.dim() != 2 or box.shape[1] != 3 or box.shape[0] != batch:
        raise ValueError(
            f"box must have shape [B, 3] = (cx, cy, half side) with B={batch}, got {tuple(box.shape)}"
        )


def box_to_theta(box: torch.Tensor) -> torch.Tensor:
    """Affine matrices [B, 2, 3] mapping output grid coords in [-1, 1] to the box.

    ``affine_grid`` coords are ``2 * u - 1`` for a unit-square coordinate ``u``;
    the box edge ``cx - l`` therefore sits at ``2 (cx - l) - 1``: scale ``2 l``,
    translation ``2 cx - 1`` (first row: x, second row: y).
    """
    cx, cy, l = box.unbind(dim=1)
    zero = torch.zeros_like(cx)
    row_x = torch.stack([2 * l, zero, 2 * cx - 1], dim=1)
    row_y = torch.stack([zero, 2 * l, 2 * cy - 1], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def crop_and_zoom(
    images: torch.Tensor, box: torch.Tensor, out_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Bilinear crop of ``box`` from ``images`` resized to ``out_size`` (default: input size).

    Differentiable in both ``images`` and ``box``. Samples outside the image
    (only possible for boxes that leave it) read the border pixel.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    _check_box(box, images.shape[0])
    height, width = out_size if out_size is not None else images.shape[-2:]
    theta = box_to_theta(box.to(images.dtype))
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], int(height), int(width)], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def boxcar_mask(box: torch.Tensor, height: int, width: int, k: float) -> torch.Tensor:
    """The paper's soft box mask [B, 1, H, W]: (h(x-x_tl) - h(x-x_br)) (h(y-y_tl) - h(y-y_br)).

    ``h`` is the logistic ``1 / (1 + exp(-k t))`` with ``t`` in PIXELS at pixel
    centres, so ``k`` has the paper's meaning (k = 10: a ~1 px soft edge).
    """
    if k <= 0:
        raise ValueError(f"boxcar k must be positive (a larger k is a sharper box), got {k}")
    cx, cy, l = box.unbind(dim=1)
    xs = torch.arange(width, dtype=box.dtype, device=box.device) + 0.5
    ys = torch.arange(height, dtype=box.dtype, device=box.device) + 0.5
    x_tl, x_br = ((cx - l) * width)[:, None], ((cx + l) * width)[:, None]
    y_tl, y_br = ((cy - l) * height)[:, None], ((cy + l) * height)[:, None]
    mx = torch.sigmoid(k * (xs[None] - x_tl)) - torch.sigmoid(k * (xs[None] - x_br))  # [B, W]
    my = torch.sigmoid(k * (ys[None] - y_tl)) - torch.sigmoid(k * (ys[None] - y_br))  # [B, H]
    return (my[:, :, None] * mx[:, None, :])[:, None]


def boxcar_crop_and_zoom(
    images: torch.Tensor, box: torch.Tensor, k: float, out_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """The paper's crop: ``images * M(box)``, then a zoom of the box region.

    The paper's integer crop gives the box a gradient only through the mask;
    here the zoom is the differentiable one too, so the gradient is the exact
    derivative of this forward (mask and sampling grid), never a surrogate.
    What the ablation changes is the forward: a soft (small ``k``) border.
    """
    _check_box(box, images.shape[0])
    mask = boxcar_mask(box.to(images.dtype), images.shape[-2], images.shape[-1], k)
    return crop_and_zoom(images * mask, box, out_size)


def compose_boxes(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """``inner`` (in the coordinates of the crop ``outer``) in ``outer``'s parent coordinates.

    A crop coordinate ``u`` maps to ``outer_c - outer_l + 2 outer_l u``, so
    cropping the original with the composed box equals cropping twice, without
    resampling the image twice.
    """
    ocx, ocy, ol = outer.unbind(dim=1)
    icx, icy, il = inner.unbind(dim=1)
    return torch.stack([ocx - ol + 2 * ol * icx, ocy - ol + 2 * ol * icy, 2 * ol * il], dim=1)


def constrain_box(raw: torch.Tensor, min_frac: float) -> torch.Tensor:
    """Map unconstrained APN outputs [B, 3] to a box inside the image.

    In the coordinates of the image being cropped (whose own half side is 0.5):
    ``l = 0.5 (min_frac + (1 - min_frac) sigmoid(a_l))`` lies in
    ``[min_frac * 0.5, 0.5]``, i.e. at least ``min_frac`` of the previous
    scale's half side and at most all of it; the centre
    ``c = l + (1 - 2 l) sigmoid(a_c)`` keeps ``[c - l, c + l]`` inside [0, 1].
    Smooth everywhere, so no clamping kinks in the gradient.
    """
    if not 0.0 < min_frac < 1.0:
        raise ValueError(f"min_tl_frac must lie in (0, 1), got {min_frac}")
    if raw.dim() != 2 or raw.shape[1] != 3:
        raise ValueError(f"APN output must be [B, 3] = (x, y, l) pre-activations, got {tuple(raw.shape)}")
    sx, sy, sl = torch.sigmoid(raw).unbind(dim=1)
    l = 0.5 * (min_frac + (1.0 - min_frac) * sl)
    return torch.stack([l + (1 - 2 * l) * sx, l + (1 - 2 * l) * sy, l], dim=1)
