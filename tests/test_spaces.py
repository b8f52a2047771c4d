"""Search spaces: validation messages, union sampling, Optuna/Ray round trips."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from fgmodels.config import known_keys, resolve_config
from fgmodels.registry import list_methods
from search.spaces import (
    SPACES_DIR,
    SearchSpace,
    SpaceError,
    load_space,
    parse_overrides,
    sample_configs,
    to_trial_config,
)

ALL_SIX = ["baseline", "gholm", "atcnn", "racnn", "lgam", "clca"]

# A small valid user space; bad cases below replace one line of it.
GOOD = """\
description: user space
fixed:
  method: baseline
  epochs: 3
params:
  lr:              {type: loguniform, low: 1e-4, high: 1.0e-2}
  weight_decay:    {type: loguniform, low: 1.0e-5, high: 1.0e-3}
  batch_size:      {type: choice, values: [8, 16]}
  label_smoothing: {type: uniform, low: 0.0, high: 0.2}
  backbone:        {type: choice, values: [test_resnet, resnet18]}
first:
  lr: 1.0e-3
  weight_decay: 1.0e-4
  batch_size: 16
  label_smoothing: 0.1
  backbone: resnet18
smoke:
  backbone: test_resnet
  epochs: 1
"""


def _write(tmp_path: Path, text: str, name: str = "user_space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@functools.lru_cache(maxsize=None)
def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text())


def _expected_keys(name: str) -> set[str]:
    """Keys a config of the method of spaces/<name>.yaml must carry, read from the YAML."""
    data = _yaml(name)
    return set(data.get("fixed", {})) | set(data.get("params", {}))


# ------------------------------------------------------------------ bad spaces
BAD_CASES = {
    # id: (old line or fragment, new text, words the message must contain)
    "unknown_param_key": ("  weight_decay:    {type", "  wieght_decay:    {type", ["params.wieght_decay", "'weight_decay'"]),
    "unknown_fixed_key": ("  epochs: 3", "  epoch: 3", ["fixed.epoch", "'epochs'"]),
    "unknown_dist_type": ("label_smoothing: {type: uniform,", "label_smoothing: {type: normal,", ["params.label_smoothing", "'normal'", "uniform"]),
    "inverted_range": ("{type: uniform, low: 0.0, high: 0.2}", "{type: uniform, low: 0.2, high: 0.0}", ["params.label_smoothing", "low"]),
    "empty_range": ("{type: uniform, low: 0.0, high: 0.2}", "{type: uniform, low: 0.2, high: 0.2}", ["params.label_smoothing", "low"]),
    "log_low_zero": ("{type: loguniform, low: 1.0e-5,", "{type: loguniform, low: 0.0,", ["params.weight_decay", "low > 0"]),
    "int_log_low_zero": ("{type: choice, values: [8, 16]}", "{type: int, low: 0, high: 16, log: true}", ["params.batch_size", "low > 0"]),
    "int_step_mismatch": ("{type: choice, values: [8, 16]}", "{type: int, low: 8, high: 30, step: 8}", ["params.batch_size", "step"]),
    "int_key_as_float_range": ("{type: choice, values: [8, 16]}", "{type: uniform, low: 8, high: 32}", ["params.batch_size", "type: int"]),
    "empty_choice": ("{type: choice, values: [8, 16]}", "{type: choice, values: []}", ["params.batch_size", "non-empty"]),
    "choice_wrong_kind": ("{type: choice, values: [8, 16]}", "{type: choice, values: [8, big]}", ["params.batch_size", "integer"]),
    "duplicate_choice": ("{type: choice, values: [8, 16]}", "{type: choice, values: [8, 8]}", ["params.batch_size", "duplicate"]),
    "unknown_backbone": ("values: [test_resnet, resnet18]", "values: [test_resnet, resnet1O8]", ["params.backbone", "resnet1O8", "timm"]),
    "unknown_field": ("{type: uniform, low: 0.0, high: 0.2}", "{type: uniform, low: 0.0, high: 0.2, lg: true}", ["params.label_smoothing", "lg"]),
    "missing_type": ("{type: uniform, low: 0.0, high: 0.2}", "{low: 0.0, high: 0.2}", ["params.label_smoothing", "type"]),
    "unknown_method": ("  method: baseline", "  method: baselin", ["fixed.method", "'baselin'", "'baseline'"]),
    "method_as_param": ("  batch_size:      {type: choice", "  method: {type: choice, values: [baseline, gholm]}\n  batch_size:      {type: choice", ["params.method", "include"]),
    "fixed_and_param": ("  epochs: 3", "  epochs: 3\n  lr: 0.01", ["params.lr", "both"]),
    "fixed_wrong_kind": ("  epochs: 3", "  epochs: many", ["fixed.epochs", "integer"]),
    "first_outside": ("  label_smoothing: 0.1", "  label_smoothing: 0.5", ["first.label_smoothing", "outside"]),
    "first_not_a_choice": ("  batch_size: 16\n", "  batch_size: 32\n", ["first.batch_size", "outside"]),
    "first_missing": ("  label_smoothing: 0.1\n", "", ["first.label_smoothing", "add label_smoothing"]),
    "first_fixed_key": ("  backbone: resnet18", "  backbone: resnet18\n  epochs: 3", ["first.epochs", "fixed"]),
    "smoke_not_in_space": ("  epochs: 1", "  epochs: 1\n  drop_rate: 0.1", ["smoke.drop_rate", "fixed"]),
    "smoke_bad_value": ("  backbone: test_resnet\n  epochs: 1", "  backbone: nope_net\n  epochs: 1", ["backbone", "nope_net"]),
    "unknown_section": ("first:", "firts:", ["firts", "'first'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_space_is_rejected_naming_key_file_and_fix(tmp_path: Path, case: str) -> None:
    old, new, words = BAD_CASES[case]
    assert GOOD.count(old) == 1, f"test setup: {old!r} must occur once"
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    msg = str(info.value)
    assert "user_space.yaml" in msg and "Fix:" in msg, msg
    for word in words:
        assert word in msg, f"{word!r} missing from: {msg}"


def test_good_user_space_file_loads_and_samples_in_range(tmp_path: Path) -> None:
    space = load_space(str(_write(tmp_path, GOOD)))
    assert space.methods == ["baseline"] and space.name == "user_space"
    assert space.params["lr"].low == pytest.approx(1e-4)  # "1e-4" read as text by PyYAML, taken as the number
    assert space.first == [{
        "method": "baseline", "epochs": 3, "lr": 1e-3, "weight_decay": 1e-4,
        "batch_size": 16, "label_smoothing": 0.1, "backbone": "resnet18",
    }]
    configs = sample_configs(space, 60, seed=3)
    for cfg in configs:
        resolve_config(cfg)
        assert 1e-4 <= cfg["lr"] <= 1e-2 and 1e-5 <= cfg["weight_decay"] <= 1e-3
        assert 0.0 <= cfg["label_smoothing"] <= 0.2
        assert cfg["batch_size"] in (8, 16) and cfg["backbone"] in ("test_resnet", "resnet18")
        assert cfg["epochs"] == 3 and cfg["method"] == "baseline"
    # loguniform: about half the draws lie below the geometric midpoint 1e-3
    below = sum(cfg["lr"] < 1e-3 for cfg in configs) / len(configs)
    assert 0.3 < below < 0.7
    smoke = space.smoke()
    assert "backbone" not in smoke.params and smoke.fixed["backbone"] == "test_resnet"
    assert smoke.first[0]["backbone"] == "test_resnet" and smoke.first[0]["epochs"] == 1


# ------------------------------------------------------------------ project spaces
def test_every_project_space_file_loads() -> None:
    names = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    assert {"baseline", "gholm", "fgvc"} <= set(names)
    for name in names:
        include = _yaml(name).get("include", [])
        include = [] if include == "all" else include  # every method with a file: none missing by definition
        missing = [m for m in include if not (SPACES_DIR / f"{m}.yaml").is_file()]
        if missing:  # a method space not written yet: the error must say which one
            with pytest.raises(SpaceError, match=repr(missing[0])):
                load_space(name)
            continue
        space = load_space(name)
        for cfg in space.first + space.smoke().first:
            resolve_config(cfg)


def test_gholm_first_is_the_paper_setting() -> None:
    space = load_space("gholm")
    paper = {
        "method": "gholm", "backbone": "convnext_small", "mu": 1.7, "theta_low": 1.0, "theta_high": 2.0,
        "gamma": 0.2, "tau": 0.7, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 16,
        "opt": "sgd", "momentum": 0.9, "sched": "multistep", "lr_milestones": [15, 30], "lr_gamma": 0.1,
    }
    assert len(space.first) == 1
    assert {k: space.first[0][k] for k in paper} == paper
    assert set(space.params) <= set(known_keys("gholm"))
    # the ordering constraint holds by construction
    assert space.params["theta_low"].high <= space.params["theta_high"].low
    smoke = space.smoke()
    assert smoke.fixed["backbone"] == "test_resnet" and smoke.fixed["pretrained"] is False
    assert smoke.fixed["batch_size"] <= 16 and "batch_size" not in smoke.params


# ------------------------------------------------------------------ unions
def _check_union_samples(space: SearchSpace, names: dict[str, str], configs: list[dict[str, Any]]) -> None:
    """Every config holds exactly its method's keys (read from the YAML files),
    passes resolve_config, and every searched value lies in its range."""
    seen: dict[str, int] = {m: 0 for m in names}
    choices_seen: dict[tuple[str, str], set[str]] = {}
    for cfg in configs:
        method = cfg["method"]
        seen[method] += 1
        assert set(cfg) == _expected_keys(names[method]), (method, sorted(cfg))
        resolve_config(cfg)  # unknown keys for the method would raise
        foreign = set().union(*(known_keys(m) for m in names if m != method)) - known_keys(method)
        assert not foreign & set(cfg), (method, foreign & set(cfg))
        for key, raw in _yaml(names[method])["params"].items():
            value = cfg[key]
            if raw["type"] == "choice":
                assert value in raw["values"], (key, value)
                choices_seen.setdefault((method, key), set()).add(repr(value))
            else:
                assert float(raw["low"]) <= value <= float(raw["high"]), (key, value)
                assert isinstance(value, int) == (raw["type"] == "int"), (key, value)
    for method, count in seen.items():
        assert count >= len(configs) / (3 * len(names)), seen
    for (method, key), values in choices_seen.items():
        assert len(values) == len(_yaml(names[method])["params"][key]["values"]), (method, key, values)


def test_union_samples_only_hold_the_chosen_methods_keys() -> None:
    space = load_space("baseline,gholm")
    assert space.is_union and space.methods == ["baseline", "gholm"]
    configs = sample_configs(space, 300, seed=0)
    _check_union_samples(space, {"baseline": "baseline", "gholm": "gholm"}, configs)
    # gholm knobs never leak into baseline configs and vice versa
    assert all("mu" not in c for c in configs if c["method"] == "baseline")
    assert all("label_smoothing" not in c for c in configs if c["method"] == "gholm")


def test_union_with_tpe_sampler_gives_valid_configs() -> None:
    space = load_space("baseline,gholm")
    configs = sample_configs(space, 30, seed=1, sampler="tpe", include_first=True)
    assert configs[:2] == space.first
    _check_union_samples(space, {"baseline": "baseline", "gholm": "gholm"}, configs[2:])


def test_fgvc_space_includes_every_registered_method_with_a_space_file() -> None:
    with_file = [m for m in list_methods() if (SPACES_DIR / f"{m}.yaml").is_file()]
    assert set(with_file) == set(ALL_SIX)
    space = load_space("fgvc")
    assert space.methods == with_file  # registry order
    configs = sample_configs(space, 300, seed=2)
    _check_union_samples(space, {m: m for m in ALL_SIX}, configs)
    assert [c["method"] for c in space.first] == with_file  # one paper point per method, in order


def test_points_to_evaluate_round_trip_into_the_first_configs() -> None:
    space = load_space("baseline,gholm")
    points = space.points_to_evaluate()
    assert [p["method"] for p in points] == ["baseline", "gholm"]
    assert points[1]["gholm:mu"] == 1.7 and "mu" not in points[1]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for point in points:
        study.enqueue_trial(point)
    for expected_name in ("baseline", "gholm"):
        trial = study.ask()
        returned = space.define_by_run(trial)
        cfg = space.to_trial_config({**trial.params, **returned})  # what OptunaSearch hands Ray
        data = _yaml(expected_name)
        assert cfg == {**data["fixed"], **data["first"]}
        study.tell(trial, 0.5)


def test_optuna_search_suggests_paper_configs_first_then_valid_ones() -> None:
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("baseline,gholm")
    search = OptunaSearch(space=space.define_by_run, metric="val_acc", mode="max",
                          points_to_evaluate=space.points_to_evaluate(), seed=0)
    raw = [search.suggest(f"t{i}") for i in range(8)]
    for i, r in enumerate(raw):
        search.on_trial_complete(f"t{i}", {"val_acc": 0.1 * i})
    # what Ray hands the trainable: flat, the method's knobs under "<method>:<key>" (Ray nests only on "/")
    assert raw[1]["method"] == "gholm" and raw[1]["gholm:mu"] == 1.7 and "mu" not in raw[1]
    assert not any(isinstance(v, dict) for r in raw for v in r.values())
    configs = [to_trial_config(r) for r in raw]
    assert configs[0] == space.first[0] and configs[1] == space.first[1]
    assert configs[1]["backbone"] == "convnext_small" and configs[1]["theta_high"] == 2.0
    for cfg in configs[2:]:
        assert all("/" not in k and not isinstance(v, dict) for k, v in cfg.items())
        assert set(cfg) == _expected_keys(cfg["method"])
        resolve_config(cfg)
    assert len({repr(sorted(c.items())) for c in configs}) == len(configs)


def test_list_valued_choices_reach_the_config_as_lists(tmp_path: Path) -> None:
    """Optuna cannot store lists: they travel as JSON strings and are decoded."""
    _write(tmp_path, """\
fixed: {method: gholm, backbone: test_convnext}
params:
  lr_milestones: {type: choice, values: [[10, 20], [15, 30]]}
  mu: {type: uniform, low: 1.5, high: 2.2}
first: {lr_milestones: [15, 30], mu: 1.7}
""", "ms.yaml")
    union_file = _write(tmp_path, "include: [baseline, ms.yaml]\n", "both.yaml")
    for space in (load_space(str(tmp_path / "ms.yaml")), load_space(str(union_file))):
        configs = sample_configs(space, 40, seed=0, include_first=True)
        assert configs[: len(space.first)] == space.first
        gholm = [c for c in configs if c["method"] == "gholm"]
        assert {tuple(c["lr_milestones"]) for c in gholm} == {(10, 20), (15, 30)}
        assert all(isinstance(c["lr_milestones"], list) for c in gholm)
    from ray.tune.search.optuna import OptunaSearch

    union = load_space(str(union_file))
    search = OptunaSearch(space=union.define_by_run, metric="val_acc", mode="max",
                          points_to_evaluate=union.points_to_evaluate())
    first = [to_trial_config(search.suggest(f"t{i}")) for i in range(2)]
    assert first == union.first and first[1]["lr_milestones"] == [15, 30]


# ------------------------------------------------------------------ overrides
def test_apply_overrides_fixes_keys_and_rejects_unknown_ones() -> None:
    space = load_space("gholm")
    fixed = space.apply_overrides({"lr": 0.01, "epochs": 3, "data": "cub"})
    assert "lr" not in fixed.params and fixed.fixed["lr"] == 0.01
    assert fixed.first[0]["lr"] == 0.01 and fixed.first[0]["mu"] == 1.7 and fixed.first[0]["data"] == "cub"
    assert {c["lr"] for c in sample_configs(fixed, 20)} == {0.01}
    assert "lr" in space.params  # the original is untouched
    with pytest.raises(SpaceError, match=r"'lerning_rate'.*"):
        space.apply_overrides({"lerning_rate": 0.1})
    with pytest.raises(SpaceError, match="'weight_decay'"):
        space.apply_overrides({"weight_decy": 0.1})
    with pytest.raises(SpaceError, match="backbone"):
        space.apply_overrides({"backbone": "not_a_backbone"})
    with pytest.raises(SpaceError, match="batch_size"):
        space.apply_overrides({"batch_size": 0})  # resolve_config: must be positive


def test_union_overrides_go_to_the_methods_that_know_the_key() -> None:
    space = load_space("baseline,gholm")
    out = space.apply_overrides({"mu": 1.9, "epochs": 5})
    assert out.member("gholm").fixed["mu"] == 1.9 and "mu" not in out.member("gholm").params
    assert "mu" not in out.member("baseline").fixed and out.member("baseline").fixed["epochs"] == 5
    assert out.fixed_value("epochs") == 5
    with pytest.raises(SpaceError, match="'tau'"):
        space.apply_overrides({"tua": 0.5})
    only = space.apply_overrides({"method": "gholm"})
    assert not only.is_union and only.methods == ["gholm"]
    with pytest.raises(SpaceError, match="'lgamm'"):
        space.apply_overrides({"method": "lgamm"})
    smoke = space.smoke()
    assert smoke.member("gholm").fixed["backbone"] == "test_resnet"
    assert smoke.member("baseline").fixed["backbone"] == "test_resnet"
    with pytest.raises(SpaceError, match="batch_size"):
        space.fixed_value("batch_size")  # searched


def test_union_errors(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="'baseline' comes from both"):
        load_space("baseline,baseline")
    with pytest.raises(SpaceError, match="'nonexistent' not found.*Fix"):
        load_space("baseline,nonexistent")
    a = _write(tmp_path, "include: [b.yaml]\n", "a.yaml")
    _write(tmp_path, "include: [a.yaml]\n", "b.yaml")
    with pytest.raises(SpaceError, match="circular"):
        load_space(str(a))
    bad = _write(tmp_path, "include: [baseline]\nparams:\n  lr: {type: uniform, low: 0.1, high: 0.2}\n", "u.yaml")
    with pytest.raises(SpaceError, match="u.yaml: params"):
        load_space(str(bad))
    bad_smoke = _write(tmp_path, "include: [baseline, gholm]\nsmoke:\n  drop_rate: 0.2\n", "s.yaml")
    with pytest.raises(SpaceError, match="smoke.drop_rate"):
        load_space(str(bad_smoke))
    ok = _write(tmp_path, "include: [baseline, gholm]\nfixed:\n  epochs: 7\nsmoke:\n  epochs: 1\n", "ok.yaml")
    union = load_space(str(ok))
    assert union.fixed_value("epochs") == 7 and union.smoke().fixed_value("epochs") == 1


def test_to_trial_config_rejects_foreign_or_conflicting_knobs() -> None:
    assert to_trial_config({"method": "gholm", "gholm:mu": 1.8, "lr": 0.1}) == {"method": "gholm", "mu": 1.8, "lr": 0.1}
    with pytest.raises(SpaceError, match="'baseline'"):
        to_trial_config({"method": "gholm", "baseline:label_smoothing": 0.1})
    with pytest.raises(SpaceError, match="'lr' twice"):
        to_trial_config({"method": "gholm", "gholm:lr": 0.1, "lr": 0.2})


def test_parse_overrides_reads_yaml_values() -> None:
    got = parse_overrides(["lr=1e-3", "epochs=2", "backbone=resnet50", "lr_milestones=[5, 8]", "pretrained=false"])
    assert got == {"lr": 1e-3, "epochs": 2, "backbone": "resnet50", "lr_milestones": [5, 8], "pretrained": False}
    assert isinstance(got["lr"], float) and isinstance(got["epochs"], int)
    with pytest.raises(SpaceError, match="key=value"):
        parse_overrides(["epochs"])


def test_describe_lists_every_knob_with_its_first_value() -> None:
    text = load_space("baseline,gholm").describe()
    for key in _yaml("gholm")["params"]:
        assert key in text
    assert "mu" in text and "1.7" in text and "loguniform [0.0001, 0.01]" in text
    assert "method gholm" in text and "method baseline" in text


# ------------------------------------------------------------------ one validation entry point
GHOLM_SPACE = """\
fixed: {method: gholm, backbone: test_convnext}
params:
  mu:         {type: uniform, low: 1.5, high: 2.2}
  theta_low:  {type: uniform, low: 0.8, high: 1.5}
  theta_high: {type: uniform, low: 1.2, high: 2.5}
first: {mu: 1.7, theta_low: 1.0, theta_high: 2.0}
"""
PLACES = {
    # id: (old text, new text, where the message must point)
    "fixed": ("backbone: test_convnext}", "backbone: test_convnext, gamma: -1}", "fixed.gamma"),
    "range_low": ("{type: uniform, low: 1.5, high: 2.2}", "{type: uniform, low: -1, high: 2.2}", "params.mu"),
    "range_high": ("{type: uniform, low: 1.5, high: 2.2}", "{type: uniform, low: 1.5, high: 6}", "params.mu"),
    "choice": ("{type: uniform, low: 1.5, high: 2.2}", "{type: choice, values: [1.7, -0.5]}", "params.mu"),
    "first": ("theta_low: 1.0, theta_high: 2.0}", "theta_low: 1.4, theta_high: 1.3}", "first"),
    "smoke": ("backbone: test_convnext}\n", "backbone: test_convnext, gamma: 0.2}\nsmoke: {gamma: -1}\n", "smoke"),
}


@pytest.fixture()
def strict_mu(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """check_values with knob ranges (mu and gamma in [0, 5], theta_low <= theta_high),
    recording every call: the space loader must consult it for every value."""
    import search.spaces.checks as checks
    from fgmodels.config import ConfigError

    real, calls = checks.check_values, []

    def check_values(method: str, values: dict[str, Any]) -> dict[str, Any]:
        calls.append(dict(values))
        for key in ("mu", "gamma"):
            if key in values and not 0 <= values[key] <= 5:
                raise ConfigError(f"{key} must lie in [0, 5], got {values[key]!r}. Fix: choose {key} in [0, 5]")
        low, high = values.get("theta_low", 1.0), values.get("theta_high", 2.0)
        if low > high:
            raise ConfigError(f"theta_low ({low}) must be <= theta_high ({high}). Fix: lower theta_low")
        return real(method, values)

    monkeypatch.setattr(checks, "check_values", check_values)
    return calls


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_value_of_a_space_is_judged_by_check_values(tmp_path: Path, strict_mu: list, place: str) -> None:
    old, new, where = PLACES[place]
    assert GHOLM_SPACE.count(old) == 1, f"test setup: {old!r} must occur once"
    text = GHOLM_SPACE.replace(old, new)
    path = _write(tmp_path, text, "g.yaml")
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    msg = str(info.value)
    assert "g.yaml" in msg and f": {where}" in msg and "Fix:" in msg, msg
    assert ("[0, 5]" in msg) or ("theta_low (1.4) must be <= theta_high (1.3)" in msg), msg


def test_set_values_are_judged_by_check_values(tmp_path: Path, strict_mu: list) -> None:
    space = load_space(str(_write(tmp_path, GHOLM_SPACE, "g.yaml")))
    with pytest.raises(SpaceError, match=r"--set: override\.mu: mu must lie in \[0, 5\], got -1\. Fix: choose mu"):
        space.apply_overrides({"mu": -1}, "--set")
    # a new constant is checked against the knobs still searched: theta_low may reach 1.5
    with pytest.raises(SpaceError, match=r"--set: params\.theta_low: theta_low \(1\.5\) must be <= theta_high \(1\.4\)"):
        space.apply_overrides({"theta_high": 1.4}, "--set")
    calls = len(strict_mu)
    ok = space.apply_overrides({"mu": 2.0}, "--set")
    assert ok.fixed["mu"] == 2.0 and ok.first[0]["mu"] == 2.0
    assert any(c.get("mu") == 2.0 for c in strict_mu[calls:])


def test_out_of_range_values_are_refused_when_read(tmp_path: Path) -> None:
    """With the project's own checks: a range bound or --set value the trainer would refuse."""
    bad = _write(tmp_path, GOOD.replace("{type: loguniform, low: 1e-4, high: 1.0e-2}",
                                        "{type: uniform, low: -1.0, high: 1.0e-2}"))
    with pytest.raises(SpaceError, match=r"user_space\.yaml: params\.lr: .*'lr'.*Fix:"):
        load_space(str(bad))
    with pytest.raises(SpaceError, match=r"--set: override\.lr: .*'lr'"):
        load_space(str(_write(tmp_path, GOOD, "ok.yaml"))).apply_overrides({"lr": -1.0}, "--set")


def test_gholm_knob_ranges_are_refused_on_load_and_set(tmp_path: Path) -> None:
    import fgmodels.config

    if not hasattr(fgmodels.config, "check_values"):
        pytest.skip("fgmodels.config.check_values (knob ranges) not merged yet")
    bad = _write(tmp_path, GHOLM_SPACE.replace("{type: uniform, low: 1.5, high: 2.2}", "{type: uniform, low: -1, high: 2}"))
    with pytest.raises(SpaceError, match=r"params\.mu: .*mu"):
        load_space(str(bad))
    with pytest.raises(SpaceError, match=r"--set: override\.mu: .*mu"):
        load_space("gholm").apply_overrides({"mu": -1}, "--set")


# ------------------------------------------------------------------ include: all
def test_include_all_takes_every_registered_method_with_a_space_file(tmp_path: Path) -> None:
    for name in ("gholm", "baseline"):
        (tmp_path / f"{name}.yaml").write_text((SPACES_DIR / f"{name}.yaml").read_text())
    _write(tmp_path, "description: all\ninclude: all\n", "everything.yaml")
    space = load_space("everything", spaces_dir=tmp_path)
    assert space.methods == ["baseline", "gholm"]  # registry order; no other method has a file here
    (tmp_path / "lgam.yaml").write_text((SPACES_DIR / "lgam.yaml").read_text())  # a method gains a space file
    space = load_space("everything", spaces_dir=tmp_path)
    assert space.methods == [m for m in list_methods() if m in ("baseline", "gholm", "lgam")]
    assert [c["method"] for c in space.first] == space.methods
    assert load_space("baseline,gholm", spaces_dir=tmp_path).methods == ["baseline", "gholm"]  # lists still work
