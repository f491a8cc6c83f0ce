"""The protocol switches: each changes what it says and nothing else; the reference protocol resumes exactly."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from torch import nn

from conftest import train_steps
from dstcl.config import protocol_values, resolve, switches
from dstcl.errors import ConfigError
from dstcl.models import MODELS
from dstcl.run.experiment import run_experiment
from dstcl.sparse import SparseConfig, SparseLearner
from dstcl.train.evaluate import EvalSet, EvalProtocol, accuracy
from test_resume import ARGS, assert_same_result, dstcl

HEADS = {"classifier.weight": [slice(0, 2), slice(2, 4), slice(4, 6)]}
SMALL = {"epochs": 3, "tasks": 5, "threads": 1, "progress": False, "device": "cpu", "update_frequency": 10}


def learner_for(model, **sparse):
    config = SparseConfig(**{"density": 0.3, "update_frequency": 5, **sparse})
    return SparseLearner(model, config, seed=3, num_tasks=3, heads=HEADS)


def test_switches_are_declared_once_with_both_values():
    pairs = switches()
    assert set(pairs) == {"counts", "reused_value", "head_ownership", "kept_epoch", "eval_logits", "test_augment",
                          "test_order"}
    assert protocol_values("dstcl") == {n: d for n, (d, _) in pairs.items()}
    assert resolve({"protocol": "reference"}).protocol == "reference"
    with pytest.raises(ConfigError, match="protocol must be one of dstcl, reference"):
        resolve({"protocol": "paper"})
    with pytest.raises(ConfigError, match="counts 'exact'"):
        resolve({"structure": "channel", "counts": "bernoulli"})


def test_a_later_layer_protocol_overrides_earlier_switches(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("eval_logits: task\ncounts: bernoulli\n")
    cfg = resolve({"protocol": "dstcl"}, config_file=config)
    assert cfg.counts == "exact" and cfg.protocol == "dstcl"  # the flags' protocol wins over the file
    assert resolve({"protocol": "reference", "eval_logits": "task"}, config_file=config).eval_logits == "task"


def test_bernoulli_counts_draw_each_position_and_random_growth_changes_the_count(tiny_net):
    exact = learner_for(tiny_net)
    exact.start_task(0, 100)
    counts = {layer.state.name: int(layer.mask.sum()) for layer in exact._layers}
    assert counts == exact.counts
    torch.manual_seed(0)
    model = type(tiny_net)()
    learner = learner_for(model, counts="bernoulli")
    learner.start_task(0, 100)
    drawn = {layer.state.name: int(layer.mask.sum()) for layer in learner._layers}
    big = "features.3.weight"  # 1152 weights at ERK density: a binomial count, not the exact one
    assert drawn[big] != learner.counts[big]
    assert abs(drawn[big] - learner.counts[big]) < 5 * (learner.counts[big] ** 0.5)
    optimizer = learner.make_optimizer("adam", lr=1e-2)
    reports = train_steps(model, learner, optimizer, 0, 20)
    assert reports and all(r.total_dropped for r in reports)
    after = int(learner._layers[1].mask.sum())
    assert after != drawn[big]  # random growth grew a binomial number, not exactly what was dropped
    assert learner.end_task()  # ownership bookkeeping works with any count


def test_gradient_growth_stays_exact_under_bernoulli_counts(tiny_net):
    learner = learner_for(tiny_net, counts="bernoulli", growth="gradient")
    learner.start_task(0, 100)
    before = [int(layer.mask.sum()) for layer in learner._layers]
    optimizer = learner.make_optimizer("adam", lr=1e-2)
    assert train_steps(tiny_net, learner, optimizer, 0, 10)
    assert [int(layer.mask.sum()) for layer in learner._layers] == before


@pytest.mark.parametrize("reused", ["stored", "zero"])
def test_reused_weights_grown_by_an_update_train_at_their_value_or_at_zero(tiny_net, reused):
    learner = learner_for(tiny_net, reused_value=reused, drop_rate=0.9, final_drop_rate=0.9, drop_schedule="constant")
    learner.start_task(0, 100)
    train_steps(tiny_net, learner, learner.make_optimizer("adam", lr=1e-2), 0, 10)
    learner.end_task()
    learner.start_task(1, 100)
    initial = {layer.state.name: layer.mask & layer.frozen for layer in learner._layers}
    train_steps(tiny_net, learner, learner.make_optimizer("adam", lr=1e-2), 1, 5, seed=1)
    grown = 0
    for layer in learner._layers:
        name = layer.state.name
        joined = layer.mask & layer.frozen & ~initial[name] & (layer.state.values != 0)
        grown += int(joined.sum())
        live = layer.param.detach()[joined]
        assert torch.equal(live, layer.state.values[joined] if reused == "stored" else torch.zeros_like(live))
        kept = initial[name] & layer.mask  # reused from the start: their stored value either way
        assert torch.equal(layer.param.detach()[kept], layer.state.values[kept])
    assert grown > 0
    stored = [layer.values.clone() for layer in learner.state.layers]
    learner.end_task()  # the isolation check accepts the zeros; stored values are untouched
    learner.apply_task(1)
    for before, layer in zip(stored, learner.state.layers):
        owned = layer.owner == 0
        assert torch.equal(layer.values[owned], before[owned])
        applied = learner.params[layer.name].detach()
        mask = layer.masks[1]
        assert torch.equal(applied[mask & owned], layer.values[mask & owned])  # evaluated at the stored value


@pytest.mark.parametrize("ownership", ["rows", "mask"])
def test_head_ownership_rows_or_whole_mask(tiny_net, ownership):
    learner = learner_for(tiny_net, head_ownership=ownership)
    learner.start_task(0, 100)
    train_steps(tiny_net, learner, learner.make_optimizer("adam", lr=1e-2), 0, 3)
    learner.end_task()
    head = learner.state.by_name["classifier.weight"]
    later_rows = head.owner[2:]
    in_mask = head.masks[0][2:]
    assert bool(in_mask.any())
    if ownership == "rows":
        assert bool((later_rows == -1).all())  # other tasks' rows stay free for them
    else:
        assert bool((later_rows[in_mask] == 0).all())  # task 0 freezes every row of its mask
    hidden = learner.state.by_name["features.0.weight"]
    assert bool((hidden.owner[hidden.masks[0]] == 0).all())  # hidden layers: the same either way


def test_kept_epoch_best_train_goes_back_to_the_best_epoch(tiny_net):
    from dstcl.train.config import TrainConfig
    from dstcl.train.trainer import TaskTrainer

    learner = learner_for(tiny_net, update_frequency=2)
    x = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 2, (16,))
    trainer = TaskTrainer(tiny_net, learner, 0, x, y, slice(0, 2), lambda xb, g: xb.float() / 255,
                          TrainConfig(epochs=2, batch_size=8, kept_epoch="best-train"),
                          generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    trainer.begin()
    trainer.epochs_done = 1
    trainer._keep_best(0, 60.0)
    best = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    best_masks = {k: m.clone() for k, m in learner.current_masks().items()}
    with torch.no_grad():
        for p in tiny_net.parameters():
            p.add_(1.0)
    learner._layers[0].set_mask(~learner._layers[0].mask)
    trainer.epochs_done = 2  # the last epoch ended, with a lower training accuracy
    trainer._keep_best(1, 55.0)
    assert all(torch.equal(v, best[k]) for k, v in tiny_net.state_dict().items())
    assert all(torch.equal(m, best_masks[k]) for k, m in learner.current_masks().items())
    assert trainer.summary()["kept_epoch"] == 0


class Fixed(nn.Module):
    """Logits fixed per image: class 0 of a 2-class task scores 1; another task's class scores 5 on half."""

    def forward(self, x):
        logits = torch.zeros(len(x), 4)
        logits[:, 0] = 1.0
        logits[: len(x) // 2, 3] = 5.0
        return logits


def test_eval_logits_all_takes_the_argmax_over_every_class():
    data = EvalSet(torch.zeros(8, 1, 2, 2, dtype=torch.uint8) + torch.arange(8).view(8, 1, 1, 1).to(torch.uint8),
                   torch.zeros(8, dtype=torch.int64))
    prepare = lambda xb: xb.float()  # noqa: E731
    assert accuracy(Fixed(), data, slice(0, 2), prepare) == 100.0
    assert accuracy(Fixed(), data, slice(0, 2), prepare, protocol=EvalProtocol(logits="all")) == 50.0


def test_test_augmentation_and_shuffled_order_are_seeded_per_evaluation():
    seen = []

    def prepare(xb, generator=None):
        seen.append((xb.clone(), None if generator is None else generator.initial_seed()))
        return xb.float().flatten(1)

    x = torch.arange(40, dtype=torch.uint8).view(10, 1, 2, 2)
    data = EvalSet(x, torch.zeros(10, dtype=torch.int64))
    model = nn.Linear(4, 2, bias=False)
    shuffled = EvalProtocol(order="shuffled", augment="reference", seed=1)
    for key in ((0, 0, 0), (0, 0, 0), (1, 0, 0)):
        accuracy(model, data, slice(0, 2), prepare, protocol=shuffled, key=key, batch_size=10)
    (first, s1), (again, s2), (other, s3) = seen
    assert torch.equal(first, again) and s1 == s2  # the same evaluation draws the same order and crops
    assert not torch.equal(first, other) and s1 != s3  # another entry of the matrix draws others
    assert EvalProtocol().generator(0, 0, 0) is None  # dstcl's evaluation draws nothing


@pytest.fixture(scope="module")
def dstcl_run(tmp_path_factory):
    return run_experiment(resolve(SMALL), run_dir=tmp_path_factory.mktemp("p") / "dstcl", echo=lambda s: None)


@pytest.mark.parametrize("switch", ["eval_logits", "test_augment", "test_order"])
def test_an_evaluation_switch_changes_the_measurement_not_the_network(dstcl_run, switch, tmp_path):
    value = switches()[switch][1]
    result = run_experiment(resolve({**SMALL, switch: value}), run_dir=tmp_path / switch, echo=lambda s: None)
    want = torch.load(dstcl_run.run_dir / "weights.pt")
    got = torch.load(result.run_dir / "weights.pt")
    assert all(torch.equal(got[k], want[k]) for k in want)  # the same network was trained
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config[switch] == value and config["resolved"]["protocol"] == f"dstcl with {switch}={value}"
    R, R0 = result.metrics["accuracy_matrix"], dstcl_run.metrics["accuracy_matrix"]
    if switch == "test_order":  # digits' test sets fit in one batch: a shuffle must not change a thing
        assert R == R0
    else:
        assert R != R0  # measured differently
    assert result.metrics["evaluation"]["proven"] == 0  # nothing proven: every entry is measured
    assert result.metrics["final_logits_blake2b"] == [None] * 5


@pytest.mark.parametrize("switch", ["counts", "reused_value", "head_ownership", "kept_epoch"])
def test_a_training_switch_changes_the_network(dstcl_run, switch, tmp_path):
    value = switches()[switch][1]
    result = run_experiment(resolve({**SMALL, switch: value}), run_dir=tmp_path / switch, echo=lambda s: None)
    want = torch.load(dstcl_run.run_dir / "weights.pt")
    got = torch.load(result.run_dir / "weights.pt")
    assert not all(torch.equal(got[k], want[k]) for k in want)
    assert result.metrics["bwt"] == 0.0  # still exact isolation under dstcl's evaluation
    events = [json.loads(line) for line in (result.run_dir / "events.jsonl").read_text().splitlines()]
    kept = [e for e in events if e["event"] == "kept_epoch"]
    assert len(kept) == (5 if switch == "kept_epoch" else 0)


def test_reference_protocol_resumes_bit_for_bit(tmp_path):
    import datagen

    data = tmp_path / "data"
    datagen.write_cifar(data, kind="cifar10", train_per_class=40, test_per_class=10, num_classes=6, separable=True)
    args = [*ARGS, "--data-dir", str(data), "--protocol", "reference", "--checkpoint-budget", "1"]
    straight = dstcl("run", *args, "--run-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    for kill_at in ("training_step:40", "evaluation:2"):
        run = tmp_path / kill_at.replace(":", "-")
        killed = dstcl("run", *args, "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": kill_at})
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = dstcl("run", "--resume", str(run))
        assert resumed.returncode == 0, resumed.stderr
        assert_same_result(run, tmp_path / "straight")
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["evaluation"]["proven"] == 0  # random test augmentation: every entry is measured again


@pytest.mark.parametrize("backbone", MODELS.names())
def test_reference_protocol_on_every_backbone(backbone, tmp_path):
    size = {"cnn": {"width": 4}, "mlp": {"width": 16}, "resnet18": {"width": 4}, "mobilenetv2": {"width_mult": 0.25}}
    cfg = resolve({**SMALL, "epochs": 2, "tasks": 2, "num_classes": 4, "backbone": backbone,
                   "protocol": "reference", **size.get(backbone, {})})
    result = run_experiment(cfg, run_dir=tmp_path / backbone, echo=lambda s: None)
    assert result.metrics["status"] == "completed"
    assert json.loads((tmp_path / backbone / "config.json").read_text())["resolved"]["protocol"] == "reference"
