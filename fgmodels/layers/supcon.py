"""Supervised contrastive loss (Khosla et al., 2020): pulls views and images of a class together."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.7,
    base_temperature: float | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020), "all" anchors mode.

    ``features`` [B, V, D] holds V views of each of the B images (gholm: V = 2,
    the raw and the crop embedding); ``labels`` [B]. Every one of the B*V
    embeddings is an anchor; its positives are all OTHER embeddings with the same
    label (its other views and other images of the class); the denominator runs
    over all other embeddings. The loss is the mean over anchors of
    ``-(temperature / base_temperature) * mean_{p in P(i)} log softmax_i(p)``.

    ``base_temperature`` defaults to ``temperature``, i.e. NO rescaling: the
    reference code's fixed 0.07 would silently multiply the loss by 10 at
    temperature 0.7. The row maximum is subtracted before ``exp`` for stability;
    anchors without any positive (possible only when V = 1) are left out of the
    mean, and a batch with none at all gives an exact 0 that still carries a
    (zero) gradient, never NaN.
    """
    if features.dim() != 3:
        raise ValueError(f"supcon_loss expects features [B, views, D], got shape {tuple(features.shape)}")
    b, v, _ = features.shape
    if labels.shape != (b,):
        raise ValueError(f"supcon_loss expects labels [B]={b}, got shape {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"supcon temperature must be positive, got {temperature!r}")
    base = temperature if base_temperature is None else base_temperature
    feats = features.float()
    if normalize:
        feats = F.normalize(feats, dim=2)
    # view-major stacking: row k = view k // B of image k % B
    z = feats.transpose(0, 1).reshape(b * v, -1)
    lab = labels.to(z.device).repeat(v)
    n = b * v
    if n < 2:  # a lone embedding has neither positives nor a denominator
        return features.sum() * 0.0
    sim = z @ z.t() / temperature
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()
    not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
    positive = (lab[:, None] == lab[None, :]) & not_self
    # log of the denominator over all others; self excluded via -inf
    log_denom = torch.logsumexp(sim.masked_fill(~not_self, float("-inf")), dim=1, keepdim=True)
    log_prob = sim - log_denom
    n_pos = positive.sum(dim=1)
    has_pos = n_pos > 0
    mean_log_prob_pos = torch.where(positive, log_prob, 0.0).sum(dim=1) / n_pos.clamp_min(1)
    per_anchor = -(temperature / base) * mean_log_prob_pos
    count = has_pos.sum()
    return (per_anchor * has_pos).sum() / count.clamp_min(1)
