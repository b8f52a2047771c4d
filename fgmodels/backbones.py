"""timm backbone construction shared by every method.

Real weights come from timm (``pretrained=True``, needs the hub) or from a local
file (``checkpoint_path``), which is how clusters without internet load them.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
import torch.nn as nn

from fgmodels.knobs import ConfigError


def backbone_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a timm model name (None if it is one).

    A pretrained tag (``convnext_small.fb_in22k``) is accepted: timm resolves it."""
    if timm.is_model(name):
        return None
    close = difflib.get_close_matches(name, timm.list_models(f"*{name[:5]}*"), n=1)
    return f"is not a timm model (did you mean {close[0]!r}?)" if close else "is not a timm model"


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
    problem = backbone_name_problem(name)
    if problem:
        raise ConfigError(
            f"backbone {name!r} {problem}. Fix: use a name from timm.list_models('*{name[:6]}*').", key="backbone"
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
