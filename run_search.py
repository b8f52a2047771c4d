"""Hyperparameter search for FGVC methods with Ray Tune + Optuna + ASHA.

    python run_search.py --space gholm                 # CPU demo on synthetic data (minutes)
    python run_search.py --space gholm --data cub --data-root /data/CUB_200_2011 --gpus-per-trial 0.5
    python run_search.py --space gholm --name my-search --resume   # continue an interrupted search

Every option is checked before Ray starts; results go to <storage>/<name>.
"""
from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search import storage  # noqa: E402
from search.plan import PLAN_FILE, OptionError, SearchPlan, apply_plan, describe_plan, resolve_plan  # noqa: E402
from search.spaces import SpaceError, load_space, parse_overrides  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python run_search.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--space", help="a space name in spaces/ (gholm, fgvc, ...), a YAML path, or A,B for a union")
    p.add_argument("--data", help="synthetic (default) | cub | aircraft | cars | dogs | imagefolder")
    p.add_argument("--data-root", dest="data_root", help="dataset folder (cache folder for synthetic)")
    p.add_argument("--num-samples", dest="num_samples", type=int, help="trials to run (CPU demo: 8)")
    p.add_argument("--max-epochs", dest="max_epochs", type=int, help="epochs of a trial that ASHA never stops (CPU demo: 6; else the space's epochs)")
    p.add_argument("--grace-period", dest="grace_period", type=int, help="epochs before ASHA may stop a trial (CPU demo: 1)")
    p.add_argument("--reduction-factor", dest="reduction_factor", type=float, help="ASHA keeps 1/this of the trials at each rung (CPU demo: 2)")
    p.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float, help="GPUs per trial, fractions share a GPU (default 1 if a GPU is visible, else 0)")
    p.add_argument("--gpu-memory-gb", dest="gpu_memory_gb", type=float,
                   help="memory of one worker GPU, to check --gpus-per-trial packing (default: the local GPU's)")
    p.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float, help="CPUs per trial (CPU demo: 1)")
    p.add_argument("--max-concurrent", dest="max_concurrent", type=int, help="trials at once (CPU demo: 2; default: as resources allow)")
    p.add_argument("--storage", help="results root: a local folder (default ./results) or a URI such as s3://bucket/path")
    p.add_argument("--name", help="search name = folder under --storage (default <space>-<date>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted search --name (finished trials are kept)")
    p.add_argument("--address", help="join an existing Ray cluster (ray.init(address=...)) instead of a private local one")
    p.add_argument("--max-failures", dest="max_failures", type=int,
                   help="restarts of a trial whose worker or node dies (or that raises), each from its last checkpoint (default 3)")
    p.add_argument("--dashboard", nargs="?", const="127.0.0.1", default=None, metavar="HOST",
                   help="start Ray's dashboard for the local Ray, bound to localhost (or to HOST if given); needs ray[default]")
    p.add_argument("--wandb", choices=("online", "offline", "off"), help="W&B logging (default: online if logged in, else offline)")
    p.add_argument("--seed", type=int, help="seed of the TPE sampler and of every trial's training (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config key for all trials (repeatable)")
    p.add_argument("--smoke", action=argparse.BooleanOptionalAction, default=None,
                   help="apply the space's smoke section (default: on for synthetic data without a GPU)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the space and the plan, start nothing")
    p.add_argument("--no-test", dest="no_test", action="store_true", help="skip the single test-split evaluation at the end")
    return p.parse_args(argv)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def prepare(args: argparse.Namespace) -> tuple[SearchPlan, Any]:
    """Options -> (plan, space with all overrides); raises OptionError/SpaceError."""
    if args.resume:
        return prepare_resume(args)
    if not args.space:
        raise OptionError("--space is required. Fix: e.g. --space gholm (see spaces/)")
    try:
        space = load_space(args.space)
    except SpaceError as err:
        raise OptionError(f"--space: {err}") from None
    try:
        overrides = parse_overrides(args.set)
    except SpaceError as err:
        raise OptionError(str(err)) from None
    opts = {k: getattr(args, k) for k in ("space", "data", "data_root", "num_samples", "max_epochs", "grace_period",
                                          "reduction_factor", "gpus_per_trial", "cpus_per_trial", "max_concurrent",
                                          "storage", "name", "address", "wandb", "seed", "smoke", "max_failures", "dashboard")}
    opts["overrides"] = overrides
    plan, applied = resolve_plan(opts, space)
    note = check_gpu_packing(plan, applied, args.gpu_memory_gb)
    if note:
        print(f"note: {note}")
    if storage.exists(plan.experiment_path):
        raise OptionError(f"results folder {plan.experiment_path} already exists; it is never overwritten. "
                          f"Fix: choose a new --name, or add --resume to continue that search")
    return plan, applied


def check_gpu_packing(plan: SearchPlan, applied: Any, memory_gb: float | None) -> str | None:
    """--gpus-per-trial below 1 must leave every trial enough GPU memory."""
    from search.packing import check_packing, gpu_memory_gb

    if memory_gb is not None and memory_gb <= 0:
        raise OptionError(f"--gpu-memory-gb must be positive, got {memory_gb!r}. Fix: e.g. --gpu-memory-gb 80")
    try:
        return check_packing(applied, plan.gpus_per_trial, memory_gb or gpu_memory_gb())
    except ValueError as err:
        raise OptionError(str(err)) from None


def prepare_resume(args: argparse.Namespace) -> tuple[SearchPlan, Any]:
    if not args.name:
        raise OptionError("--resume needs --name of the search to continue. Fix: --name <folder under --storage>")
    root = args.storage or "results"
    root = root if "://" in root else str(Path(root).expanduser().resolve())
    exp = f"{root.rstrip('/')}/{args.name}"
    if not storage.exists(f"{exp}/{PLAN_FILE}"):
        raise OptionError(f"--resume: {exp} holds no search started by run_search.py (no {PLAN_FILE}). "
                          f"Fix: check --name/--storage, or start a new search without --resume")
    plan = SearchPlan.from_json(storage.read_text(f"{exp}/{PLAN_FILE}"))
    plan.storage, plan.name = root, args.name  # the folder may have moved
    if args.address:
        plan.address = args.address
    ignored = [o for o in ("space", "num_samples", "max_epochs", "grace_period", "reduction_factor", "gpus_per_trial",
                           "cpus_per_trial", "max_concurrent", "seed", "data", "wandb", "max_failures")
               if getattr(args, o) is not None]
    if ignored or args.set:
        print(f"note: --resume continues with the options saved in {PLAN_FILE}; ignored: "
              + ", ".join([f"--{o.replace('_', '-')}" for o in ignored] + ["--set"] * bool(args.set)))
    try:
        space = apply_plan(plan, load_space(plan.space))
    except SpaceError as err:
        raise OptionError(f"--resume: the space {plan.space!r} no longer loads: {err}") from None
    return plan, space


def check_data(space: Any) -> None:
    """Fail before Ray if the dataset layout cannot be read (images are not
    decoded here: every trial checks them); writes the synthetic cache once
    here instead of racing in every trial."""
    from fgmodels.config import resolve_config
    from fgmodels.data import load_raw

    cfg = space.first[0] if space.first else space.member(space.methods[0]).fixed
    try:
        load_raw(resolve_config(dict(cfg)))
    except Exception as err:
        raise OptionError(f"--data/--data-root: the dataset cannot be loaded: {err}") from None


def check_cluster(plan: SearchPlan) -> None:
    """Join the cluster now and make sure every node sees --storage, before
    anything is written there (a later run with the fixed option starts clean)."""
    from search.cluster import StorageNotShared, check_shared_storage
    from search.tuner import init_ray

    init_ray(plan)
    try:
        check_shared_storage(plan.storage)
    except StorageNotShared as err:
        import ray

        ray.shutdown()
        raise OptionError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan, space = prepare(args)
    except OptionError as err:
        return fail(str(err))
    print(space.describe())
    print(describe_plan(plan))
    if args.dry_run:
        print("dry run: nothing started")
        return 0
    resume = args.resume
    try:
        check_data(space)
        if plan.address:
            check_cluster(plan)
        if resume:
            from search.tuner import can_restore

            if not can_restore(plan):
                raise OptionError(f"--resume: Ray finds no restorable experiment in {plan.experiment_path}. "
                                  f"Fix: start a new search with another --name")
        else:
            storage.write_text(f"{plan.experiment_path}/{PLAN_FILE}", plan.to_json())
    except OptionError as err:
        return fail(str(err))
    return run(plan, space, resume, test=not args.no_test)




def run(plan: SearchPlan, space: Any, resume: bool, test: bool = True) -> int:
    import ray

    from search import records, results, tuner

    start = time.time()
    tuner.init_ray(plan)
    try:
        tuner.run(plan, space, resume=resume)
        found = records.collect(plan, space)
        results.summarize(found, space, plan, test=test)
    finally:
        ray.shutdown()
    if plan.is_remote:
        storage.upload_dir(plan.local_dir, plan.experiment_path)
    print(f"search folder: {plan.local_dir}  ({time.time() - start:.0f} s)")
    if plan.wandb == "offline":
        runs = sorted(glob.glob(str(plan.local_dir / "wandb" / "offline-run-*")))
        if runs:
            print(f"W&B runs were logged offline; upload them with:\n  wandb sync {plan.local_dir / 'wandb'}/offline-run-*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
