"""Checks that a search on a multi-node Ray cluster can keep its results.

Every trial writes its checkpoints from the node it runs on, and a trial
restarted after a node failure reads them back on another node, so the search
folder must be the same folder on every node: a URI (s3://, gs://) or a shared
filesystem (NFS, EFS). A plain local path looks fine on the driver but silently
splits the results across the nodes' disks; Ray only notices at the first
checkpoint of a remote trial. :func:`check_shared_storage` finds out before any
trial starts, by asking every node to read a token the driver has just written.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

MARKER_PREFIX = ".shared_storage_check_"


class StorageNotShared(RuntimeError):
    """Some cluster nodes do not see the driver's storage folder."""


def _read_token(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def nodes_reading(path: str, timeout_s: float = 120.0) -> dict[str, str | None]:
    """What every alive node reads at ``path`` (None: missing), by node id.

    One zero-CPU task pinned to each node, so it runs even on a head that
    advertises no CPU and never waits behind trials."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    read = ray.remote(num_cpus=0, max_retries=0)(_read_token)
    refs = {}
    for node in alive_nodes():
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        refs[node["NodeID"]] = read.options(scheduling_strategy=strategy).remote(path)
    values = ray.get(list(refs.values()), timeout=timeout_s)
    return dict(zip(refs, values))


def check_shared_storage(storage: str, expected_token: str | None = None) -> list[str]:
    """Raise :class:`StorageNotShared` unless every alive node sees the local
    folder ``storage`` as the driver does; returns the node ids checked.

    A URI (``s3://``, ``gs://``, ...) is reachable from every node by design and
    is not probed. ``expected_token`` replaces the token the nodes must read
    (tests use it to play a node that sees another folder of the same name)."""
    if "://" in storage:
        return []
    folder = Path(storage)
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    marker = folder / f"{MARKER_PREFIX}{token[:8]}"
    marker.write_text(token)
    try:
        seen = nodes_reading(str(marker))
    finally:
        marker.unlink(missing_ok=True)
    want = token if expected_token is None else expected_token
    blind = sorted(node for node, value in seen.items() if value != want)
    if blind:
        addresses = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in alive_nodes()}
        where = ", ".join(f"{addresses.get(node, '?')} (node {node[:12]})" for node in blind)
        raise StorageNotShared(
            f"--storage {storage} is not the same folder on every node of the cluster: {where} "
            f"cannot see what this driver writes there, so their trials' checkpoints would be "
            f"lost to the search. Fix: put --storage on a filesystem every node mounts at the "
            f"same path (NFS, EFS, e.g. --storage /mnt/shared/fgvc-searches) or use a bucket "
            f"(--storage s3://bucket/fgvc-searches, --storage gs://bucket/fgvc-searches)")
    return sorted(seen)
