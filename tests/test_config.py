"""The one validation entry point, ``fgmodels.config.check_values``, and the knob type.

Every bad value must raise ConfigError naming the key (and ending with a fix);
good values pass and come back coerced. Expected defaults and ranges are
written out here, not read from the declarations under test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

import fgmodels.hooks
from fgmodels.config import ConfigError, check_values, known_keys, resolve_config
from fgmodels.knobs import Knob, KnobSet, knob
from fgmodels.methods.base import FGVCMethod
from fgmodels.registry import create_method, register_method


@pytest.mark.parametrize("method,values,key,words", [
    ("gholm", {"mu": -1}, "mu", "> 0"),  # negative
    ("gholm", {"tau": 0.0}, "tau", "> 0"),  # zero where > 0
    ("baseline", {"lr": 0}, "lr", "> 0"),
    ("baseline", {"batch_size": 0}, "batch_size", "> 0"),
    ("baseline", {"epochs": -3}, "epochs", "> 0"),
    ("baseline", {"val_fraction": 1.0}, "val_fraction", "in [0, 1)"),
    ("baseline", {"label_smoothing": 1.5}, "label_smoothing", "in [0, 1]"),
    ("racnn", {"min_tl_frac": 1.0}, "min_tl_frac", "in (0, 1)"),
    ("racnn", {"scales": 1}, "scales", "'baseline'"),  # the hint says what to do instead
    ("gholm", {"mu": "abc"}, "mu", "must be a number"),  # wrong type
    ("baseline", {"epochs": "abc"}, "epochs", "must be an integer"),
    ("baseline", {"epochs": 2.5}, "epochs", "must be an integer"),
    ("baseline", {"batch_size": True}, "batch_size", "must be an integer"),
    ("gholm", {"use_crop": "abc"}, "use_crop", "true or false"),
    ("gholm", {"test_logits": "sum"}, "test_logits", "one of ['raw+crop', 'raw', 'crop']"),
    ("baseline", {"sched": "linear"}, "sched", "one of"),
    ("baseline", {"epochs": None}, "epochs", "must be an integer > 0"),
    ("lgam", {"stages": "5"}, "stages", "1..4"),
    ("baseline", {"lr_milestones": [10, "x"]}, "lr_milestones", "epoch numbers"),
    ("baseline", {"backbone": "resnet5000"}, "backbone", "not a timm model"),  # unknown backbone
    ("baseline", {"opt": "sgdd"}, "opt", "not a timm optimizer"),  # unknown optimizer
    ("atcnn", {"opt_after_switch": "adamm"}, "opt_after_switch", "not a timm optimizer"),
    ("baseline", {"data": "imagenet"}, "data", "not a known dataset"),
    ("baseline", {"method": "gholmm"}, "method", "did you mean 'gholm'"),
    ("baseline", {"switch_epoch": 0}, "switch_epoch", ">= 1"),
])
def test_bad_value_raises_config_error_naming_the_key(method: str, values: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_values(method, values)
    msg = str(info.value)
    assert repr(key) in msg and words in msg and "Fix:" in msg, msg
    assert info.value.key == key


def test_message_names_owner_kind_range_value_and_fix() -> None:
    with pytest.raises(ConfigError) as info:
        check_values("gholm", {"mu": -1})
    assert str(info.value) == "gholm knob 'mu' must be > 0, got -1. Fix: set mu to a number > 0 (default 1.7)."
    with pytest.raises(ConfigError, match=r"^gholm knob 'mu' must be a number, got 'abc'\. Fix:"):
        check_values("gholm", {"mu": "abc"})
    with pytest.raises(ConfigError, match=r"^config key 'lr' must be > 0, got 0\. Fix:"):
        check_values("gholm", {"lr": 0})


@pytest.mark.parametrize("method,values,key", [
    ("gholm", {"theta_low": 2.5}, "theta_low"),  # the default theta_high is 2.0
    ("gholm", {"theta_low": 1.5, "theta_high": 1.2}, "theta_low"),
    ("racnn", {"scales": 2, "test_logits": "scale3"}, "test_logits"),
    ("racnn", {"test_logits": "scale4"}, "test_logits"),  # default scales = 3
    ("clca", {"w_branch3": 0.0, "w_branch4": 0.0, "w_branch5": 0.0, "w_fused": 0}, "w_branch3"),
])
def test_cross_knob_rules_use_defaults_for_keys_not_given(method: str, values: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=repr(key)) as info:
        check_values(method, values)
    assert "Fix:" in str(info.value)
    # the constructor goes through the same check, before any backbone is built
    with pytest.raises(ConfigError, match=repr(key)):
        create_method(method, 3, backbone="test_resnet", **values)


def test_cross_knob_rules_accept_valid_combinations() -> None:
    assert check_values("gholm", {"theta_low": 2.5, "theta_high": 3}) == {"theta_low": 2.5, "theta_high": 3.0}
    assert check_values("racnn", {"scales": 2, "test_logits": "scale2"}) == {"scales": 2, "test_logits": "scale2"}
    assert check_values("clca", {"w_branch3": 0.0, "w_fused": 0.5}) == {"w_branch3": 0.0, "w_fused": 0.5}


@pytest.mark.parametrize("key,hint", [("learning_rate", "'lr'"), ("mmu", "'mu'"), ("thetalow", "'theta_low'")])
def test_unknown_key_refused_with_hint(key: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'.*did you mean {hint}.*Fix:"):
        check_values("gholm", {key: 1})
    # a knob of another method is unknown here
    with pytest.raises(ConfigError, match="unknown config key 'mu'"):
        check_values("baseline", {"mu": 1.7})


def test_unknown_method_refused() -> None:
    with pytest.raises(ConfigError, match="unknown method 'gholmm'.*Did you mean 'gholm'"):
        check_values("gholmm", {})
    with pytest.raises(ConfigError, match="unknown method"):
        resolve_config({"method": "nope"})


def test_good_values_pass_coerced() -> None:
    got = check_values("gholm", {
        "lr": "1e-4", "mu": 2, "epochs": 3.0, "lr_milestones": (5, 10), "checkpoint_path": None,
        "use_crop": False, "backbone": "convnext_small.fb_in22k", "opt": "adamw", "img_size": None,
    })
    assert got == {"lr": 1e-4, "mu": 2.0, "epochs": 3, "lr_milestones": [5, 10], "checkpoint_path": None,
                   "use_crop": False, "backbone": "convnext_small.fb_in22k", "opt": "adamw", "img_size": None}
    assert type(got["lr"]) is float and type(got["mu"]) is float and type(got["epochs"]) is int
    assert check_values("gholm", {}) == {}


def test_resolve_config_fills_defaults_and_coerces(monkeypatch) -> None:
    monkeypatch.setattr(fgmodels.hooks, "hook_keys", lambda: {})  # no training hook installed
    cfg = resolve_config({"method": "gholm", "mu": "1.9", "lr": 2})
    assert cfg["mu"] == 1.9 and cfg["lr"] == 2.0 and type(cfg["lr"]) is float
    assert cfg["backbone"] == "convnext_small"  # the method's paper backbone
    assert cfg["theta_high"] == 2.0 and cfg["epochs"] == 10 and cfg["lr_milestones"] == [15, 30]
    assert "inject_nan_at_step" not in cfg and "simulate_oom_above_batch" not in cfg
    cfg["lr_milestones"].append(99)  # a caller's mutation does not leak into the next config
    assert resolve_config({})["lr_milestones"] == [15, 30]
    with pytest.raises(ConfigError, match="'mu'"):
        resolve_config({"method": "gholm", "mu": -1})


def test_hook_keys_are_accepted_with_any_value(monkeypatch) -> None:
    monkeypatch.setattr(fgmodels.hooks, "hook_keys", lambda: {"inject_nan_at_step": None})
    assert "inject_nan_at_step" in known_keys("gholm")
    assert check_values("gholm", {"inject_nan_at_step": 5}) == {"inject_nan_at_step": 5}
    assert resolve_config({"method": "gholm"})["inject_nan_at_step"] is None
    assert resolve_config({"inject_nan_at_step": "anything"})["inject_nan_at_step"] == "anything"
    monkeypatch.setattr(fgmodels.hooks, "hook_keys", lambda: {})
    with pytest.raises(ConfigError, match="unknown config key 'inject_nan_at_step'"):
        check_values("gholm", {"inject_nan_at_step": 5})


def test_knob_check_details() -> None:
    k = Knob(0.5, gt=0, le=1)
    assert k.requirement == "a number in (0, 1]"
    with pytest.raises(ConfigError, match="in \\(0, 1\\]"):
        k.check(math.nan, "x")  # NaN fails every bound
    assert k.check(1, "x") == 1.0 and k.check(" 5e-1 ", "x") == 0.5
    with pytest.raises(ConfigError, match="must be a number"):
        k.check(True, "x")  # a bool is never a number
    nullable = Knob(None, kind=int, ge=1)
    assert nullable.check(None, "n") is None and nullable.requirement == "an integer >= 1 or null"
    with pytest.raises(TypeError, match="kind"):
        Knob(None)
    assert Knob([1, 2]).check((3,), "l") == [3]
    np = pytest.importorskip("numpy")  # what samplers hand over
    assert type(Knob(1).check(np.int64(3), "i")) is int and Knob(True).check(np.bool_(False), "b") is False
    assert type(Knob(0.5).check(np.float32(0.25), "f")) is float


def test_register_method_rejects_knob_named_like_a_training_key() -> None:
    @dataclass
    class ClashKnobs(KnobSet):
        lr: float = knob(0.1, "a second learning rate", gt=0)

    class Clash(FGVCMethod):
        name = "clash_test_method"
        Knobs = ClashKnobs

    with pytest.raises(TypeError, match=r"\['lr'\].*training keys.*Fix"):
        register_method(Clash)


def test_method_class_may_not_set_hparams_by_hand() -> None:
    with pytest.raises(TypeError, match="derived from the knob declaration"):
        class Old(FGVCMethod):  # noqa: F841
            name = "old_style"
            hparams = {"alpha": 0.5}
