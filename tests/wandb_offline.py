"""Test-only reader of W&B offline runs (``wandb/offline-run-*/run-<id>.wandb``), without
a server: to check what a search logged before ``wandb sync`` uploads it.

The ``.wandb`` file is W&B's transaction log: a 7-byte header (``:W&B``,
magic, version) then LevelDB-log-style records in 32 KiB blocks (4-byte CRC,
2-byte length, 1-byte type: FULL=1, FIRST=2, MIDDLE=3, LAST=4), each record a
``wandb_internal_pb2.Record`` protobuf.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    run_id: str
    name: str
    group: str
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # the summary records written, later keys win
    path: Path | None = None


def _records(data: bytes) -> list[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log (missing ':W&B' header)")
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
        else:  # zero padding at the end of a partly written file
            break
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_run(run_dir: str | Path) -> OfflineRun:
    """Config, summary and history rows (``{"epoch": 1, "val_acc": 0.4, ...}``) of one offline run."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    run = OfflineRun(run_id="", name="", group="", path=run_dir)
    for raw in _records(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name, run.group = rec.run.run_id, rec.run.display_name, rec.run.run_group
            for item in rec.run.config.update:
                run.config[item.key] = _value(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[item.key] = _value(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = _value(item.value_json)
        elif kind == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = _value(item.value_json)
            run.history.append(row)
    return run


def read_runs(wandb_dir: str | Path) -> list[OfflineRun]:
    """Every offline run under a ``wandb`` folder, oldest first."""
    return [read_run(d) for d in sorted(Path(wandb_dir).glob("offline-run-*")) if d.is_dir()]
