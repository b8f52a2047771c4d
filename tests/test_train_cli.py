"""``python -m fgmodels.train`` as a user runs it: bad inputs end with exit 2 and one
line on stderr before any training; a diverged run ends with exit 3."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_cub(root: Path, labels: dict[int, int] | None = None, split_file: bool = True) -> Path:
    """A 2-class CUB-layout folder with 8 small images; ``labels`` overrides image -> class id."""
    (root / "images" / "001.a").mkdir(parents=True)
    (root / "images" / "002.b").mkdir(parents=True)
    images, classes, splits = [], [], []
    for i in range(1, 9):
        cls = 1 + (i - 1) % 2
        rel = f"{'001.a' if cls == 1 else '002.b'}/img_{i}.jpg"
        Image.new("RGB", (64, 64), (40 * i, 100, 30 * cls)).save(root / "images" / rel)
        images.append(f"{i} {rel}")
        classes.append(f"{i} {(labels or {}).get(i, cls)}")
        splits.append(f"{i} {int(i <= 6)}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(classes) + "\n")
    (root / "classes.txt").write_text("1 001.a\n2 002.b\n")
    if split_file:
        (root / "train_test_split.txt").write_text("\n".join(splits) + "\n")
    return root


def run_cli(tmp_path: Path, *args: str, hooks: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("FGVC_HOOKS", None)
    if hooks:
        env["FGVC_HOOKS"] = hooks
    cmd = [sys.executable, "-m", "fgmodels.train", "--workdir", str(tmp_path / "run"), "--no-progress",
           "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", ["missing split file", "label out of range", "missing root"])
def test_data_errors_exit_2_with_one_line_before_training(tmp_path: Path, case: str) -> None:
    root = tmp_path / "cub"
    if case == "missing split file":
        write_cub(root, split_file=False)
        needles = ("train_test_split.txt",)
    elif case == "label out of range":
        write_cub(root, labels={3: 5})
        needles = ("image_class_labels.txt", "outside 1..2")
    else:
        needles = (str(root), "images.txt")
    proc = run_cli(tmp_path, "--data", "cub", "--data-root", str(root), "--backbone", "test_resnet")
    assert_one_line_error(proc, 2, *needles)
    assert not (tmp_path / "run").exists()  # nothing was trained or written


@pytest.mark.parametrize("args, needle", [
    (("--data", "no_such_set"), "no_such_set"),
    (("--backbone", "no_such_net"), "no_such_net"),
    (("--set", "learning_rate=0.1"), "did you mean 'lr'"),
])
def test_bad_config_values_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    assert_one_line_error(run_cli(tmp_path, *args), 2, needle)
    assert not (tmp_path / "run").exists()


def test_a_knob_of_the_wrong_kind_exits_2(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--method", "gholm", "--backbone", "test_convnext", "--set", "mu=abc")
    assert proc.returncode == 2, proc.stderr


def test_resume_without_a_run_exits_2(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--resume", "--backbone", "test_resnet")
    assert_one_line_error(proc, 2, "--resume", "holds no checkpoint")


def test_diverged_run_exits_3_with_one_line(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "--backbone", "test_resnet", "--epochs", "2", "--batch-size", "8",
                   "--set", "data_root=" + str(tmp_path / "data"), "--set", "synthetic_classes=2",
                   "--set", "synthetic_per_class=10", "--set", "max_train_batches=2", "--set", "log_every=1",
                   "--set", "inject_nan_at_step=0", hooks="tests.fault_injection:HOOK")
    assert proc.returncode == 3, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "diverged" in errors[0] and "epoch 1 by step 1" in errors[0]
    assert "Traceback" not in proc.stderr


def test_a_key_given_by_a_flag_and_by_set_must_agree() -> None:
    from fgmodels.config import ConfigError
    from fgmodels.train import build_config, parse_args

    with pytest.raises(ConfigError, match=r"backbone is given twice: --backbone 'test_resnet' and --set "
                                          r"backbone='test_convnext'.*Fix"):
        build_config(parse_args(["--backbone", "test_resnet", "--set", "backbone=test_convnext"]))
    cfg = build_config(parse_args(["--backbone", "test_resnet", "--set", "backbone=test_resnet", "--set", "lr=0.02"]))
    assert cfg["backbone"] == "test_resnet" and cfg["lr"] == 0.02
