"""The KubeRay manifests (cluster/kuberay/), checked as data: no Kubernetes runs here.

* kinds and apiVersions; the RayJob's cluster is exactly the interactive RayCluster;
* token authentication from a Secret that is not in the repository;
* the head runs no trial; every worker group asks Kubernetes for nvidia.com/gpu (requests =
  limits, as Kubernetes requires for extended resources);
* every Ray pod mounts the ReadWriteMany claim of shared-pvc.yaml at the folder the
  search's --storage and --data-root lie in;
* the RayJob's entrypoint is the `bash -c "cd ... && python run_search.py ..."` form Ray's job
  command line needs, cd's into the image's checkout, and its options parse with our CLI:
  `run_search.py ... --dry-run` on them (local paths substituted) exits 0 without Ray.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ray_nodes import REPO
from tests.test_cli import _no_ray_cli

KUBERAY = REPO / "cluster" / "kuberay"


def _one(name: str) -> dict[str, Any]:
    (doc,) = list(yaml.safe_load_all((KUBERAY / name).read_text()))
    return doc


def _pods(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group, pod spec) for the head and every worker group of a RayCluster spec."""
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, group["template"]["spec"]) for name, group in groups]


def _entrypoint() -> tuple[str, list[str]]:
    """(the folder it cd's into, run_search.py's arguments)."""
    argv = shlex.split(_one("rayjob.yaml")["spec"]["entrypoint"])
    assert argv[:2] == ["bash", "-c"] and len(argv) == 3  # one shell command line, as `ray job submit` needs
    cd, run = argv[2].split(" && ")
    assert cd.startswith("cd ")
    python, script, *args = shlex.split(run)
    assert (python, script) == ("python", "run_search.py")
    return cd[3:], args


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_kinds_and_the_job_runs_on_the_interactive_clusters_spec() -> None:
    cluster, job, pvc = _one("raycluster.yaml"), _one("rayjob.yaml"), _one("shared-pvc.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]
    assert cluster["spec"]["rayVersion"] == "2.60.0"
    assert job["spec"]["shutdownAfterJobFinishes"] is True  # no idle GPU pods after the search


def test_token_authentication_from_a_secret_that_is_not_in_the_repository() -> None:
    auth = _one("raycluster.yaml")["spec"]["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"]
    for path in REPO.joinpath("cluster").rglob("*"):
        if path.is_file():
            kinds = [d.get("kind") for d in yaml.safe_load_all(path.read_text())
                     if isinstance(d, dict)] if path.suffix == ".yaml" else []
            assert "Secret" not in kinds, f"{path} holds a Secret: the token must never be committed"


def test_the_head_runs_no_trial_and_workers_ask_for_gpus() -> None:
    spec = _one("raycluster.yaml")["spec"]
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0", "num-gpus": "0"}
    pods = dict(_pods(spec))
    for container in pods.pop("head")["containers"]:
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert pods  # at least one worker group
    for pod in pods.values():
        for container in pod["containers"]:
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert int(limits["nvidia.com/gpu"]) >= 1 and requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))


def test_every_pod_mounts_the_shared_claim_where_results_and_data_live() -> None:
    claim = _one("shared-pvc.yaml")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod writes checkpoints into it
    _, args = _entrypoint()
    storage, data_root = Path(_option(args, "--storage")), Path(_option(args, "--data-root"))
    for group, pod in _pods(_one("raycluster.yaml")["spec"]):
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
            shared = [n for n in mounts if volumes[n].get("persistentVolumeClaim", {}).get("claimName")
                      == claim["metadata"]["name"]]
            assert len(shared) == 1, group
            assert storage.is_relative_to(mounts[shared[0]]) and data_root.is_relative_to(mounts[shared[0]]), group


def test_the_entrypoint_runs_our_cli_with_options_it_accepts(tmp_path: Path) -> None:
    folder, args = _entrypoint()
    head = _one("raycluster.yaml")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert folder == head["workingDir"]  # where the Dockerfile puts the checkout
    dockerfile = (KUBERAY / "Dockerfile").read_text()
    assert f"WORKDIR {folder}\n" in dockerfile and "FROM rayproject/ray:2.60.0-" in dockerfile
    assert _option(args, "--address") == "auto"
    assert _option(args, "--name") == _one("rayjob.yaml")["metadata"]["name"]
    workers = [c for g in _one("raycluster.yaml")["spec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    for container in workers:  # one trial fits in a worker pod
        assert float(_option(args, "--gpus-per-trial")) <= int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert float(_option(args, "--cpus-per-trial")) <= float(container["resources"]["limits"]["cpu"])
    local = list(args)
    local[local.index("--storage") + 1] = str(tmp_path / "results")
    local[local.index("--data-root") + 1] = str(tmp_path)
    done = _no_ray_cli([*local, "--dry-run"], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "dry run: nothing started" in done.stdout


@pytest.mark.parametrize("bad", ["--gpus-per-trail", "--address"])
def test_the_cli_check_can_fail(tmp_path: Path, bad: str) -> None:
    """A misspelt option, or one missing its value, exits 2: the check above is not vacuous."""
    done = _no_ray_cli(["--space", "gholm", "--storage", str(tmp_path), bad, "--dry-run"], tmp_path)
    assert done.returncode == 2
