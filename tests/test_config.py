"""Presets, --set overrides, types, errors that name the key, JSON round trip."""

import json

import pytest

from ganzoo import config, registry
from ganzoo.errors import UserError


@pytest.fixture(scope="module")
def dcgan():
    return registry.get("dcgan")


def test_preset_named_like_the_data_is_the_default(dcgan):
    resolved = config.resolve(dcgan)
    assert resolved.preset == "fashion-mnist"
    assert (resolved.config.resolution, resolved.config.channels) == (32, 1)
    folder = config.resolve(dcgan, data="/some/folder")
    assert folder.preset is None and folder.config.resolution == 64


def test_precedence_defaults_preset_set_flags(dcgan):
    resolved = config.resolve(dcgan, preset="celeba-64", sets={"batch_size": "32", "lr": "1e-3", "steps": "7"},
                              flags={"batch_size": 16, "seed": None})
    assert resolved.config.resolution == 64 and resolved.config.lr == 1e-3
    assert resolved.config.batch_size == 16 and resolved.train.steps == 7 and resolved.train.seed == 0
    assert resolved.overrides == {"batch_size": 16, "lr": 1e-3, "steps": 7}


def test_unknown_key_lists_valid_keys_and_suggests(dcgan):
    with pytest.raises(UserError) as err:
        config.resolve(dcgan, sets={"ngff": "3"})
    message = str(err.value)
    assert "'ngff'" in message and "did you mean 'ngf'" in message and "batch_size" in message and "ema_kimg" in message


@pytest.mark.parametrize("key,value", [("ngf", "abc"), ("lr", "fast"), ("compile", "maybe")])
def test_bad_values_name_the_key(dcgan, key, value):
    with pytest.raises(UserError, match=key):
        config.resolve(dcgan, sets={key: value})


def test_bad_precision_and_unknown_preset(dcgan):
    with pytest.raises(UserError, match="precision"):
        config.resolve(dcgan, sets={"precision": "fp8"})
    with pytest.raises(UserError, match="unknown preset 'nope'.*celeba-64"):
        config.resolve(dcgan, preset="nope")


def test_split_assignments():
    assert config.split_assignments(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UserError, match="key=value"):
        config.split_assignments(["novalue"])


def test_parse_value_types():
    assert config.parse_value("on", bool, "k") is True
    assert config.parse_value("3", int, "k") == 3
    assert config.parse_value("0.5,0.9", tuple[float, ...], "k") == (0.5, 0.9)
    assert config.parse_value("none", int | None, "k") is None


def test_json_round_trip(dcgan):
    resolved = config.resolve(dcgan, sets={"ngf": "32", "ema_kimg": "2.5"}, flags={"steps": 9})
    record = json.loads(json.dumps(resolved.to_dict()))
    again = config.from_dict(dcgan, record)
    assert again == resolved


@pytest.mark.parametrize("key,value,message", [
    ("optimizer", "sgd", "optimizer='sgd': must be one of auto, fused, foreach, plain \\(from --set\\)"),
    ("data_on_device", "always", "data_on_device='always': must be one of auto, off \\(from --set\\)"),
])
def test_bad_trainer_choices_name_the_key_and_the_choices(dcgan, key, value, message):
    with pytest.raises(UserError, match=message):
        config.resolve(dcgan, sets={key: value})


@pytest.mark.parametrize("choice,foreach,fused", [("plain", False, False), ("foreach", True, None),
                                                  ("fused", None, True)])
def test_the_optimizer_option_picks_the_adam_implementation(dcgan, tmp_path, choice, foreach, fused):
    from ganzoo.testing import synthetic_data
    from ganzoo.train.trainer import Trainer

    resolved = config.resolve(dcgan, preset="smoke", flags={"device": "cpu", "optimizer": choice})
    trainer = Trainer(dcgan, resolved, synthetic_data(dcgan, resolved.config), tmp_path)
    for optimizer, _ in trainer.optimizers.values():
        assert optimizer.defaults["foreach"] == foreach and optimizer.defaults["fused"] == fused
