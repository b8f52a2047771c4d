"""timm backbone construction shared by every method.

Real weights come from timm (``pretrained=True``, needs the hub) or from a local
file (``checkpoint_path``), which is how clusters without internet load them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch.nn as nn


def create_backbone(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm model without classifier (``num_classes=0``).

    ``checkpoint_path`` points timm's pretrained loader at a local file, so the
    usual pretrained-weight adaptation (e.g. dropping the old head) still runs.
    """
    if name not in timm.list_models() and not timm.is_model(name):
        raise ValueError(
            f"unknown timm backbone {name!r}; list candidates with "
            f"`python -c \"import timm; print(timm.list_models('*{name[:6]}*'))\"`"
        )
    extra: dict[str, Any] = dict(kwargs)
    if checkpoint_path:
        path = Path(checkpoint_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone checkpoint {path} does not exist; give an existing local "
                f"weights file or use pretrained=True with internet access"
            )
        pretrained = True
        extra["pretrained_cfg_overlay"] = dict(file=str(path))
    return timm.create_model(name, pretrained=pretrained, num_classes=0, **extra)
