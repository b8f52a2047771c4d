"""cluster/slurm/fgvc-search.sbatch run on this machine as SLURM would run it, with
stand-in ``srun`` and ``scontrol`` (tests/slurm_standin/) that start each "node" here.

One job, two allocations, as a job that hits its time limit lives them:

1. The script starts a Ray head and a worker through ``srun`` with token authentication
   (RAY_AUTH_MODE=token, a 0600 token file), then a tiny real search on the head with
   ``--address``. Once a trial has reported an epoch, SLURM's time-limit warning (USR1, from
   ``#SBATCH --signal``) arrives: the script Ctrl-C's the driver (the search state is
   saved), stops its nodes and asks ``scontrol requeue`` for its own job.
2. The requeued job (same job id) finds the search's plan under the shared results folder
   and continues it with ``--resume``: every trial ends completed, trials ran on both nodes.

After each run: no process it started is alive, the token file is gone, and the token
string appears in no file of the search folder nor in the job's output.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.ray_nodes import REPO, end_marked, files_containing, free_port, node_env, short_tmpdir, wait_for
from tests.test_cli import TINY

SCRIPT = REPO / "cluster" / "slurm" / "fgvc-search.sbatch"
STANDINS = REPO / "tests" / "slurm_standin"
JOB_ID = "4242"
SEARCH = ["--num-samples", "2", "--max-epochs", "2", "--grace-period", "2", "--max-concurrent", "2",
          "--wandb", "offline", "--no-smoke"]


@pytest.fixture
def job() -> Iterator[dict[str, Any]]:
    tmp = short_tmpdir("fgvc-slurm-")
    (tmp / "ray").mkdir()
    space = tmp / "tiny.yaml"
    space.write_text(yaml.safe_dump({**TINY, "fixed": {**TINY["fixed"], "step_delay_s": 0.3}}, sort_keys=False))
    env = node_env(tmp.name, tmp / "ray", None)
    env.update(PATH=os.pathsep.join([str(STANDINS), env["PATH"]]), FAKE_SLURM_LOG=str(tmp / "slurm.log"),
               SLURM_JOB_ID=JOB_ID, SLURM_JOB_NODELIST="node1,node2", SLURM_CPUS_PER_TASK="1",
               SLURM_SUBMIT_DIR=str(REPO), FGVC_VENV=str(Path(sys.executable).parent.parent),
               FGVC_STORAGE=str(tmp / "results"), FGVC_RAY_PORT=str(free_port()),
               FGVC_TOKEN_FILE=str(tmp / "auth" / "token"), FGVC_HOOKS="tests.fault_injection:HOOK")  # step_delay_s
    try:
        yield {"tmp": tmp, "env": env, "space": space}
    finally:
        leftover = end_marked(tmp.name)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not leftover, f"processes the job started are still alive (killed now): {leftover}"


def _run(job: dict[str, Any], name: str, interrupt_after: str | None = None,
         **extra_env: str) -> tuple[int, str, str]:
    """The batch script as SLURM runs it -> (exit status, its output, the token it made).
    With ``interrupt_after``, SLURM's USR1 time-limit warning is sent to the batch shell
    once that text shows in the job's output. Afterwards nothing it started is alive and
    its token file is gone."""
    tmp: Path = job["tmp"]
    log, token_file = tmp / f"{name}.log", tmp / "auth" / "token"
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT), "--space", str(job["space"]), *SEARCH], stdout=out,
                                stderr=subprocess.STDOUT, env={**job["env"], **extra_env}, cwd=tmp,
                                start_new_session=True)
        try:
            wait_for(lambda: token_file.exists() or proc.poll() is not None, 120, "the job's token file")
            token = token_file.read_text() if token_file.exists() else ""
            if interrupt_after:
                wait_for(lambda: interrupt_after in log.read_text() or proc.poll() is not None, 300,
                         f"{interrupt_after!r} in the job's output")
                assert proc.poll() is None, log.read_text()[-3000:]
                proc.send_signal(signal.SIGUSR1)  # `--signal=B:USR1@600`: to the batch shell only
            status = proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert end_marked(tmp.name) == [], "a process of the job outlived the batch script"
    assert not token_file.exists()  # removed with the job's nodes
    return status, log.read_text(), token


def _token_leaks(job: dict[str, Any], token: str, output: str) -> list[str]:
    tmp: Path = job["tmp"]
    assert len(token) == 64
    leaks = [str(p) for p in files_containing(tmp / "results", token)]
    return leaks + [name for name, text in (("job output", output), ("srun calls", (tmp / "slurm.log").read_text()))
                    if token in text]


def test_a_job_stopped_at_its_time_limit_is_requeued_and_resumes(job: dict[str, Any]) -> None:
    tmp: Path = job["tmp"]
    exp = tmp / "results" / f"slurm-{JOB_ID}"

    status, first, token = _run(job, "first", interrupt_after=" epoch 1/2 ")
    assert status == 0, first[-3000:]
    calls = (tmp / "slurm.log").read_text().splitlines()
    assert calls[0] == "scontrol: show hostnames node1,node2"
    head, worker = calls[1], calls[2]
    assert "ray start --head --block" in head and "ray start --block --address=" in worker
    for call in (head, worker):  # every node started with token auth from a private file
        assert "(RAY_AUTH_MODE=token, token file mode 600)" in call
    assert calls[-1] == f"scontrol: requeue {JOB_ID}"
    assert "search interrupted (Ctrl-C)" in first and "run_search.py exited with status 130" in first
    assert _token_leaks(job, token, first) == []

    status, second, token = _run(job, "second", SLURM_RESTART_COUNT="1")  # the requeued job: same id and script
    assert status == 0, second[-3000:]
    assert f"continuing {exp} (restart 1)" in second and f"[search] resuming {exp}" in second
    assert (tmp / "slurm.log").read_text().count(f"scontrol: requeue {JOB_ID}") == 1
    board = (exp / "leaderboard.csv").read_text()
    assert board.count(",completed") == 2, board
    starts = [json.loads(line) for f in (exp / "trial_starts").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len({s["node_id"] for s in starts}) >= 2  # trials ran on both nodes
    assert _token_leaks(job, token, second) == []
