"""Train one configuration without Ray.

    python -m fgmodels.train --method baseline --data synthetic --epochs 3
    python -m fgmodels.train --config results/<search>/best_config.yaml --test

Any config key can be set with ``--set key=value`` (values parsed as YAML).
The official test split is only touched with ``--test`` (the best epoch, or the
last one when ``val_fraction`` is 0 and nothing is validated).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from fgmodels.checkpoint import CHECKPOINT_DIR, STATE_FILE
from fgmodels.config import ConfigError, load_config, resolve_config
from fgmodels.data import DatasetError
from fgmodels.engine import Trainer, TrialDiverged, evaluate_checkpoint

# Exit statuses: 2 = the inputs cannot be run (config, data, workdir), 3 = training diverged.
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

_DIRECT = ("method", "backbone", "data", "data_root", "epochs", "batch_size", "lr", "seed", "device", "img_size")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fgmodels.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML file of config keys (e.g. best_config.yaml from a search)")
    p.add_argument("--method")
    p.add_argument("--backbone")
    p.add_argument("--data", help="synthetic | cub | aircraft | cars | dogs | imagefolder")
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--img-size", dest="img_size", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config key")
    p.add_argument("--workdir", default=None, help="where checkpoints and metrics go (default runs/<method>-<data>)")
    p.add_argument("--resume", action="store_true", help="continue from <workdir>/checkpoint")
    p.add_argument("--test", action="store_true", help="evaluate the best checkpoint once on the official test split")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    """--config, then the direct flags, then --set; a key given by a flag and by
    --set with two different values is refused rather than one silently winning."""
    cfg: dict[str, Any] = load_config(args.config) if args.config else {}
    flags = {key: getattr(args, key) for key in _DIRECT if getattr(args, key) is not None}
    cfg.update(flags)
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}. Fix: e.g. --set lr=0.01")
        key, value = item.split("=", 1)
        key, value = key.strip(), yaml.safe_load(value)
        if key in flags and flags[key] != value:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{key} is given twice: {flag} {flags[key]!r} and --set {key}={value!r}. "
                              f"Fix: keep one of them")
        cfg[key] = value
    return resolve_config(cfg)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        cfg = build_config(args)
        workdir = Path(args.workdir or f"runs/{cfg['method']}-{cfg['data']}")
        resume = _check_workdir(workdir, args.resume)
        trainer = Trainer(cfg, workdir, progress=not args.no_progress)  # data and model: every input error is raised here
        if resume is not None:
            trainer.resume(resume)
        result = trainer.fit()
    except (ConfigError, DatasetError) as err:
        return _fail(err, EXIT_BAD_INPUT)
    except TrialDiverged as err:
        return _fail(err, EXIT_DIVERGED)
    summary: dict[str, Any] = {"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch}
    if args.test:  # without validation (val_fraction 0) no epoch is "best": the last one is tested
        weights = result.best_dir if result.best_epoch else result.checkpoint_dir
        summary["test"] = evaluate_checkpoint(weights, cfg, split="test")
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _check_workdir(workdir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from, or None; refuses to mix two runs in one folder."""
    checkpoint = workdir / CHECKPOINT_DIR
    has_run = (checkpoint / STATE_FILE).exists()
    if resume and not has_run:
        raise ConfigError(f"--resume: {workdir} holds no checkpoint. Fix: drop --resume or pass the --workdir of the run.")
    if not resume and has_run:
        raise ConfigError(f"{workdir} already holds a run. Fix: pass --resume to continue it or --workdir for a new one.")
    return checkpoint if resume else None


def _fail(err: Exception, status: int) -> int:
    """One line on stderr, no traceback: the message already names the problem and the fix."""
    print("error: " + " ".join(str(err).split()), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
