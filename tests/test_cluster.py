"""Beyond one machine: the cluster launcher configs and a real multi-node Ray cluster.

* cluster.yaml (AWS GPU) and cluster-onprem.yaml (provider local) pass Ray's own
  config preparation and schema validation, exactly as ``ray up`` runs them, and
  say what the project needs (head runs no trials, GPU workers autoscale, setup
  installs this checkout with the pinned versions).
* A real two-node local cluster (ray.cluster_utils.Cluster: a head and a node with
  its own resources) runs ``run_search.py --address auto`` with three trials:
  trials run on both nodes; the worker node is SIGKILLed mid-trial and that trial
  continues from its last checkpoint on the head; both healthy trials end
  TERMINATED and no result file or checkpoint is lost.
* In the same search a trial that raises is retried --max-failures times, then
  errored, and the search still completes.
* The shared-storage check finds a node that sees another folder.

The trials drive the fault-injection test hook (``simulate_oom_above_batch``):
``FGVC_HOOKS`` is set before the cluster's nodes start, so their workers
install it, and in the driver's environment (which Ray also ships to the workers).

The cluster tests take ~2-3 minutes on 2 busy cores; every process they start
is ended by the fixture's finalizer, by pid, even when a test fails.
"""
from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = ("cluster.yaml", "cluster-onprem.yaml")
HOOKS = {"FGVC_HOOKS": "tests.fault_injection:HOOK"}
PINNED = ("torch", "torchvision", "timm", "ray", "optuna", "wandb")


# ----------------------------------------------------------------- launcher configs
def _ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` validates: defaults merged, local node type built, min/max filled."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return prepared


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


def _pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_schema_as_ray_up_checks_it(name: str) -> None:
    import jsonschema

    raw = _load(name)
    jsonschema.validate(raw, _ray_schema())  # the file as written: no unknown or mistyped keys
    prepared = _prepared(raw)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    assert prepared["cluster_synced_files"] == []  # filled by Ray's defaults, as in `ray up`


def test_schema_validation_rejects_broken_configs() -> None:
    """The checks above can fail: typos and impossible bounds are caught."""
    import jsonschema

    raw = _load("cluster.yaml")
    typo = copy.deepcopy(raw)
    typo["max_worker"] = typo.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(typo, _ray_schema())
    fractional = copy.deepcopy(raw)
    fractional["available_node_types"]["gpu_1x_a10g"]["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        _prepared(fractional)
    too_many = copy.deepcopy(raw)
    too_many["available_node_types"]["gpu_1x_a10g"]["min_workers"] = too_many["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        _prepared(too_many)


def test_aws_config_autoscales_gpu_workers_and_keeps_trials_off_the_head() -> None:
    cfg = _prepared(_load("cluster.yaml"))
    assert cfg["provider"]["type"] == "aws"
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and head["resources"].get("GPU", 0) == 0
    assert head["max_workers"] == 0
    assert any("--num-cpus=0" in c and "--head" in c for c in cfg["head_start_ray_commands"])
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert workers and all(v["resources"]["GPU"] >= 1 and v["resources"]["CPU"] >= 1 for v in workers.values())
    for node_type in workers.values():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= cfg["max_workers"]
        assert node_type["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families
        assert node_type["node_config"]["IamInstanceProfile"]  # S3 access for --storage s3://
    assert sum(v["min_workers"] for v in workers.values()) == 0  # no GPU is billed while idle
    assert cfg["idle_timeout_minutes"] > 0


def test_onprem_config_joins_every_listed_machine() -> None:
    raw = _load("cluster-onprem.yaml")
    cfg = _prepared(raw)
    ips = raw["provider"]["worker_ips"]
    (node_type,) = cfg["available_node_types"].values()
    assert cfg["provider"]["type"] == "local" and raw["provider"]["head_ip"] not in ips
    assert node_type["min_workers"] == node_type["max_workers"] == len(ips) == cfg["max_workers"]
    assert any("--num-cpus=0" in c and "--num-gpus=0" in c for c in cfg["head_start_ray_commands"])


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_installs_this_checkout_with_the_pinned_versions(name: str) -> None:
    import ray

    cfg = _prepared(_load(name))
    pins = _pins()
    assert {p: pins.get(p) for p in PINNED} == {"torch": "2.14.1", "torchvision": "0.29.1", "timm": "1.0.31",
                                                 "ray": "2.60.0", "optuna": "5.0.0", "wandb": "0.31.0"}
    assert ray.__version__ == pins["ray"]  # the cluster runs the Ray these configs were validated with
    # the checkout is copied to every node and installed editable from there
    ((remote, local),) = [(r, l) for r, l in cfg["file_mounts"].items() if not l.startswith("~")]
    assert (REPO / local).resolve() == REPO
    for commands in (cfg["head_setup_commands"], cfg["worker_setup_commands"]):
        install = [c for c in commands if "pip install" in c and " -e ." in c]
        assert len(install) == 1 and f"cd {remote}" in install[0]
        # ray[default] (dashboard, autoscaler) at exactly the pinned Ray version, nothing unpinned
        assert re.search(r'"ray\[default\]==(\S+?)"', install[0]).group(1) == pins["ray"]
    assert ".venv" in cfg["rsync_exclude"] and "results" in cfg["rsync_exclude"]
    assert all("unset OMP_NUM_THREADS" in c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
               if "ray start" in c)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_node_gets_the_token_and_ray_requires_it(name: str) -> None:
    cfg = _prepared(_load(name))
    made_by_script = re.search(r'file="\$\{1:-\$HOME/([^}]+)\}"', (REPO / "cluster" / "new-token.sh").read_text())
    assert cfg["file_mounts"]["~/.ray/auth_token"] == f"~/{made_by_script.group(1)}"  # Ray's default token path
    starts = [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        assert "export RAY_AUTH_MODE=token;" in command.split("ray start")[0]
    setup = " && ".join(cfg["setup_commands"])
    assert "chmod 600 ~/.ray/auth_token" in setup  # and Ray's commands run with RAY_AUTH_MODE=token:
    assert "echo 'export RAY_AUTH_MODE=token' >> ~/.bashrc" in setup  # ray exec/submit/attach source ~/.bashrc


def test_ray_up_stops_before_launching_anything_without_the_token_file(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`ray up` hashes every file mount before it starts a node; a missing token file ends it there."""
    from ray.autoscaler._private.util import hash_runtime_conf

    cfg = _prepared(_load("cluster.yaml"))
    token_mount = {"~/.ray/auth_token": cfg["file_mounts"]["~/.ray/auth_token"]}
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="fgvc-cluster-token"):
        hash_runtime_conf(token_mount, None, {**cfg, "marker": str(tmp_path)})
    made = subprocess.run(["bash", str(REPO / "cluster" / "new-token.sh")], capture_output=True, text=True,
                          check=True, env={**os.environ, "HOME": str(tmp_path)})
    token = tmp_path / ".ray" / "fgvc-cluster-token"
    assert made.stdout.strip() == str(token) and (token.stat().st_mode & 0o777) == 0o600
    hash_runtime_conf(token_mount, None, {**cfg, "marker": str(tmp_path) + "/again"})


def test_onprem_checks_the_shared_folder_first_and_names_rsync() -> None:
    raw_text = (REPO / "cluster-onprem.yaml").read_text()
    setup = _prepared(_load("cluster-onprem.yaml"))["setup_commands"]
    assert setup[0].startswith("test -d /mnt/shared ||")  # seconds, before the multi-GB install
    assert all("pip install" not in c for c in setup[:1]) and any("pip install" in c for c in setup[1:])
    requirements = raw_text.split("# Requirements on every machine:")[1].split("\n\n")[0]
    assert "rsync" in requirements and "`ray up` on needs rsync" in requirements


# ----------------------------------------------------------------- --max-failures
def test_max_failures_defaults_above_zero_and_rejects_bad_values() -> None:
    from search.plan import OptionError, resolve_plan
    from search.spaces import load_space

    space = load_space("baseline")
    base = {"space": "baseline", "name": "x", "storage": "/tmp/nowhere"}
    plan, _ = resolve_plan(base, space, gpus=0, cpus=2)
    assert plan.max_failures == 3
    assert resolve_plan({**base, "max_failures": 0}, space, gpus=0, cpus=2)[0].max_failures == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(OptionError, match="--max-failures.*Fix"):
            resolve_plan({**base, "max_failures": bad}, space, gpus=0, cpus=2)


def test_a_cluster_search_on_real_data_asks_for_gpus_even_from_a_cpu_only_head(tmp_path: Path) -> None:
    from search.plan import resolve_plan
    from search.spaces import load_space

    space = load_space("baseline")
    base = {"space": "baseline", "name": "x", "storage": "/tmp/nowhere", "data": "cub", "data_root": str(tmp_path)}
    assert resolve_plan(base, space, gpus=0, cpus=8)[0].gpus_per_trial == 0.0  # this machine alone: CPU
    on_cluster, _ = resolve_plan({**base, "address": "auto"}, space, gpus=0, cpus=8)
    assert on_cluster.gpus_per_trial == 1.0 and on_cluster.address == "auto"
    explicit, _ = resolve_plan({**base, "address": "auto", "gpus_per_trial": 0.5}, space, gpus=0, cpus=8)
    assert explicit.gpus_per_trial == 0.5
    demo, _ = resolve_plan({**base, "address": "auto", "data": "synthetic", "data_root": None}, space, gpus=0, cpus=2)
    assert demo.gpus_per_trial == 0.0  # the synthetic CPU demo stays on CPUs


# ----------------------------------------------------------------- a real local multi-node cluster
# Three trials, two at a time (one CPU on each node): the two healthy `first` points start
# together, one on each node; the third point "runs out of memory" down to micro-batch 1 in
# its first epoch, every time it runs. Grace period = max epochs: ASHA never stops a trial.
EPOCHS, MAX_FAILURES = 8, 1
SPACE = {
    "description": "tiny baseline space for the cluster tests",
    "fixed": {"method": "baseline", "backbone": "test_convnext", "pretrained": False, "opt": "adamw",
              "sched": "constant", "batch_size": 8, "synthetic_classes": 4, "synthetic_per_class": 12,
              "synthetic_image_size": 48, "img_size": 32, "resize_size": 40, "max_train_batches": 2,
              "max_eval_batches": 1, "device": "cpu", "step_delay_s": 0.4},  # ~1 s an epoch: the kill lands mid-trial
    "params": {"lr": {"type": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
               "simulate_oom_above_batch": {"type": "choice", "values": [None, 0]}},
    "first": [{"lr": 1.0e-3, "simulate_oom_above_batch": None},
              {"lr": 2.0e-3, "simulate_oom_above_batch": None},
              {"lr": 1.0e-3, "simulate_oom_above_batch": 0}],
}
# Fast failure detection: a killed node is declared dead after ~1.5 s instead of ~15-30 s.
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                 "health_check_failure_threshold": 3}


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (from /proc; psutil is not a dependency)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class LocalCluster:
    """A head (1 logical CPU) and one worker node (1 CPU + resource worker_a),
    both real raylets on this machine sharing its filesystem, plus the drivers
    started against it. ``close`` ends all of it, by pid."""

    def __init__(self) -> None:
        from ray._private.utils import get_ray_address_file
        from ray.cluster_utils import Cluster

        self._before = _children(os.getpid())  # never touch what this process started before
        self._seen: set[int] = set()
        address_file = Path(get_ray_address_file(None))
        self._address_file = (address_file, address_file.read_text() if address_file.exists() else None)
        self.drivers: list[tuple[subprocess.Popen, Any]] = []
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "_system_config": SYSTEM_CONFIG})
        try:
            self.head = self.cluster.head_node
            self.worker = self.cluster.add_node(num_cpus=1, resources={"worker_a": 1})
            self.cluster.wait_for_nodes()
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        return self.cluster.address

    def start_search(self, args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
        """run_search.py --address auto, as `ray job submit` runs it: RAY_ADDRESS names the cluster."""
        env = {**os.environ, "RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline",
               **HOOKS}
        out = open(log, "w")
        proc = subprocess.Popen([sys.executable, str(REPO / "run_search.py"), "--address", "auto", *args],
                                stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        self.drivers.append((proc, out))
        return proc

    def _remember(self) -> None:
        """Processes started for this cluster (nodes, Ray workers, drivers); Ray
        workers of a killed raylet are re-parented, so they are noted before."""
        self._seen |= _children(os.getpid()) - self._before

    def kill_worker_node(self) -> None:
        self._remember()
        self.cluster.remove_node(self.worker, allow_graceful=False)  # SIGKILL raylet, store, workers

    def close(self) -> list[int]:
        """Stop drivers and nodes; returns pids that had to be killed afterwards."""
        self._remember()
        for proc, out in self.drivers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            out.close()
        started = self._seen
        try:
            self.cluster.shutdown()
        finally:
            path, previous = self._address_file
            if previous is not None:  # Cluster.shutdown removed another cluster's address file
                path.write_text(previous)
        leftover = []
        deadline = time.time() + 20
        while time.time() < deadline:
            leftover = [pid for pid in started if _alive(pid)]
            if not leftover:
                break
            time.sleep(0.5)
        for pid in leftover:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return leftover


@dataclass
class KilledSearch:
    exp: Path
    log: Path
    returncode: int
    head_id: str
    worker_id: str
    victim: str  # the trial that was running on the worker node when it was killed
    killed_after: int  # its last epoch the driver had seen at that moment


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    saved = {k: os.environ.get(k) for k in HOOKS}
    os.environ.update(HOOKS)  # the nodes' processes, and so their workers, inherit it
    try:
        local = LocalCluster()
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    try:
        yield local
    finally:
        leftover = local.close()
        assert not leftover, f"processes still alive after the cluster stopped (killed now): {leftover}"


@pytest.fixture(scope="module")
def killed_search(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> KilledSearch:
    """run_search.py --address auto on the two-node cluster; once a trial on the
    worker node has reported 2 epochs (each with a checkpoint) to the driver, that
    node is SIGKILLed: raylet, object store and the trial's process."""
    tmp = tmp_path_factory.mktemp("killed")
    space_file = tmp / "tiny_baseline.yaml"
    space_file.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    storage = tmp / "shared" / "searches"  # the "NFS" folder: every node sees this machine's disk
    exp, log = storage / "killnode", tmp / "driver.log"
    args = ["--space", str(space_file), "--storage", str(storage), "--name", "killnode", "--num-samples", "3",
            "--max-epochs", str(EPOCHS), "--grace-period", str(EPOCHS), "--max-concurrent", "2",
            "--cpus-per-trial", "1", "--max-failures", str(MAX_FAILURES), "--wandb", "off", "--no-test",
            "--no-smoke", "--seed", "0", "--data-root", str(tmp / "shared" / "data")]
    head_id, worker_id = cluster.head.node_id, cluster.worker.node_id
    driver = cluster.start_search(args, tmp, log)
    victim, killed_after = "", 0
    deadline = time.time() + 150
    while time.time() < deadline and driver.poll() is None and not victim:
        for trial_id, lines in _starts(exp).items():
            rows = _rows(exp / f"trial_{trial_id}")
            if lines[0]["node_id"] == worker_id and rows and rows[-1]["epoch"] >= 2:
                killed_after = rows[-1]["epoch"]
                cluster.kill_worker_node()
                victim = trial_id
                break
        time.sleep(0.1)
    assert victim, f"no trial reached epoch 2 on the worker node:\n{_tail(log)}"
    try:
        returncode = driver.wait(timeout=200)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the search did not finish after the node was killed:\n{_tail(log)}")
    return KilledSearch(exp, log, returncode, head_id, worker_id, victim, killed_after)


def _rows(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # the driver is appending this line right now
            pass
    return rows


def _starts(exp: Path) -> dict[str, list[dict[str, Any]]]:
    """trial id -> one line per (re)start of the trial, written by the trainable itself."""
    out = {}
    for path in (exp / "trial_starts").glob("*.jsonl"):
        try:
            out[path.stem] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except ValueError:  # being written right now
            pass
    return {k: v for k, v in out.items() if v}


def _experiment_statuses(exp: Path) -> dict[str, str]:
    (state,) = sorted(exp.glob("experiment_state-*.json"))[-1:]
    out = {}
    for trial_json, _runtime in json.loads(state.read_text())["trial_data"]:
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        out[trial["trial_id"]] = trial["status"]
    return out


def _params(exp: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name.removeprefix("trial_"): json.loads(p.read_text()) for p in exp.glob("trial_*/params.json")}


def _epochs_done(state: dict[str, Any]) -> int:
    """Epochs completed in a trial checkpoint (older checkpoints kept the 0-based last epoch)."""
    return int(state["epochs_done"]) if "epochs_done" in state else int(state["epoch"]) + 1


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text()[-n:] if path.exists() else "(no log)"


def _raising(run: KilledSearch) -> str:
    (bad,) = [t for t, p in _params(run.exp).items() if p.get("simulate_oom_above_batch") == 0]
    return bad


def test_storage_check_catches_a_node_that_sees_another_folder(cluster: LocalCluster, tmp_path: Path) -> None:
    import ray

    from search.cluster import StorageNotShared, check_shared_storage

    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    try:
        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert alive == {cluster.head.node_id, cluster.worker.node_id}  # runs before the worker is killed
        assert check_shared_storage(str(tmp_path / "shared")) == sorted(alive)  # same machine: shared
        assert not list((tmp_path / "shared").iterdir())  # the probe leaves nothing behind
        # a node that reads another token plays one that has its own folder of that name
        with pytest.raises(StorageNotShared, match="NFS.*s3://") as err:
            check_shared_storage(str(tmp_path / "shared"), expected_token="written-by-someone-else")
        assert all(node[:12] in str(err.value) for node in alive)
        assert check_shared_storage("s3://bucket/searches") == []  # URIs are reachable by design
    finally:
        ray.shutdown()


def test_search_on_a_cluster_completes_with_every_trial_accounted_for(killed_search: KilledSearch) -> None:
    run = killed_search
    assert run.returncode == 0, _tail(run.log)
    statuses = _experiment_statuses(run.exp)
    assert len(statuses) == 3 and set(_params(run.exp)) == set(statuses)  # none lost
    bad = _raising(run)
    assert {t: s for t, s in statuses.items() if t != bad} == {t: "TERMINATED" for t in statuses if t != bad}
    assert statuses[bad] == "ERROR"
    board = (run.exp / "leaderboard.csv").read_text()
    assert all(f"{t}," in board for t in statuses)
    assert board.count(",completed") == 2 and board.count(",errored") == 1, board


def test_trials_ran_on_both_nodes(killed_search: KilledSearch) -> None:
    run = killed_search
    starts = _starts(run.exp)
    assert {lines[0]["node_id"] for lines in starts.values()} >= {run.head_id, run.worker_id}
    reported = {r["node_id"] for t in starts for r in _rows(run.exp / f"trial_{t}")}
    assert reported == {run.head_id, run.worker_id}


def test_a_trial_whose_node_died_continues_from_its_checkpoint_elsewhere(killed_search: KilledSearch) -> None:
    run = killed_search
    assert run.killed_after < EPOCHS, "the trial had finished before its node was killed"
    first, again = _starts(run.exp)[run.victim]  # exactly one restart
    assert (first["kind"], first["node_id"], first["start_epoch"]) == ("scratch", run.worker_id, 0)
    assert again["kind"] == "resume" and again["node_id"] == run.head_id
    resumed_at = again["start_epoch"]  # epochs already done in the checkpoint it resumed from
    assert 2 <= resumed_at < EPOCHS
    rows = _rows(run.exp / f"trial_{run.victim}")
    before = [r for r in rows if r["node_id"] == run.worker_id]
    after = [r for r in rows if r["node_id"] == run.head_id]
    assert [r["epoch"] for r in before] == list(range(1, resumed_at + 1))
    assert all(r["resumed_from_epoch"] == 0 for r in before)
    assert [r["epoch"] for r in after] == list(range(resumed_at + 1, EPOCHS + 1))  # nothing redone, nothing skipped
    assert all(r["resumed_from_epoch"] == resumed_at for r in after)


def test_a_raising_trial_is_retried_max_failures_times_then_errored(killed_search: KilledSearch) -> None:
    run = killed_search
    bad = _raising(run)
    starts = _starts(run.exp)[bad]
    assert len(starts) == 1 + MAX_FAILURES and all(s["start_epoch"] == 0 for s in starts)
    assert _rows(run.exp / f"trial_{bad}") == []  # it never finished an epoch
    error = (run.exp / f"trial_{bad}" / "error.txt").read_text()  # Ray keeps the traceback with the trial
    assert "out of memory even with micro-batch 1" in error


def test_no_result_or_checkpoint_is_lost(killed_search: KilledSearch) -> None:
    import torch

    run = killed_search
    bad = _raising(run)
    for trial_id in _experiment_statuses(run.exp):
        if trial_id == bad:
            continue
        folder = run.exp / f"trial_{trial_id}"
        for needed in ("result.json", "progress.csv", "params.json"):
            assert (folder / needed).is_file(), f"{folder / needed} missing"
        assert {r["epoch"] for r in _rows(folder)} == set(range(1, EPOCHS + 1)), trial_id
        checkpoints = sorted(folder.glob("checkpoint_*"))
        assert checkpoints, f"{folder} has no checkpoint"
        states = [torch.load(c / "state.pt", map_location="cpu", weights_only=True) for c in checkpoints]
        last = max(states, key=_epochs_done)
        assert _epochs_done(last) == EPOCHS  # the last epoch's weights are there
        assert [h["epoch"] for h in json.loads(last["history"])] == list(range(1, EPOCHS + 1))
        assert all((c / "trial_config.yaml").is_file() for c in checkpoints)
    assert (run.exp / "search_plan.json").is_file() and (run.exp / "best_config.yaml").is_file()
