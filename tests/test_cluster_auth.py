"""Nobody without the token gets in: a real two-node Ray cluster on this machine with token
authentication, as every launcher starts it (the token file made by cluster/new-token.sh,
RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH on every node).

* the token file is made once, mode 0600, and the script that makes it never prints it;
* the search runs through the Ray Jobs command documented in docs/cluster.md: Ray's own job
  command line turns it into the entrypoint string, which is run as the job supervisor runs
  it (``/bin/sh -c``, RAY_ADDRESS set) and must succeed with trials on both nodes. The job
  server itself needs ray[default]'s aiohttp, which is not installed here, so the HTTP hop
  is the one part not exercised;
* the token string appears in no file of the search folder (records, plots, offline W&B),
  even with the token in the driver's environment (RAY_AUTH_TOKEN, as KubeRay passes it);
* a client with a wrong token, or with none, is refused, and the task it tries to run (it
  would create a marker file) never runs; the same client with the right token does run it;
* every process the cluster started is gone afterwards.
"""
from __future__ import annotations

import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.ray_nodes import REPO, end_marked, files_containing, free_port, node_env, short_tmpdir, wait_for
from tests.test_cli import TINY

# Joins the cluster, then runs one task that creates the marker file.
CLIENT = """
import sys
from pathlib import Path
import ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
except Exception as err:
    print("REFUSED", type(err).__name__, err)
    sys.exit(3)
touch = ray.remote(num_cpus=0)(lambda path: Path(path).write_text("ran"))
ray.get(touch.remote(sys.argv[2]), timeout=120)
print("RAN on", sum(n["Alive"] for n in ray.nodes()), "nodes")
"""

# Waits until the head and the worker are both alive.
BOTH_NODES = """
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
while sum(n["Alive"] for n in ray.nodes()) < 2:
    time.sleep(0.5)
"""


@dataclass
class AuthCluster:
    address: str
    env: dict[str, str]
    token: str
    tmp: Path
    new_token_output: str


def _start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(["ray", "start", "--block", "--num-cpus=1", "--disable-usage-stats",
                                 f"--dashboard-agent-listen-port={free_port()}", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _client(cluster: AuthCluster, marker: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**cluster.env, **env}
    full = {k: v for k, v in full.items() if v is not None and v != ""}
    return subprocess.run([sys.executable, "-c", CLIENT, cluster.address, str(marker)], capture_output=True,
                          text=True, env=full, timeout=180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[AuthCluster]:
    tmp = short_tmpdir("fgvc-auth-")
    token_file = tmp / "token"
    made = subprocess.run([str(REPO / "cluster" / "new-token.sh"), str(token_file)], capture_output=True, text=True,
                          check=True)
    env = node_env(tmp.name, tmp / "ray", token_file)
    (tmp / "ray").mkdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(_start_node(["--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                  "--include-dashboard=false"], env, tmp / "head.log"))
        wait_for(lambda: subprocess.run(["ray", "status", f"--address={address}"], env=env,
                                        capture_output=True).returncode == 0, 120, "the Ray head")
        nodes.append(_start_node([f"--address={address}"], env, tmp / "worker.log"))
        subprocess.run([sys.executable, "-c", BOTH_NODES, address], env=env, check=True, timeout=180)
        yield AuthCluster(address, env, token_file.read_text(), tmp, made.stdout + made.stderr)
    finally:
        for node in reversed(nodes):
            node.terminate()  # `ray start --block` drains and stops its node's processes
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
        leftover = end_marked(tmp.name)
        shutil.rmtree(tmp, ignore_errors=True)
        assert not leftover, f"processes of the test cluster still alive after it stopped (killed now): {leftover}"


def test_the_token_file_is_private_and_never_printed(cluster: AuthCluster) -> None:
    token_file = cluster.tmp / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}", cluster.token)  # 256 random bits, as Ray generates them
    assert cluster.new_token_output.strip() == str(token_file)  # the path only
    subprocess.run([str(REPO / "cluster" / "new-token.sh"), str(token_file)], capture_output=True,
                           text=True, check=True)
    assert token_file.read_text() == cluster.token  # made once: a second call keeps it


def _documented_job_command() -> tuple[dict[str, str], str]:
    """The `ray job submit` command of docs/cluster.md, continuation lines joined:
    (the variables set in front of it, the command)."""
    text = (REPO / "docs" / "cluster.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if "ray job submit" in b]
    joined = block.replace("\\\n", "")
    (line,) = [line.strip() for line in joined.splitlines() if "ray job submit" in line]
    prefix, command = line.split("ray job submit", 1)
    return dict(word.split("=", 1) for word in prefix.split()), "ray job submit" + command


def _entrypoint_from_rays_job_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What Ray's own `ray job submit` command line sends to the job server."""
    from click.testing import CliRunner

    import ray.dashboard.modules.job.cli as job_cli
    from ray.scripts.scripts import cli

    sent: dict[str, Any] = {}

    class Recorder:
        def submit_job(self, **kwargs: Any) -> str:
            sent.update(kwargs)
            return kwargs["submission_id"]

        def get_version(self) -> str:
            return "1"

    def client(address: str, *args: Any, **kwargs: Any) -> Recorder:
        sent["address"] = address
        return Recorder()

    monkeypatch.setattr(job_cli, "_get_sdk_client", client)
    done = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return sent


def test_the_documented_ray_jobs_command_runs_the_search_with_the_token(
        cluster: AuthCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = cluster.tmp
    space, storage, home = tmp / "tiny.yaml", tmp / "results", tmp / "home"
    space.write_text(yaml.safe_dump(TINY, sort_keys=False))
    home.mkdir()
    (home / "fgvc-search").symlink_to(REPO)  # the checkout where `ray up` puts it: ~/fgvc-search
    variables, command = _documented_job_command()
    assert variables == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "~/.ray/fgvc-cluster-token"}
    # With those variables (the shell expands ~), Ray's job client sends the token.
    (home / ".ray").mkdir()
    laptop_token = home / ".ray" / "fgvc-cluster-token"
    shutil.copy(cluster.tmp / "token", laptop_token)
    headers = subprocess.run(
        [sys.executable, "-c", "from ray._private.authentication.http_token_authentication import "
         "get_auth_headers_if_auth_enabled as h; print(h({}))"], capture_output=True, text=True, check=True,
        env={**cluster.env, "HOME": str(home), "RAY_AUTH_MODE": variables["RAY_AUTH_MODE"],
             "RAY_AUTH_TOKEN_PATH": variables["RAY_AUTH_TOKEN_PATH"].replace("~", str(home), 1)})
    assert f"Bearer {cluster.token}" in headers.stdout
    tiny = "--gpus-per-trial 0 --cpus-per-trial 1 --num-samples 2 --max-epochs 1 --max-concurrent 2 " \
           "--wandb offline --no-smoke"
    for documented, here in {"--space gholm": f"--space {space}", "--data cub --data-root /data/CUB_200_2011":
                             "--data synthetic", "--storage s3://my-bucket/fgvc-searches": f"--storage {storage}",
                             "--gpus-per-trial 1 --cpus-per-trial 4": tiny}.items():
        assert documented in command, f"docs/cluster.md's job command changed: {documented!r} not in {command!r}"
        command = command.replace(documented, here)
    argv = shlex.split(command)
    assert argv[:3] == ["ray", "job", "submit"] and argv[argv.index("--") + 1:][:2] == ["bash", "-c"]
    sent = _entrypoint_from_rays_job_cli(argv[1:], monkeypatch)
    assert sent["address"] == "http://localhost:8265" and sent["submission_id"] == "gholm-cub-1"
    # The job supervisor runs the entrypoint string with /bin/sh -c and RAY_ADDRESS set to the cluster.
    # RAY_AUTH_TOKEN too, as KubeRay sets it in every container: the driver holds the token in its
    # environment, and still writes it nowhere.
    env = {**cluster.env, "HOME": str(home), "RAY_ADDRESS": cluster.address, "RAY_AUTH_TOKEN": cluster.token}
    job = subprocess.run(sent["entrypoint"], shell=True, capture_output=True, text=True, env=env, cwd=tmp,
                         timeout=300)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    exp = storage / "gholm-cub-1"
    board = (exp / "leaderboard.csv").read_text()
    assert board.count(",completed") == 2, board
    nodes = {yaml.safe_load(line)["node_id"] for f in (exp / "trial_starts").glob("*.jsonl")
             for line in f.read_text().splitlines()}
    assert len(nodes) == 2  # one trial on each node: the worker joined with the token
    assert list(exp.glob("wandb/offline-run-*"))  # the offline W&B runs are checked below too
    assert files_containing(exp, cluster.token) == []
    assert cluster.token not in job.stdout + job.stderr
    # The form the issue reported: one quoted word after `--` is taken as a program name.
    old = subprocess.run(shlex.join(["cd ~/fgvc-search && python run_search.py --help"]), shell=True,
                         capture_output=True, text=True, env=env)
    assert old.returncode == 127 and "not found" in old.stderr


def test_a_client_with_the_token_runs_a_task(cluster: AuthCluster) -> None:
    marker = cluster.tmp / "ran-with-token"
    done = _client(cluster, marker)
    assert done.returncode == 0 and "RAN on 2 nodes" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("who", ["wrong token", "no token"])
def test_a_client_without_the_token_is_refused_and_nothing_it_sends_runs(cluster: AuthCluster, who: str) -> None:
    marker = cluster.tmp / f"ran-{who.replace(' ', '-')}"
    env = {"RAY_NUM_REDIS_GET_RETRIES": "2"}  # give up after ~2 s instead of retrying for 20 s
    if who == "wrong token":  # RAY_AUTH_TOKEN takes precedence over the token file
        env["RAY_AUTH_TOKEN"] = "0" * 64
    else:
        env.update(RAY_AUTH_MODE="disabled", RAY_AUTH_TOKEN_PATH="")
    done = _client(cluster, marker, **env)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "REFUSED" in done.stdout
    assert "Authentication token is missing or incorrect" in done.stderr
    assert not marker.exists()
