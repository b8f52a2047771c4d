"""The search command (``python run_search.py`` / ``fgvc-search``): options ->
plan -> early checks -> Ray Tune search -> summary -> exit status.

Every option is checked before Ray starts, and a failed check exits with
status 2 and one line naming the option and its fix; see
:mod:`search.outcome` for the other exit statuses.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from search import storage
from search.options import (CPU_DEMO, REPLACES, OptionError, all_options, build_parser, ignored_on_resume,
                            plan_options)
from search.outcome import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, failure_reason,
                            interrupted_summary, program, resume_command)
from search.plan import PLAN_FILE, SearchPlan, apply_plan, describe_plan, resolve_plan, storage_root
from search.plugins import activate_plugins

DESCRIPTION = (f"Hyperparameter search for FGVC methods with Ray Tune + Optuna + ASHA. "
               f"Defaults marked 'CPU demo' apply with {CPU_DEMO}: a small real search that ends in minutes.")
EPILOG = f"""examples:
  {{prog}} --space gholm                 # CPU demo on synthetic data (minutes)
  {{prog}} --space gholm --data cub --data-root /data/CUB_200_2011 --gpus-per-trial 0.5
  {{prog}} --space gholm --name my-search --resume   # continue an interrupted search
  {{prog}} --reproduce gholm --data cub --data-root /data/CUB_200_2011   # the paper's point, one trial

Every option is checked before Ray starts; results go to <storage>/<name>.
Exit status: {EXIT_OK} the search found a configuration; {EXIT_FAILED} it ran but no trial completed an epoch
or the best trial errored; {EXIT_USAGE} a bad option or failed check (nothing started);
{EXIT_INTERRUPTED} interrupted by Ctrl-C (the state is saved: continue with --resume)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    prog = program()
    return build_parser(prog, DESCRIPTION, EPILOG.format(prog=prog)).parse_args(argv)


def fail(message: Any) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def load_space(spec: str) -> Any:
    from search.spaces import SpaceError, load_space as load

    try:
        return load(spec)
    except SpaceError as err:
        text = str(err)
        raise OptionError(text if text.startswith("--space") else f"--space {spec!r}: {text}") from None


def prepare(args: argparse.Namespace) -> tuple[SearchPlan, Any]:
    """Options -> (plan, space with all overrides); raises OptionError."""
    if args.resume:
        return prepare_resume(args)
    if args.reproduce:
        from search.reproduce import reproduce_args

        args = reproduce_args(args)  # the paper's point as --space, --num-samples 1, --scheduler none, --set ...
    if not args.space:
        raise OptionError("--space is required. Fix: e.g. --space gholm (see spaces/)")
    args.plugins = activate_plugins(args.plugins)  # before the space loads the method registry
    space = load_space(args.space)
    from search.spaces import SpaceError, parse_overrides

    try:
        overrides = parse_overrides(args.set or [])
    except SpaceError as err:
        raise OptionError(str(err)) from None
    opts = {o.dest: getattr(args, o.dest) for o in plan_options()}
    plan, applied = resolve_plan({**opts, "overrides": overrides}, space)
    note = check_gpu_packing(plan, applied, args.gpu_memory_gb)
    if note:
        print(f"note: {note}")
    print(f"disk: {check_disk(plan, applied)}")
    if _exists(plan.experiment_path):
        raise OptionError(f"results folder {plan.experiment_path} already exists; it is never overwritten. "
                          f"Fix: choose a new --name, or add --resume to continue that search")
    return plan, applied


def _exists(uri: str) -> bool:
    try:
        return storage.exists(uri)
    except OSError as err:  # e.g. a bucket without credentials
        raise OptionError(f"--storage {uri}: cannot be read: {err}. Fix: check the URI and its credentials, "
                          f"or use a local folder") from None


def check_disk(plan: SearchPlan, applied: Any) -> str:
    """The most checkpoint data the search can hold at once, refused when a
    local --storage has less free space (a bucket's room is not measured)."""
    from search.disk import check_free_space, estimate_disk_bytes

    configs = applied.first or [applied.member(m).fixed for m in applied.methods]
    concurrent = min(plan.max_concurrent or plan.num_samples, plan.num_samples)
    from search.disk import CHECKPOINTS_PER_TRIAL
    from search.schedulers import SCHEDULERS

    per_trial = max(CHECKPOINTS_PER_TRIAL, (SCHEDULERS[plan.scheduler].checkpoints_per_trial or 0) + 1)
    need = estimate_disk_bytes([dict(c) for c in configs], concurrent, plan.keep_checkpoints, per_trial=per_trial)
    if plan.fixed_runs:  # seed re-runs and final fits keep their latest checkpoint each
        need += estimate_disk_bytes([dict(c) for c in configs], 0, plan.fixed_runs, per_trial=1)
    if plan.is_remote:
        return f"about {need / 2**30:.2f} GiB of checkpoints at most (in {plan.storage}; its room is not checked)"
    try:
        return check_free_space(plan.storage, need)
    except ValueError as err:
        raise OptionError(str(err)) from None


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
    root = storage_root(args.storage)
    exp = f"{root.rstrip('/')}/{args.name}"
    if not _exists(f"{exp}/{PLAN_FILE}"):
        raise OptionError(f"--resume: {exp} holds no search started by run_search.py or fgvc-search "
                          f"(no {PLAN_FILE}). Fix: check --name/--storage, or start a new search without --resume")
    plan = SearchPlan.from_json(storage.read_text(f"{exp}/{PLAN_FILE}"))
    plan.storage, plan.name = root, args.name  # the folder may have moved
    for opt in all_options():
        if opt.resume == REPLACES and getattr(args, opt.dest, None) is not None:
            setattr(plan, opt.dest, getattr(args, opt.dest))
    ignored = ignored_on_resume(args)
    if ignored:
        print(f"note: --resume continues with the options saved in {PLAN_FILE}; ignored: {', '.join(ignored)}")
    activate_plugins(plan.plugins)  # as saved: the same methods register again
    from search.spaces import SpaceError

    try:
        space = apply_plan(plan, load_space(plan.space))
    except (SpaceError, OptionError) as err:
        raise OptionError(f"--resume: the space {plan.space!r} no longer loads: {err}") from None
    return plan, space


def check_data(space: Any) -> Any:
    """Fail before Ray on any unreadable dataset: the layout, then every image
    decoded once (cached per file, so a second search costs no decode). Under
    ``bad_image_policy=skip`` the report of skipped files is returned for the
    summary. Writes the synthetic cache once here instead of racing in every trial."""
    from fgmodels.config import ConfigError, resolve_config
    from fgmodels.data import DatasetError, check_dataset

    cfg = space.first[0] if space.first else space.member(space.methods[0]).fixed
    try:
        report = check_dataset(resolve_config(dict(cfg)))
    except (DatasetError, ConfigError, OSError) as err:
        raise OptionError(f"--data/--data-root: {err}") from None
    if report.skipped:
        print(f"data: {report.summary()}")
    return report


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
        return fail(err)
    print(space.describe())
    print(describe_plan(plan))
    if args.dry_run:
        from fgmodels.auto import planned_settings

        print(planned_settings([space.member(m).fixed for m in space.methods], plan.gpus_per_trial > 0,
                               plan.cpus_per_trial))
        print("dry run: nothing started")
        return EXIT_OK
    try:
        data_report = check_data(space)
        if plan.address:
            check_cluster(plan)
        if args.resume:
            from search.tuner import can_restore

            if not can_restore(plan):
                raise OptionError(f"--resume: Ray finds no restorable experiment in {plan.experiment_path}. "
                                  f"Fix: start a new search with another --name")
        else:
            storage.write_text(f"{plan.experiment_path}/{PLAN_FILE}", plan.to_json())
    except OptionError as err:
        return fail(err)
    return run(plan, space, args.resume, test=not args.no_test, data_report=data_report)


def collect(plan: SearchPlan, space: Any) -> list[Any]:
    """The trial records, with the scheduler's own record of which trials it stopped."""
    from search import records
    from search.stops import load_stop_decisions

    return records.collect(plan, space, stops=load_stop_decisions(plan.experiment_path))


def run(plan: SearchPlan, space: Any, resume: bool, test: bool = True, data_report: Any = None) -> int:
    """The search itself, its summary and the exit status."""
    import ray

    from search import reruns, results, tuner, wandb_sweep

    from search.leftovers import record_session, stop_leftovers

    start = time.time()
    if resume and not plan.is_remote:
        stop_leftovers(plan.local_dir)  # what a killed driver of this search left running
    try:
        tuner.init_ray(plan)
        if not plan.address and not plan.is_remote:
            record_session(plan.local_dir)
        if tuner.run(plan, space, resume=resume):
            try:
                found = collect(plan, space)
            except Exception:  # stopped before Ray wrote a first trial: nothing to list
                found = []
            print(interrupted_summary(found, plan), flush=True)
            code = EXIT_INTERRUPTED
        else:
            found = collect(plan, space)
            failure = failure_reason(found)
            seeds = reruns.seed_reruns(plan, found) if failure is None else {}  # Ray trials, like the final fit
            results.summarize(found, space, plan, test=test and failure is None, seeds=seeds)
            if data_report is not None and data_report.skipped:
                print(f"data: {data_report.summary()}")
            if failure:
                print(f"error: {failure}", file=sys.stderr)
            code = EXIT_FAILED if failure else EXIT_OK
    except reruns.Interrupted as err:
        print(f"\n{err}. Continue with:\n  {resume_command(plan)}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"\nsearch interrupted again before its summary; Ray keeps its latest saved state. "
              f"Continue it with:\n  {resume_command(plan)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        ray.shutdown()
    if plan.is_remote:
        storage.upload_dir(plan.local_dir, plan.experiment_path)
    print(f"search folder: {plan.local_dir}  ({time.time() - start:.0f} s)")
    wandb_sweep.after_search(plan, space, found, interrupted=code == EXIT_INTERRUPTED)
    return code
