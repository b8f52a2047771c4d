"""``--reproduce METHOD --data D``: the paper's point for D, one trial, and the
``paper:`` sections it reads. Every expected config is assembled here from the
space files' raw YAML (fixed, first, the paper's overrides), not by the loader
under test; the dry runs go through the real CLI entry point (Ray never starts:
``--dry-run`` returns before it)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from search import driver
from search.options import OptionError
from search.reproduce import PENDING, paper_table, reproduce_plan
from search.spaces import SpaceError, load_space

REPO = Path(__file__).resolve().parent.parent
SPACES = REPO / "spaces"


def _raw(method: str) -> dict:
    return yaml.safe_load((SPACES / f"{method}.yaml").read_text())


def _paper_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(SPACES.glob("*.yaml")):
        paper = yaml.safe_load(path.read_text()).get("paper") or {}
        cases += [(path.stem, data) for data in paper.get("datasets") or {}]
    return cases


CASES = _paper_cases()


def _expected(method: str, data: str) -> dict:
    raw = _raw(method)
    first = raw["first"][0] if isinstance(raw["first"], list) else raw["first"]
    paper = raw["paper"]
    return {**raw["fixed"], **first, **(paper.get("overrides") or {}),
            **(paper["datasets"][data].get("overrides") or {}), "data": data}


def _dry_run(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    # the checkpoint-room check measures this machine's disk, not what --reproduce decides
    monkeypatch.setattr(driver, "check_disk", lambda plan, space: "not measured in this test")
    (tmp_path / "data").mkdir(exist_ok=True)
    code = driver.main([*args, "--data-root", str(tmp_path / "data"), "--storage", str(tmp_path / "res"),
                        "--wandb", "off", "--dry-run"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_paper_dataset_is_covered() -> None:
    """The parametrisation below is not vacuous: the papers' datasets, written out."""
    assert set(CASES) == {("gholm", d) for d in ("cub", "cars", "aircraft", "dogs")} \
        | {("atcnn", d) for d in ("cub", "aircraft", "dogs")} | {("racnn", d) for d in ("cub", "dogs", "cars")} \
        | {("clca", d) for d in ("cub", "cars", "aircraft")}


@pytest.mark.parametrize("method,data", CASES)
def test_dry_run_prints_the_paper_point(method: str, data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    code, out, err = _dry_run(["--reproduce", method, "--data", data], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    config = json.loads(re.search(r"^  config +(\{.*\})$", out, flags=re.M).group(1))
    expected = {**_expected(method, data), "seed": 0, "data_root": str((tmp_path / "data").resolve())}
    assert config == expected
    accuracy = _raw(method)["paper"]["datasets"][data]["accuracy"]
    assert f"the paper reports {accuracy:g}% top-1" in out
    assert f"1 trials of space {method!r}" in out
    assert f"none (FIFO): every trial runs its {expected['epochs']} epochs" in out
    assert f"{data} at {tmp_path / 'data'}" in out
    assert "dry run: nothing started" in out and not list((tmp_path / "res").glob("*"))


def test_own_set_keys_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _dry_run(["--reproduce", "clca", "--data", "cub", "--set", "epochs=2", "--set", "batch_size=4"],
                              tmp_path, monkeypatch, capsys)
    assert code == 0, err
    config = json.loads(re.search(r"^  config +(\{.*\})$", out, flags=re.M).group(1))
    assert config["epochs"] == 2 and config["batch_size"] == 4 and config["pretrained_tag"] == "tv_in1k"
    assert "every trial runs its 2 epochs" in out


@pytest.mark.parametrize("args,words", [
    (["--reproduce", "clca", "--data", "dogs"], "reports only ['aircraft', 'cars', 'cub'], not --data dogs"),
    (["--reproduce", "lgam", "--data", "cub"], "reports no dataset this tool loads (reports top-1 error on CIFAR-10"),
    (["--reproduce", "baseline", "--data", "cub"], "has no `paper:` section"),
    (["--reproduce", "gholm", "--data", "cub", "--num-samples", "4"], "--reproduce sets --num-samples itself"),
    (["--reproduce", "gholm", "--data", "cub", "--space", "gholm"], "--reproduce sets --space itself"),
    (["--reproduce", "clca", "--data", "cub", "--set", "pretrained_tag=in22k"], "'tv2_in1k', 'tv_in1k']"),
    (["--space", "clca", "--data", "cub", "--set", "pretrained_tag=in22k"], "has no pretrained tag 'in22k'"),
])
def test_refused_before_anything_starts(args: list[str], words: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _dry_run(args, tmp_path, monkeypatch, capsys)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and words in line and "Fix: " in line, line
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").glob("*"))


def test_reproduce_plan_values() -> None:
    values = reproduce_plan("gholm", "dogs")
    expected = _expected("gholm", "dogs")
    assert values["space"] == "gholm" and values["num_samples"] == 1 and values["scheduler"] == "none"
    assert values["max_epochs"] == expected["epochs"]
    assert values["overrides"] == {k: v for k, v in expected.items() if k != "data"}
    assert values["overrides"]["pretrained_tag"] == "fb_in1k" and values["overrides"]["resize"] == "direct"


# ------------------------------------------------------------------ the paper: section
def _with_paper(tmp_path: Path, paper: dict) -> Path:
    raw = _raw("clca")
    raw["paper"] = paper
    path = tmp_path / "clca.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("paper,where,words", [
    ({"source": "x", "datasets": {"cub": {"accuracy": 89.5, "overrides": {"pretrained_tag": "fb_in22k"}}}},
     "paper.datasets.cub.overrides", "'tv_in1k'"),  # a tag resnet50 lacks: the valid ones are listed
    ({"source": "x", "datasets": {"cubb": {"accuracy": 89.5}}}, "paper.datasets.cubb", "did you mean 'cub'"),
    ({"source": "x", "datasets": {"cub": {"accuracy": 189.5}}}, "paper.datasets.cub.accuracy", "(0, 100]"),
    ({"source": "x", "datasets": {"cub": {"accuracy": 89.5, "overrides": {"lr": -1}}}},
     "paper.datasets.cub.overrides.lr", "> 0"),
    ({"source": "x", "datasets": {"cub": {"accuracy": 89.5, "overrides": {"data": "cars"}}}},
     "paper.datasets.cub.overrides.data", "set by the space"),
    ({"datasets": {"cub": {"accuracy": 89.5}}}, "paper.source", "names no paper"),
    ({"source": "x"}, "paper.datasets", "no note says why"),
    ({"source": "x", "datasets": {"cub": {"acuracy": 89.5}}}, "paper.datasets.cub.acuracy", "did you mean 'accuracy'"),
])
def test_bad_paper_sections_are_refused_on_load(paper: dict, where: str, words: str, tmp_path: Path) -> None:
    path = _with_paper(tmp_path, paper)
    with pytest.raises(SpaceError) as err:
        load_space(str(path))
    assert f": {where}" in str(err.value) and words in str(err.value) and "Fix:" in str(err.value), str(err.value)


def test_union_files_take_no_paper(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump({"include": ["clca"], "paper": {"source": "x"}}))
    with pytest.raises(SpaceError, match="cannot have `paper`"):
        load_space(str(path), SPACES)


# ------------------------------------------------------------------ the README table
def test_readme_table_is_the_generated_one() -> None:
    text = (REPO / "README.md").read_text()
    table = paper_table()
    assert table in text, "README.md's reproduce table is stale: paste search.reproduce.paper_table()"
    rows = table.splitlines()[2:]
    assert len(rows) == len(CASES)
    assert all(r.endswith(f"| {PENDING} |") for r in rows)
    assert "| gholm | cub | 91.8 | `fgvc-search --reproduce gholm --data cub --data-root DIR` |" in table
