"""One task's trainer, the run hash, plugins and exact density counts, tested directly."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import TinyNet
from dstcl.config import resolve
from dstcl.errors import DstclError
from dstcl.plugins import load_plugins
from dstcl.run.hashing import canonical_value, config_hash, result_settings
from dstcl.sparse import SparseConfig, SparseLearner, layer_counts
from dstcl.train.config import TrainConfig, lr_milestones
from dstcl.train.trainer import TaskTrainer, batch_indices, steps_per_epoch


def test_batches_cover_every_image_once_and_skip_a_lone_last_one():
    assert steps_per_epoch(65, 32) == 2 and steps_per_epoch(66, 32) == 3
    batches = list(batch_indices(66, 32, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [32, 32, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(66))


def test_lr_milestones_follow_the_reference_truncation():
    assert lr_milestones(25, (0.5, 0.75)) == [12, 18]  # int(12.5), int(18.75)
    assert lr_milestones(100, (0.5, 0.75)) == [50, 75]
    assert lr_milestones(2, (0.5, 0.75)) == [1, 1]  # both after epoch 1: the second epoch runs at lr * 0.01


def _trainer(epochs: int, seed: int = 0) -> TaskTrainer:
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.5, update_frequency=3), num_tasks=1)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 255, (40, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 2, (40,), generator=gen)
    prepare = lambda xb, g: xb.float() / 255  # noqa: E731
    return TaskTrainer(model, learner, 0, x, y, slice(0, 2), prepare, TrainConfig(epochs=epochs, batch_size=8, lr=0.01),
                       generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))


def test_epoch_events_report_the_rate_the_epoch_trained_with():
    events = []
    trainer = _trainer(epochs=4)
    trainer.log = events.append
    trainer.begin()
    while not trainer.finished:
        trainer.run_epoch()
    rates = [e["lr"] for e in events if e["event"] == "epoch"]
    assert rates == pytest.approx([0.01, 0.01, 0.001, 0.0001])  # milestones after epochs 2 and 3


def test_a_one_epoch_task_trains_at_the_configured_rate():
    """int(0.5 * 1) = int(0.75 * 1) = 0: MultiStepLR would apply both before the first epoch (lr * 0.01)."""
    assert lr_milestones(1, (0.5, 0.75)) == []
    events = []
    trainer = _trainer(epochs=1)
    trainer.log = events.append
    trainer.begin()
    trainer.run_epoch()
    assert [e["lr"] for e in events if e["event"] == "epoch"] == [0.01]


def test_a_trainer_resumed_between_epochs_continues_bit_identically():
    straight = _trainer(epochs=3)
    straight.begin()
    while not straight.finished:
        straight.run_epoch()
    first = _trainer(epochs=3)
    first.begin()
    first.run_epoch()
    saved_trainer = first.state_dict()
    saved_learner = first.learner.state_dict()
    saved_model = {k: v.clone() for k, v in first.model.state_dict().items()}
    saved_gen = first.generator.get_state()
    second = _trainer(epochs=3)
    second.model.load_state_dict(saved_model)
    second.learner.load_state_dict(saved_learner)
    second.generator.set_state(saved_gen)
    second.load_state_dict(saved_trainer)
    while not second.finished:
        second.run_epoch()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(DstclError, match="checkpoint is for task 0"):
        other = _trainer(epochs=3)
        other.task = 1
        other.load_state_dict(saved_trainer)


def test_the_hash_covers_result_settings_only():
    cfg = resolve({"dataset": "miniimagenet", "width": 20})
    settings = result_settings(cfg)
    assert settings["width"] == 20 and settings["split"] == "first500" and "threads" not in settings
    assert "out" not in settings and "device" not in settings
    saved = {**cfg.flat(), "threads": 2, "resolved": {"density": 0.2}}  # a run's config.json
    assert config_hash(saved) == config_hash(cfg)
    assert config_hash(resolve({"dataset": "miniimagenet", "width": 21})) != config_hash(cfg)
    assert config_hash(resolve({"dataset": "miniimagenet", "width": 20, "threads": 1, "out": "x"})) == config_hash(cfg)
    assert canonical_value(0.1 + 0.2) == canonical_value(0.3) and canonical_value(2.0) == 2


def test_plugins_are_imported_and_a_broken_one_is_named(tmp_path, monkeypatch):
    (tmp_path / "good_plugin.py").write_text("LOADED = True\n")
    (tmp_path / "bad_plugin.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugins({"DSTCL_PLUGINS": "good_plugin"}) == ["good_plugin"]
    with pytest.raises(DstclError, match="cannot import plugin module 'bad_plugin'.*boom"):
        load_plugins({"DSTCL_PLUGINS": "good_plugin, bad_plugin"})
    with pytest.raises(DstclError, match="no_such_module"):
        load_plugins({"DSTCL_PLUGINS": "no_such_module"})


@pytest.mark.parametrize("density", [0.001, 0.0005, 0.01, 0.2])
def test_counts_sum_exactly_even_when_small_layers_need_their_one_weight(density):
    shapes = {"stem": (4, 1, 3, 3), "mid": (64, 64, 3, 3), "big": (512, 512, 3, 3), "head": (10, 512)}
    total = sum(math.prod(s) for s in shapes.values())
    for rule in ("erk", "uniform"):
        counts = layer_counts(shapes, density, rule)
        assert sum(counts.values()) == round(density * total), (rule, counts)
        assert min(counts.values()) >= 1


def test_a_target_below_the_number_of_layers_gives_one_weight_each():
    shapes = {"a": (10, 10), "b": (10, 10), "c": (10, 10)}
    assert layer_counts(shapes, 1 / 300, "uniform") == {"a": 1, "b": 1, "c": 1}  # target 1, three layers
