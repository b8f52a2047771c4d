"""`auto` runtime settings: the one rule (fgmodels.auto.resolve_auto) on fake devices,
and a trial that records what it decided before its config is saved."""
from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from fgmodels.auto import AUTO_KEYS, DeviceInfo, cache_problem, planned_settings, resolve_auto
from fgmodels.config import ConfigError, check_values, resolve_config

H200 = DeviceInfo("cuda", "NVIDIA H200", 141.0, (9, 0))
V100 = DeviceInfo("cuda", "Tesla V100", 32.0, (7, 0))
P100 = DeviceInfo("cuda", "Tesla P100", 16.0, (6, 0))
CPU = DeviceInfo("cpu")


def _cfg(**kw):
    return resolve_config({"method": "baseline", **kw})


def test_the_defaults_are_auto_and_auto_is_a_valid_value() -> None:
    cfg = resolve_config({})
    assert {k: cfg[k] for k in AUTO_KEYS} == dict.fromkeys(AUTO_KEYS, "auto")
    assert check_values("baseline", {"workers": 3, "channels_last": True, "compile": "auto"}) == {
        "workers": 3, "channels_last": True, "compile": "auto"}
    for bad in ({"channels_last": "yes"}, {"workers": -1}, {"compile": "Auto"}, {"pipeline": "fast"}):
        with pytest.raises(ConfigError, match="Fix:"):
            check_values("baseline", bad)


def test_a_modern_gpu_gets_the_fast_path() -> None:
    got = resolve_auto(_cfg(opt="sgd"), H200, cpus=4)
    assert got.settings == {"amp": "bf16", "pipeline": "cache", "workers": 0, "channels_last": True, "compile": True}
    assert "fused sgd" in got.why and "H200" in got.why
    assert "\n" not in got.line() and "compile=True" in got.line()


def test_a_method_with_dynamic_shapes_is_not_compiled() -> None:
    got = resolve_auto(resolve_config({"method": "gholm"}), H200, cpus=4)
    assert got.settings["compile"] is False and got.settings["amp"] == "bf16"
    assert "dynamic shapes" in got.why


@pytest.mark.parametrize("device, amp, channels_last", [(V100, "off", True), (P100, "off", False), (CPU, "off", False)])
def test_older_gpus_and_the_cpu(device: DeviceInfo, amp: str, channels_last: bool) -> None:
    got = resolve_auto(_cfg(), device, cpus=2)
    assert (got.settings["amp"], got.settings["channels_last"]) == (amp, channels_last)
    assert got.settings["compile"] is (device.type == "cuda")
    assert got.settings["pipeline"] == "cache"


@pytest.mark.parametrize("cpus, workers", [(1, 0), (4, 3), (32, 8)])
def test_without_room_for_the_cache_pil_gets_workers_from_the_trials_cpus(cpus: int, workers: int) -> None:
    got = resolve_auto(_cfg(), H200, cpus=cpus, cache_problem="needs 9.0 GiB, /x has 1.0 GiB free")
    assert got.settings["pipeline"] == "pil" and got.settings["workers"] == workers
    assert "9.0 GiB" in got.why


def test_an_explicit_setting_always_wins() -> None:
    given = {"amp": "off", "pipeline": "pil", "workers": 2, "channels_last": False, "compile": False}
    got = resolve_auto(_cfg(**given), H200, cpus=16)
    assert got.settings == given
    assert "explicit: amp=off" in got.why
    cpu = resolve_auto(_cfg(amp="bf16", compile=True, pipeline="cache"), CPU, cpus=16)
    assert (cpu.settings["amp"], cpu.settings["compile"], cpu.settings["workers"]) == ("bf16", True, 0)


def test_dry_run_lines_follow_the_trials_device() -> None:
    text = planned_settings([{"method": "gholm"}, {"method": "baseline", "device": "cpu"}], gpu=True, cpus=4)
    gholm, baseline = text.splitlines()
    assert gholm.startswith("gholm:") and "amp=bf16" in gholm and "compile=False" in gholm
    assert baseline.startswith("baseline:") and "amp=off" in baseline and "(cpu;" in baseline


def _tiny(root: Path, **kw) -> dict:
    return {"method": "baseline", "backbone": "test_convnext", "data": "synthetic", "data_root": str(root),
            "synthetic_classes": 2, "synthetic_per_class": 4, "synthetic_image_size": 48, "img_size": 32,
            "resize_size": 36, "batch_size": 2, "epochs": 1, "max_train_batches": 1, "max_eval_batches": 1,
            "device": "cpu", **kw}


def test_a_trial_saves_the_decided_values_and_prints_them_first(tmp_path: Path, monkeypatch, capsys) -> None:
    from fgmodels.checkpoint import CONFIG_FILE
    from fgmodels.engine import Trainer

    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "cache"))
    trainer = Trainer(_tiny(tmp_path / "data", workers=0), tmp_path / "run", progress=False)
    saved = yaml.safe_load((tmp_path / "run" / CONFIG_FILE).read_text())
    assert {k: saved[k] for k in AUTO_KEYS} == {
        "amp": "off", "pipeline": "cache", "workers": 0, "channels_last": False, "compile": False}
    assert trainer.cfg["pipeline"] == "cache" and trainer.data.train.pixel_cache is not None
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("runtime settings: amp=off pipeline=cache workers=0") and "explicit: workers=0" in first


def test_a_dataset_without_room_falls_back_to_pil(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from fgmodels.assembly import assemble_trial, read_splits

    monkeypatch.setenv("FGVC_CACHE_DIR", str(tmp_path / "cache"))
    cfg = resolve_config(_tiny(tmp_path / "data"))
    data = read_splits(cfg)
    assert cache_problem(data, cfg) is None
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    images = len({s.path for d in (data.train, data.val, data.test) for s in d.samples})
    problem = cache_problem(data, cfg)
    assert problem is not None and f"{images * 36 * 36 * 3 / 2**30:.1f} GiB" in problem
    trial = assemble_trial(_tiny(tmp_path / "data"))
    assert trial.cfg["pipeline"] == "pil" and "cannot serve" in trial.settings
    assert getattr(trial.data.train, "pixel_cache", None) is None


def test_dry_run_prints_what_a_gpu_trial_will_run_with(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import run_search

    # no GPU here: plan it as a cluster run (a dry run connects to nothing)
    code = run_search.main(["--space", "gholm", "--dry-run", "--storage", str(tmp_path / "res"), "--name", "dry",
                            "--address", "10.0.0.1:6379", "--gpus-per-trial", "1", "--gpu-memory-gb", "80",
                            "--no-smoke", "--set", "channels_last=false"])
    out = capsys.readouterr().out
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if ln.startswith("gholm: runtime settings:")]
    assert "amp=bf16 pipeline=cache workers=0 channels_last=False compile=False" in line
    assert "explicit: channels_last=False" in line and "dynamic shapes" in line
