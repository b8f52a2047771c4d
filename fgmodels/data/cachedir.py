"""Where the data layer keeps what it computes once per node: one rule for every cache."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FGVC_CACHE_DIR"
DEFAULT_CACHE_ROOT = Path("~/.cache/fgvc_search")


def default_cache_dir(kind: str) -> Path:
    """``$FGVC_CACHE_DIR/<kind>``, else ``~/.cache/fgvc_search/<kind>``.

    ``kind`` separates the caches (``synthetic``, ``pixels``, ``verified``) so
    that one can be deleted without the others. Node-local disk is best: the
    caches are rebuilt on a node that lacks them, never shared by accident.
    """
    env = os.environ.get(CACHE_ENV)
    return (Path(env) if env else DEFAULT_CACHE_ROOT).expanduser() / kind


__all__ = ["CACHE_ENV", "default_cache_dir"]
