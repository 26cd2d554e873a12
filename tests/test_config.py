"""The config: paper defaults, profiles, overrides, every validation error, round trips."""
import json
import re

import pytest
import torch

from sdml.training.config import PROFILES, Config, field_names, from_dict, make_config
from sdml.hierarchy.superclasses import superclass_of
from sdml.method.mixup import DEFAULTS, METHODS, resolve_params, sample_ratios


def test_paper_profile_is_the_paper_protocol():
    cfg = make_config("paper")
    assert cfg == make_config()  # the default profile
    assert cfg.profile == "paper"
    assert cfg.data == "cifar100" and cfg.superclasses == "cifar"
    assert cfg.depth == 32 and (cfg.depth - 2) // 6 == 5  # ResNet-32: 5 blocks per stage
    assert cfg.peers == 2
    assert cfg.momentum == 0.9  # Nesterov momentum (the optimiser turns it on when > 0)
    assert cfg.lr == 0.1 and cfg.gamma == 0.1  # lr divided by 10 at each milestone
    assert cfg.weight_decay == 5e-4
    assert cfg.batch_size == 64
    assert cfg.milestones == (60, 120, 180)
    assert cfg.epochs == 200
    assert cfg.method == "superclass-beta"
    assert cfg.alpha == 1.0
    assert (cfg.same_alpha, cfg.diff_alpha) == (8.0, 0.2)
    assert (cfg.same_ratio, cfg.diff_ratio) == (0.5, 0.9)
    assert cfg.temperature == 1.0
    assert cfg.max_steps_per_epoch == 0  # the whole train split


def test_paper_mixing_constants_agree_with_the_mixup_module():
    cfg = make_config()
    assert cfg.alpha == DEFAULTS["mixup"]["alpha"]
    assert (cfg.same_ratio, cfg.diff_ratio) == tuple(DEFAULTS["superclass-choice"].values())
    assert (cfg.same_alpha, cfg.diff_alpha) == tuple(DEFAULTS["superclass-beta"].values())


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_is_valid_and_applies_its_presets(profile):
    cfg = make_config(profile)
    assert cfg.profile == profile
    assert cfg.validate() is cfg
    for name, value in PROFILES[profile].items():
        assert getattr(cfg, name) == (tuple(value) if name == "milestones" else value)
    # fields the profile does not set keep the paper default
    for name in set(field_names()) - set(PROFILES[profile]) - {"profile"}:
        assert getattr(cfg, name) == getattr(Config(), name)


def test_small_profiles_are_small():
    for profile in ("smoke", "demo"):
        cfg = make_config(profile)
        assert cfg.data == "synthetic" and cfg.depth == 8 and cfg.epochs < 20
        assert all(m <= cfg.epochs for m in cfg.milestones)


def test_overrides_apply_on_top_of_the_profile():
    cfg = make_config("smoke", lr=0.2, method="mixup", alpha=0.4, milestones=[1, 2], peers=3, depth=20)
    assert (cfg.lr, cfg.method, cfg.alpha, cfg.peers, cfg.depth) == (0.2, "mixup", 0.4, 3, 20)
    assert cfg.milestones == (1, 2)  # a list becomes a tuple
    assert cfg.data == "synthetic" and cfg.width == 8  # the rest of the profile stays
    assert cfg.profile == "smoke"


def test_round_trip_through_a_dict_and_json():
    cfg = make_config("demo", method="superclass-choice", diff_ratio=0.8, milestones=(3, 6))
    d = cfg.to_dict()
    assert set(d) == set(field_names())
    assert d["milestones"] == [3, 6]
    assert from_dict(d) == cfg
    assert from_dict(json.loads(json.dumps(d))) == cfg
    assert from_dict(make_config().to_dict()) == make_config()


def _raises(field: str, value, **kwargs):
    """make_config(**kwargs) raises a ValueError that starts with the field and quotes the value."""
    with pytest.raises(ValueError) as err:
        make_config(**kwargs)
    msg = str(err.value)
    assert msg.startswith(f"{field}:"), msg
    assert repr(value) in msg, msg
    assert "allowed" in msg, msg


@pytest.mark.parametrize("field,value", [
    ("method", "cutmix"),
    ("method", "Mixup"),
    ("data", "imagenet"),
    ("device", "tpu"),
    ("fuse", "fast"),
    ("compile", "maybe"),
    ("shortcut", "C"),
    ("alpha", 0.0),
    ("alpha", -1.0),
    ("alpha", float("nan")),
    ("same_alpha", 0.0),
    ("diff_alpha", -0.2),
    ("lr", 0.0),
    ("lr", -0.1),
    ("temperature", 0.0),
    ("gamma", 0.0),
    ("depth", 30),
    ("depth", 7),
    ("depth", 2),
    ("depth", 33),
    ("peers", 1),
    ("peers", 0),
    ("batch_size", 1),
    ("batch_size", 0),
    ("wordnet_k", 1),
    ("wordnet_k", 100),
    ("epochs", 0),
    ("width", 0),
    ("eval_batch_size", 0),
    ("max_steps_per_epoch", -1),
    ("seed", -1),
    ("threads", -1),
    ("same_ratio", 1.5),
    ("same_ratio", -0.1),
    ("diff_ratio", 1.01),
    ("momentum", 1.5),
    ("weight_decay", -1e-4),
    ("superclasses", "imagenet"),
    ("superclasses", ""),
    ("peers", 2.0),  # integers only
    ("batch_size", True),
    ("alpha", "1.0"),
    ("lr", True),
])
def test_bad_value_raises_naming_the_field_and_the_value(field, value):
    _raises(field, value, **{field: value})


@pytest.mark.parametrize("milestones", [(120, 60), (60, 60), (0, 10), (60, 120, 100), (1.5, 3)])
def test_milestones_must_increase(milestones):
    _raises("milestones", milestones, milestones=milestones)


def test_bad_profile_raises():
    _raises("profile", "fast", profile="fast")


@pytest.mark.parametrize("value", ["32", 32.0])
def test_depth_must_be_an_integer(value):
    # 32.0 passes the 6n + 2 arithmetic; "32" makes it raise TypeError instead of ValueError
    _raises("depth", value, depth=value)


def test_milestones_must_be_a_sequence():
    _raises("milestones", 60, milestones=60)


def test_unknown_field_raises_in_make_config_and_from_dict():
    with pytest.raises(ValueError, match=r"^learning_rate: not a config field"):
        make_config(learning_rate=0.1)
    d = make_config().to_dict()
    d["nesterov"] = True
    with pytest.raises(ValueError, match=r"^nesterov: not a config field"):
        from_dict(d)


def test_from_dict_validates():
    d = make_config().to_dict()
    d["depth"] = 30
    with pytest.raises(ValueError, match=r"^depth: 30"):
        from_dict(d)


def test_valid_depths_are_accepted():
    for depth in (8, 14, 20, 32, 44, 56, 110):
        assert make_config(depth=depth).depth == depth


# ---------------------------------------------------------------- config -> sample_ratios

@pytest.mark.parametrize("method", METHODS)
def test_mix_params_are_exactly_what_sample_ratios_takes(method):
    cfg = make_config(method=method, alpha=0.7, same_ratio=0.3, diff_ratio=0.8, same_alpha=4.0,
                      diff_alpha=0.5)
    params = cfg.mix_params()
    for name, value in params.items():
        assert value == getattr(cfg, name)
    # superclass-soft also needs the similarity matrix, which the training code loads and adds
    extra = {"similarity": torch.eye(100, dtype=torch.float64)} if method == "superclass-soft" else {}
    assert set(resolve_params(method, {**params, **extra})) == set(params) | set(extra)
    assert set(params) == set(DEFAULTS[method])  # every parameter the method has, nothing else
    y = torch.tensor([0, 1, 2, 3])
    yp = torch.tensor([1, 0, 2, 4])
    if method == "superclass-soft":
        pytest.importorskip("sdml.hierarchy.wordnet", reason="sdml.hierarchy.wordnet is not written yet")
    lam = sample_ratios(method, y, yp, superclass_of(), torch.Generator().manual_seed(0), **params, **extra)
    assert lam.shape == (4,)
    if method == "superclass-choice":
        # apple (0) / aquarium_fish (1) differ; a label with itself is the same superclass
        assert lam[2] == torch.tensor(0.3)
        assert lam[0] in (torch.tensor(0.8), torch.tensor(0.2))


def test_validation_errors_are_actionable():
    with pytest.raises(ValueError) as err:
        make_config(method="cutmix")
    for method in METHODS:  # the message lists what is allowed
        assert method in str(err.value)
    with pytest.raises(ValueError, match=re.escape("6n + 2")):
        make_config(depth=30)
