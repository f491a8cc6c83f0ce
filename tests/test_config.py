import pytest

from dstcl.config import PRESETS, RunConfig, resolve
from dstcl.errors import ConfigError


def test_defaults_are_the_offline_digits_run():
    cfg = resolve({})
    assert cfg.dataset == "digits" and cfg.tasks == 5 and cfg.backbone == "cnn"
    assert cfg.sparsity == 0.8 and cfg.density == pytest.approx(0.2)


@pytest.mark.parametrize(
    "name, tasks, epochs, freq, batch",
    [("cifar100-5", 5, 100, 100, 64), ("cifar100-10", 10, 100, 400, 64),
     ("cifar100-20", 20, 25, 100, 64), ("miniimagenet-10", 10, 100, 400, 128)],
)
def test_presets_carry_the_reference_settings(name, tasks, epochs, freq, batch):
    cfg = resolve({}, preset=name)
    assert (cfg.tasks, cfg.epochs, cfg.update_frequency, cfg.batch_size) == (tasks, epochs, freq, batch)
    assert cfg.backbone == "resnet18"


def test_precedence_flags_over_file_over_preset(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 7\ngrowth: gradient\nsparsity: 0.9\n")
    cfg = resolve({"epochs": 3}, preset="cifar100-10", config_file=path)
    assert cfg.epochs == 3 and cfg.growth == "gradient" and cfg.sparsity == 0.9 and cfg.tasks == 10


def test_resolved_config_round_trips(tmp_path):
    import json

    cfg = resolve({"growth": "random@0-1,gradient"})
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg.as_dict()))
    assert resolve({}, config_file=path) == cfg


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet' (did you mean 'miniimagenet'?); valid: cifar10, cifar100, digits, miniimagenet"),
        ({"backbone": "vgg"}, "unknown backbone 'vgg'"),
        ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
        ({"sparsity": "lots"}, "sparsity must be a number"),
        ({"tasks": 0}, "tasks must be an integer from 1 to 100000"),
        ({"init": "ERK2"}, "unknown sparse initialisation (density rule) 'ERK2'; valid: erk, uniform"),
        ({"growth": "magic"}, "unknown growth criterion 'magic'"),
        ({"growth": "random@0-9,gradient"}, "names task 9, but the sequence has 5 tasks"),
        ({"lr": -1}, "lr must be a number in (0, 1e+38]"),
        ({"batch_size": 1}, "batch_size must be an integer from 2 to"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; valid: adam, sgd"),
        ({"device": "tpu"}, "device must be auto, cpu, mps, cuda"),
    ],
)
def test_bad_values_name_field_and_choices(flags, message):
    with pytest.raises(ConfigError) as info:
        resolve(flags)
    assert message in str(info.value)


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="line 2 is not valid YAML"):
        resolve({}, config_file=bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("epocs: 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'epocs' \\(did you mean 'epochs'\\?\\)"):
        resolve({}, config_file=unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve({}, config_file=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'cifar'.*; valid: " + ", ".join(PRESETS)):
        resolve({}, preset="cifar")


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"tasks": 3}, "valid task counts: 1, 2, 5, 10"),
        ({"dataset": "cifar100", "tasks": 7}, "tasks must divide the 100 classes of cifar100"),
        ({"dataset": "cifar100", "num_classes": 12, "tasks": 5}, "12 classes of cifar100 used"),
        ({"dataset": "miniimagenet", "num_classes": 101}, "at most 100"),
        ({"split": "random"}, "split is an option of data set miniimagenet, not of this run's backbone \\(cnn\\) or data set \\(digits\\)"),
        ({"dataset": "miniimagenet", "split": "last100"}, "split must be one of first500, random"),
        ({"growth": "random@0-1,momentum", "optimizer": "sgd", "momentum": 0.0}, "momentum 0 keeps none"),
    ],
)
def test_static_checks_before_any_data_is_read(flags, message):
    with pytest.raises(ConfigError, match=message):
        resolve(flags)


def test_split_option_reaches_the_config():
    assert resolve({"dataset": "miniimagenet", "split": "random"}).split == "random"
    assert resolve({"dataset": "miniimagenet"}).split == "first500"
    assert "split" not in resolve({}).flat()  # digits has a fixed split
    assert resolve({"growth": "momentum", "optimizer": "sgd"}).momentum == 0.9  # SGD's momentum buffer is ranked


def test_unavailable_devices_are_explained(monkeypatch):
    import torch

    from dstcl.run.experiment import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="has 1 GPU"):
        resolve_device("cuda:7")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="not available"):
            resolve_device("mps")


def test_a_bare_off_in_yaml_means_the_choice_off(tmp_path):
    """YAML 1.1 reads ``off`` as false: for a setting whose choices include "off" it means "off"."""
    from dstcl.config import resolve

    path = tmp_path / "run.yaml"
    path.write_text("test_augment: off\neval_logits: all\n")
    cfg = resolve({}, config_file=path)
    assert cfg.test_augment == "off" and cfg.eval_logits == "all"
