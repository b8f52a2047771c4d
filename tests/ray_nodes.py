"""Real Ray nodes on this machine for the cluster launcher tests (token auth, SLURM).

Every process such a test starts carries ``FGVC_TEST_NODES=<mark>`` in its
environment. Ray hands its environment down to the processes it spawns (GCS,
raylet, agents, workers, which rename themselves to ``ray::IDLE``...), so
:func:`marked` finds all of them, and nothing of another test's or another
user's Ray, from /proc. ``ray stop`` is never used: it ends every Ray on the
machine.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
MARK_ENV = "FGVC_TEST_NODES"
VENV_BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmpdir(prefix: str) -> Path:
    """A folder under /tmp: Ray's Unix sockets live in it, and their paths must stay
    under ~107 characters (pytest's tmp_path is too deep)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def node_env(mark: str, ray_tmp: Path, token_file: Path | None) -> dict[str, str]:
    """The environment for nodes and clients of one test cluster: marked, its own
    Ray temp folder, token authentication from ``token_file`` (None: off)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_AUTH", "RAY_ADDRESS")) and k != "RAY_TMPDIR"}
    env.update({MARK_ENV: mark, "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0",
                "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WANDB_SILENT": "true",
                "PATH": os.pathsep.join([VENV_BIN, env.get("PATH", "")])})
    if token_file is not None:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    return env


def marked(mark: str) -> list[int]:
    """Pids of live processes whose environment carries this test's mark."""
    needle = f"{MARK_ENV}={mark}\0".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


def end_marked(mark: str, grace_s: float = 30.0) -> list[int]:
    """Wait up to ``grace_s`` for the marked processes to exit, SIGKILL the rest by
    pid; returns the pids that had to be killed (a test asserts it is empty)."""
    deadline = time.time() + grace_s
    while (left := marked(mark)) and time.time() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.5)


def files_containing(folder: Path, secret: str) -> list[Path]:
    """Every file under ``folder`` whose bytes contain ``secret`` (binary files too)."""
    needle = secret.encode()
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]
