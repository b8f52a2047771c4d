"""Ray processes a killed driver left behind, found and stopped by the next run.

A search starts a private local Ray. When its driver dies without a chance to
shut Ray down (SIGKILL, a lost SSH session), Ray's own reaper stops most of
it, but some helpers (the dashboard and runtime-env agents) were seen to live
on. The driver therefore records its Ray session in the search folder
(:data:`SESSION_FILE`); ``--resume`` (or any later run of the same search)
reads it and, when that driver is gone, stops every process whose command
line names that session. Only processes of that one session are touched,
never another user's Ray.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

SESSION_FILE = "ray_session.json"


def record_session(folder: Path) -> None:
    """Write this driver's pid and its local Ray session's name into the search folder."""
    import ray

    node = ray._private.worker._global_node  # the local node this driver started
    if node is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{SESSION_FILE}.tmp"
    tmp.write_text(json.dumps({"driver_pid": os.getpid(), "session": node.session_name,
                               "session_dir": node.get_session_dir_path()}))
    tmp.replace(folder / SESSION_FILE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def session_processes(session: str) -> list[int]:
    """Pids whose command line names ``session`` (Linux /proc; elsewhere none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def stop_leftovers(folder: Path, grace_s: float = 5.0) -> list[int]:
    """Stop the processes of the Ray session a dead driver of this search left; returns their pids."""
    path = folder / SESSION_FILE
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
        pid, session = int(record["driver_pid"]), str(record["session"])
    except (ValueError, KeyError, OSError):
        return []
    if not session.startswith("session_") or _alive(pid):
        return []  # that driver still runs (or the record is not ours): leave its Ray alone
    pids = session_processes(session)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace_s
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
    if pids:
        print(f"stopped {len(pids)} process(es) of Ray session {session} left by the killed driver of this search")
    return pids
