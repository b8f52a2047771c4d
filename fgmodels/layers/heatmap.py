"""Heat-map guided crop / drop: Grad-CAM, connected regions, boxes, crops, erase masks.

Everything here works on whole batches with tensor ops so it runs on the GPU
without per-image Python loops. The only host synchronisations are the
convergence checks of :func:`connected_components` (one per few propagation
rounds); constants are made on the device, never copied from the host. Nothing
here builds an autograd graph: the outputs drive data augmentation (which
pixels to crop or erase), not the loss.

Box convention used throughout: ``[x0, y0, x1, y1]`` in pixels with exclusive
upper edges, i.e. a box covering pixel columns ``x0 .. x1-1``; the whole image of
width ``W`` and height ``H`` is ``[0, 0, W, H]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Labels are carried in float32 (max_pool2d has no integer kernel on CUDA);
# flat pixel indices are exact in float32 only below 2**24.
_MAX_EXACT_PIXELS = 2**24


def grad_cam(features: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Grad-CAM on the feature map ``features`` [B, C, h, w] that produced ``logits``.

    Uses ``torch.autograd.grad`` with ``retain_graph=True`` on the SAME forward
    pass, so no second forward is needed, the graph survives for the loss
    backward, and parameter ``.grad`` fields are never touched (only the
    gradient w.r.t. ``features`` is returned). Returns the detached float32 cam
    [B, h, w] = ReLU(sum_k mean_ij(d y_c / d A_k) * A_k).
    """
    if features.dim() != 4:
        raise ValueError(f"grad_cam expects a feature map [B, C, h, w], got shape {tuple(features.shape)}")
    if not features.requires_grad:
        raise ValueError(
            "grad_cam needs `features` in the autograd graph of `logits`; run the head "
            "under torch.enable_grad() on a tensor that requires grad"
        )
    target = target.to(device=logits.device, dtype=torch.long).view(-1, 1)
    score = logits.gather(1, target).sum()
    (grads,) = torch.autograd.grad(score, features, retain_graph=True)
    weights = grads.float().mean(dim=(2, 3), keepdim=True)
    cam = (weights * features.detach().float()).sum(dim=1)
    return cam.clamp_min(0.0)


def upsample_heat(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of a cam [B, h, w] to the image size -> heat [B, H, W]."""
    return F.interpolate(cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def threshold_mask(heat: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """``heat > factor * mean(heat)`` per image; ``factor`` is a scalar or [B]."""
    mean = heat.flatten(1).mean(dim=1)
    if isinstance(factor, torch.Tensor):
        factor = factor.to(dtype=heat.dtype, device=heat.device)
    # a Python float stays a kernel argument: as_tensor(float, device=cuda) would be a blocking copy
    thresh = (factor * mean).view(-1, *([1] * (heat.dim() - 1)))
    return heat > thresh


def _propagate_max(labels: torch.Tensor, fg: torch.Tensor, connectivity: int) -> torch.Tensor:
    """One round of max-label propagation to the direct neighbours inside the mask."""
    x = labels[:, None]
    if connectivity == 8:
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    else:  # 4-connectivity: a cross-shaped max filter
        rows = F.max_pool2d(x, kernel_size=(1, 3), stride=1, padding=(0, 1))
        cols = F.max_pool2d(x, kernel_size=(3, 1), stride=1, padding=(1, 0))
        pooled = torch.maximum(rows, cols)
    return torch.where(fg, pooled[:, 0], labels)


def _run_max(labels: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Give every horizontal run of mask pixels the maximum label found in it.

    A whole run is settled in one step (segment ids by cumsum over run starts,
    then a scatter-amax), so labels cross a blob in a few steps rather than one
    pixel per step. Apply to transposed tensors for vertical runs.
    """
    left = F.pad(fg[:, :, :-1], (1, 0), value=False)
    starts = (fg & ~left).flatten()
    seg = (torch.cumsum(starts, dim=0) - 1).clamp_min(0)
    flat_fg = fg.flatten()
    vals = torch.where(flat_fg, labels.flatten(), torch.full_like(labels.flatten(), -1.0))
    best = torch.full_like(vals, -1.0).scatter_reduce(0, seg, vals, reduce="amax", include_self=True)
    return torch.where(flat_fg, best[seg], labels.flatten()).view_as(labels)


def _pointer_jump(labels: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """label <- max(label, label of the pixel the label names).

    Labels are flat indices of pixels in the same region and only grow, so a
    pixel may adopt the label its label-pixel has reached: it shortcuts chains.
    """
    b = labels.shape[0]
    flat = labels.reshape(b, -1)
    idx = flat.clamp_min(0).long()
    jumped = torch.maximum(flat, flat.gather(1, idx)).view_as(labels)
    return torch.where(fg, jumped, labels)


def _label_round(labels: torch.Tensor, fg: torch.Tensor, fg_t: torch.Tensor, connectivity: int) -> torch.Tensor:
    labels = _run_max(labels, fg)
    labels = _run_max(labels.transpose(1, 2).contiguous(), fg_t).transpose(1, 2)
    labels = _propagate_max(labels.contiguous(), fg, connectivity)
    return _pointer_jump(labels, fg)


def connected_components(mask: torch.Tensor, connectivity: int = 8, check_every: int = 2) -> torch.Tensor:
    """Label the connected regions of a boolean mask [B, H, W].

    Returns int64 labels [B, H, W]: -1 on background, and on each region the
    largest flat pixel index (y * W + x) it contains, so labels are unique per
    image. Iterative max-label propagation restricted to the mask: whole
    horizontal and vertical runs at once, then a 3x3 (8-conn) or cross (4-conn)
    max-pool step and pointer jumping. Every step keeps labels inside their
    region and only raises them, so "a round changed nothing" is the unique
    fixpoint (each label = the maximum index of its region). Blob-like masks
    converge in a handful of rounds; one host sync per ``check_every`` rounds.
    """
    if mask.dim() != 3:
        raise ValueError(f"connected_components expects a mask [B, H, W], got shape {tuple(mask.shape)}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    b, h, w = mask.shape
    if h * w >= _MAX_EXACT_PIXELS:
        raise ValueError(
            f"mask of {h}x{w} pixels is too large for exact float32 labels; "
            f"downsample the heat map below {_MAX_EXACT_PIXELS} pixels first"
        )
    fg = mask.bool().contiguous()
    fg_t = fg.transpose(1, 2).contiguous()
    index = torch.arange(h * w, device=mask.device, dtype=torch.float32).view(1, h, w).expand(b, h, w)
    labels = torch.where(fg, index, torch.full_like(index, -1.0))
    # A region never needs more rounds than it has pixels: a hard bound.
    for _ in range(0, h * w + 1, check_every):
        before = labels
        for _ in range(check_every):
            labels = _label_round(labels, fg, fg_t, connectivity)
        if torch.equal(before, labels):
            break
    return labels.long()


def largest_component(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Keep only the largest connected region of each mask [B, H, W] (ties: any one)."""
    labels = connected_components(mask, connectivity)
    b = labels.shape[0]
    flat = labels.view(b, -1)
    fg = flat >= 0
    sizes = torch.zeros(flat.shape, device=flat.device, dtype=torch.float32)
    sizes.scatter_add_(1, flat.clamp_min(0), fg.float())
    best = sizes.argmax(dim=1, keepdim=True)
    return ((flat == best) & fg).view_as(mask)


def mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight box [B, 4] (x0, y0, x1, y1, exclusive upper edges) of each mask; empty -> whole image."""
    b, h, w = mask.shape
    cols = mask.any(dim=1)  # [B, W]
    rows = mask.any(dim=2)  # [B, H]
    xs = torch.arange(w, device=mask.device)
    ys = torch.arange(h, device=mask.device)
    big = max(h, w) + 1
    x0 = torch.where(cols, xs, big).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y0 = torch.where(rows, ys, big).amin(dim=1)
    y1 = torch.where(rows, ys, -1).amax(dim=1) + 1
    box = torch.stack([x0, y0, x1, y1], dim=1).float()
    whole = torch.zeros_like(box)  # filled on the device: torch.tensor(..., device=cuda) would sync
    whole[:, 2], whole[:, 3] = float(w), float(h)
    empty = ~cols.any(dim=1, keepdim=True)
    return torch.where(empty, whole, box)


def crop_boxes_from_heat(heat: torch.Tensor, mu: float, connectivity: int = 8) -> torch.Tensor:
    """Bounding box of the largest region where ``heat > mu * mean(heat)`` (whole image if none)."""
    return mask_to_box(largest_component(threshold_mask(heat, mu), connectivity))


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Crop every box from its image and resize it to ``size`` (default: the input size).

    One batched bilinear ``grid_sample``: the output pixel grid is mapped
    affinely onto the box, with ``align_corners=False`` so box edges coincide
    with pixel edges (the whole-image box returns the image unchanged).
    """
    b, _, h, w = images.shape
    out_h, out_w = size if size is not None else (h, w)
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=torch.float32)
    theta[:, 0, 0] = (x1 - x0) / w
    theta[:, 0, 2] = (x0 + x1) / w - 1.0
    theta[:, 1, 1] = (y1 - y0) / h
    theta[:, 1, 2] = (y0 + y1) / h - 1.0
    grid = F.affine_grid(theta, [b, images.shape[1], out_h, out_w], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(images.dtype)


def drop_mask(heat: torch.Tensor, theta_low: float, theta_high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Erase mask [B, H, W]: ``heat > theta * mean(heat)``, theta ~ U[theta_low, theta_high] per image."""
    u = torch.rand(heat.shape[0], device=heat.device, generator=generator)
    theta = theta_low + (theta_high - theta_low) * u
    return threshold_mask(heat, theta)


def apply_drop(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the masked pixels of (already normalised) images; zero = the dataset mean colour."""
    return images * (~mask)[:, None].to(images.dtype)
