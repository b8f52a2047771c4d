"""The ``paper:`` section of a method's space file: what the paper reports, per
dataset, and the point that reproduces it.

Format::

    paper:
      source: "authors, venue, year"
      note: "what the paper reports that this tool cannot load"   # optional
      overrides: {pretrained_tag: fb_in22k_ft_in1k}              # every dataset, optional
      datasets:
        cub:  {accuracy: 91.8}
        dogs: {accuracy: 94.4, overrides: {pretrained_tag: fb_in1k}, ours: null}

A dataset's point is the space's ``fixed`` values and its first ``first`` point,
then the common ``overrides``, then the dataset's own, then ``data``: one plain
config, checked here with ``check_values`` like every other value of the file.
``accuracy`` is the paper's top-1 test accuracy in per cent; ``ours`` is what
this tool measured at that point (absent until someone ran it on a GPU).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from search.spaces.checks import checked, closest, fail, is_number

_FIELDS = ("source", "note", "overrides", "datasets")
_DATASET_FIELDS = ("accuracy", "overrides", "ours")


@dataclass(frozen=True)
class PaperResult:
    """One dataset the paper reports: its accuracy and the config that reproduces it."""

    accuracy: float
    config: dict[str, Any]
    ours: float | None = None


@dataclass(frozen=True)
class Paper:
    source: str
    note: str = ""
    datasets: dict[str, PaperResult] = field(default_factory=dict)


def _mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(source, where, f"must be a mapping, got {value!r}", f"write `{where.rsplit('.', 1)[-1]}:` then "
                   f"indented `key: value` lines")
    return dict(value)


def _percent(source: str, where: str, value: Any, required: bool) -> float | None:
    if value is None and not required:
        return None
    if not is_number(value) or not 0 < value <= 100:
        raise fail(source, where, f"must be a top-1 accuracy in per cent (0, 100], got {value!r}",
                   "write the number the paper reports, e.g. 91.8")
    return float(value)


def parse_paper(source: str, raw: Any, fixed: Mapping[str, Any], first: list[dict[str, Any]],
                method: str) -> Paper | None:
    """The validated ``paper:`` section (None when the file has none)."""
    if raw is None:
        return None
    data = _mapping(source, "paper", raw)
    for key in data:
        if key not in _FIELDS:
            raise fail(source, f"paper.{key}", f"unknown field {key!r}{closest(key, _FIELDS)}", f"use only {list(_FIELDS)}")
    if not isinstance(data.get("source"), str) or not data["source"].strip():
        raise fail(source, "paper.source", "names no paper", 'write source: "authors, venue, year"')
    common = _mapping(source, "paper.overrides", data.get("overrides"))
    base = {**fixed, **(first[0] if first else {})}
    results = {}
    for name, entry in _mapping(source, "paper.datasets", data.get("datasets")).items():
        where = f"paper.datasets.{name}"
        entry = _mapping(source, where, entry)
        for key in entry:
            if key not in _DATASET_FIELDS:
                raise fail(source, f"{where}.{key}", f"unknown field {key!r}{closest(key, _DATASET_FIELDS)}",
                           f"use only {list(_DATASET_FIELDS)}")
        own = _mapping(source, f"{where}.overrides", entry.get("overrides"))
        for key in ("method", "data"):
            if key in {**common, **own}:
                raise fail(source, f"{where}.overrides.{key}", f"{key} is set by the space and the dataset name",
                           f"remove {key} from the overrides")
        config = {**base, **common, **own, "data": name}
        config = checked(source, f"{where}.overrides", method, config)
        results[name] = PaperResult(accuracy=_percent(source, f"{where}.accuracy", entry.get("accuracy"), True),
                                    config=config, ours=_percent(source, f"{where}.ours", entry.get("ours"), False))
    if not results and not str(data.get("note", "")).strip():
        raise fail(source, "paper.datasets", "lists no dataset and no note says why",
                   "add `datasets:` with the paper's accuracies, or a `note:` saying what the paper reports")
    return Paper(source=data["source"].strip(), note=str(data.get("note", "")).strip(), datasets=results)
