"""Processes a killed driver's Ray session left behind are stopped by the next
run of the same search, and nothing else is touched."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from search.leftovers import SESSION_FILE, session_processes, stop_leftovers

SESSION = "session_2026-01-01_00-00-00_000000_99999"


def _stand_in(session: str) -> subprocess.Popen:
    """A process whose command line names the session, as Ray's agents' do."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", f"--session-dir=/tmp/ray/{session}"])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_drivers_session_is_stopped_and_others_are_not(tmp_path: Path) -> None:
    leftover, other = _stand_in(SESSION), _stand_in(SESSION.replace("99999", "88888"))
    try:
        (tmp_path / SESSION_FILE).write_text(json.dumps({"driver_pid": _dead_pid(), "session": SESSION}))
        assert session_processes(SESSION) == [leftover.pid]
        assert stop_leftovers(tmp_path) == [leftover.pid]
        assert leftover.wait(timeout=10) is not None
        assert other.poll() is None  # another session's process lives on
    finally:
        for proc in (leftover, other):
            proc.kill()
            proc.wait()


def test_a_live_driver_keeps_its_session(tmp_path: Path) -> None:
    leftover = _stand_in(SESSION)
    try:
        (tmp_path / SESSION_FILE).write_text(json.dumps({"driver_pid": leftover.pid, "session": SESSION}))
        assert stop_leftovers(tmp_path) == [] and leftover.poll() is None
        assert stop_leftovers(tmp_path / "no-record") == []
    finally:
        leftover.kill()
        leftover.wait()
