"""A trial's resolved configuration: born once in the trainable, read by the rest.

The trainable decodes the searcher's proposal, resolves it (defaults filled in,
every value checked), saves it as ``trial_config.yaml`` in every checkpoint and
attaches it (as JSON text under ``trial_config``) to the first result it reports
after each start. The W&B callback, the records, the leaderboard, the importance
study, ``best_config.yaml`` and the test evaluation read it from there.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

TRIAL_CONFIG_FILE = "trial_config.yaml"
TRIAL_CONFIG_KEY = "trial_config"


def save(cfg: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """Write ``cfg`` to ``folder/trial_config.yaml``; returns what a reader gets back."""
    from fgmodels.config import save_config

    path = Path(folder) / TRIAL_CONFIG_FILE
    save_config(dict(cfg), path)
    return yaml.safe_load(path.read_text())


def as_report(cfg: Mapping[str, Any]) -> str:
    """The value reported under :data:`TRIAL_CONFIG_KEY` (a flat string, so Ray
    stores it as one column instead of one per key)."""
    return json.dumps(dict(cfg), sort_keys=True)


def from_result(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config a reported result carries, if it is a trial's first report."""
    text = result.get(TRIAL_CONFIG_KEY)
    if not isinstance(text, str):  # absent, or NaN in a row of a table
        return None
    return json.loads(text)


def from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The config a trial reported (its rows as Ray stored them), or None."""
    for row in rows:
        cfg = from_result(row)
        if cfg is not None:
            return cfg
    return None


def from_checkpoint(checkpoint: Any) -> dict[str, Any] | None:
    """The ``trial_config.yaml`` inside a Ray checkpoint (local or remote), or None."""
    path = f"{checkpoint.path}/{TRIAL_CONFIG_FILE}"
    try:
        with checkpoint.filesystem.open_input_stream(path) as fh:
            return yaml.safe_load(fh.read().decode())
    except (OSError, yaml.YAMLError):
        return None
