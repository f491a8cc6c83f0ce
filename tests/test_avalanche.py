"""DSTPlugin in Avalanche's Naive strategy: exact isolation (BWT 0), DST inside the strategy's own optimizer step,
one subnetwork per experience, heads owned by their own task, evaluation mid-sequence, and clear refusals.

Skipped where Avalanche is not installed (``pip install -e ".[avalanche]"``); seconds to run.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

with warnings.catch_warnings():  # TorchvisionOpsWarning beside a CPU torch (docs/avalanche.md)
    warnings.simplefilter("ignore")
    plugin_module = pytest.importorskip("dstcl.avalanche")

from avalanche.benchmarks import nc_benchmark  # noqa: E402  (after dstcl.avalanche)
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics  # noqa: E402
from avalanche.models import MultiHeadClassifier, MultiTaskModule  # noqa: E402
from avalanche.training import Naive  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin  # noqa: E402

from dstcl.errors import ConfigError, DstclError  # noqa: E402
from dstcl.metrics import bwt  # noqa: E402
from dstcl.sparse import SparseConfig, UpdateEvery  # noqa: E402

DSTPlugin = plugin_module.DSTPlugin
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is several times faster than two on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def split(n_exp: int = 3, per_class: int = 32, *, task_labels: bool = True, from_zero: bool = True, seed: int = 0):
    """Gaussian clusters, two classes per experience: learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    centers = 2 * torch.randn(2 * n_exp, 16, generator=gen)

    def draw(n: int) -> TensorDataset:
        y = torch.arange(2 * n_exp).repeat_interleave(n)
        data = TensorDataset(centers[y] + torch.randn(len(y), 16, generator=gen), y)
        data.targets = y.tolist()
        return data

    return nc_benchmark(draw(per_class), draw(per_class // 2), n_experiences=n_exp, task_labels=task_labels,
                        seed=seed, class_ids_from_zero_in_each_exp=from_zero)


class MultiHeadMLP(MultiTaskModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.heads = MultiHeadClassifier(32, initial_out_features=2)

    def forward_single_task(self, x, task_label):
        return self.heads(self.body(x), task_label)

    def forward(self, x, task_labels):
        return self.heads(self.body(x), task_labels)


class SharedHeadCNN(nn.Module):
    """Biases and BatchNorm (kept per task by the learner); one output layer that every task shares (class ids
    from zero in each experience), each task through its own sparse part of it."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU(), nn.Flatten())
        self.out = nn.Linear(128, classes)

    def forward(self, x):
        return self.out(self.features(x))


def naive(model, *plugins, epochs: int = 4, eval_every: int = -1) -> Naive:
    return Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2), criterion=nn.CrossEntropyLoss(),
                 train_mb_size=16, train_epochs=epochs, eval_mb_size=64, plugins=list(plugins), eval_every=eval_every,
                 evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loss_metrics(experience=True),
                                            loggers=[]))


def accuracies(results: dict, n: int, metric: str = "Top1_Acc_Exp") -> list[float]:
    return [results[f"{metric}/eval_phase/test_stream/Task{j:03d}/Exp{j:03d}"] for j in range(n)]


@torch.no_grad()
def task_logits(plugin, model, benchmark, j: int) -> torch.Tensor:
    """Logits of experience j's test data under task j's subnetwork (between tasks)."""
    data = benchmark.test_stream[j].dataset
    x = torch.stack([data[i][0] for i in range(len(data))])
    plugin.learner.apply_task(plugin.tasks[j])
    was = model.training
    model.eval()
    out = model(x, j) if isinstance(model, MultiTaskModule) else model(x)
    model.train(was)
    return out.clone()


def learn_all(model, plugin, benchmark, *extra, **options):
    """Train each experience, evaluate the whole test stream after each; R and the logits right after learning."""
    strategy = naive(model, plugin, *extra, **options)
    R, losses, logits = [], [], {}
    for experience in benchmark.train_stream:
        strategy.train(experience, eval_streams=[benchmark.test_stream])
        results = strategy.eval(benchmark.test_stream)
        R.append(accuracies(results, len(benchmark.test_stream)))
        losses.append(accuracies(results, len(benchmark.test_stream), "Loss_Exp"))
        logits[experience.current_experience] = task_logits(plugin, model, benchmark, experience.current_experience)
    return strategy, R, losses, logits


@pytest.mark.parametrize("make_model", [MultiHeadMLP, SharedHeadCNN])
def test_isolation_is_exact_and_bwt_is_zero(make_model):
    benchmark = split()
    torch.manual_seed(0)
    model = make_model()
    plugin = DSTPlugin(density=0.3, update_frequency=3, num_tasks=3)
    _, R, losses, logits = learn_all(model, plugin, benchmark)
    for j in range(3):  # bit for bit: the subnetwork, biases and BatchNorm of task j never changed
        assert torch.equal(task_logits(plugin, model, benchmark, j), logits[j])
    # and Avalanche's own evaluation of each experience loads that subnetwork: the same loss, to the last bit
    assert [losses[2][j] for j in range(2)] == [losses[j][j] for j in range(2)]
    assert [R[2][j] for j in range(2)] == [R[j][j] for j in range(2)]
    assert bwt(R) == 0.0
    assert min(R[j][j] for j in range(3)) > 0.7, R  # and every experience was learned


def test_dst_runs_inside_the_strategys_optimizer_step_with_one_subnetwork_per_experience():
    benchmark = split()
    torch.manual_seed(0)
    model = MultiHeadMLP()
    plugin = DSTPlugin(SparseConfig(density=0.3, update_frequency=3), seed=1)
    initial = []

    class MaskSpy(SupervisedPlugin):  # after DSTPlugin in the list: sees the masks start_task sampled
        def before_training_exp(self, strategy, **kwargs):
            initial.append({n: m.clone() for n, m in plugin.learner.current_masks().items()})

    naive(model, plugin, MaskSpy()).train(benchmark.train_stream)
    steps = 4 * 4  # 64 samples in batches of 16, four epochs
    assert plugin.updates_per_task == [UpdateEvery(3).count(steps)] * 3 == [5] * 3
    assert len(plugin.learner.updates) == 15 and all(u.total_dropped > 0 for u in plugin.learner.updates)
    assert plugin.tasks == {0: 0, 1: 1, 2: 2} and len(plugin.reports) == 3
    for layer in plugin.learner.state.layers:
        if not layer.name.startswith("body."):
            continue
        assert len(layer.masks) == 3
        for t, mask in enumerate(layer.masks):
            assert int(mask.sum()) == plugin.learner.counts[layer.name]
            assert not torch.equal(mask, initial[t][layer.name])  # the topology changed within the task
        assert not torch.equal(layer.masks[0], layer.masks[1]) and not torch.equal(layer.masks[1], layer.masks[2])


def test_each_head_belongs_to_its_own_task_though_evaluation_made_it_earlier():
    benchmark = split()
    torch.manual_seed(0)
    model = MultiHeadMLP()
    plugin = DSTPlugin(density=0.3, update_frequency=3)
    strategy = naive(model, plugin)
    strategy.eval(benchmark.test_stream)  # before any training: makes heads 1 and 2, which must not stay
    assert set(model.heads.classifiers) == {"0"}
    learn_all(model, plugin, benchmark)  # evaluates future experiences after each one: their heads come and go
    assert set(model.heads.classifiers) == {"0", "1", "2"}
    for layer in plugin.learner.state.layers:
        if layer.name.startswith("heads.classifiers."):
            task = int(layer.name.split(".")[2])
            assert bool((layer.owner == task).all()), f"{layer.name} is not owned by task {task} alone"


def test_evaluation_in_the_middle_of_an_experience_changes_nothing():
    benchmark = split()
    torch.manual_seed(0)
    model = MultiHeadMLP()
    plugin = DSTPlugin(density=0.3, update_frequency=3)
    seen = []

    class StateSpy(SupervisedPlugin):
        def before_eval(self, strategy, **kwargs):
            self.before = {k: v.clone() for k, v in strategy.model.state_dict().items()}

        def after_eval(self, strategy, **kwargs):
            after = strategy.model.state_dict()
            seen.append(plugin.learner is not None and plugin.learner.task is not None)
            assert all(torch.equal(after[k], v) for k, v in self.before.items())

    strategy, R, losses, logits = learn_all(model, plugin, benchmark, StateSpy(), eval_every=1)  # eval every epoch
    assert True in seen and False in seen  # evaluations ran inside experiences too (a task in progress)
    strategy.eval(benchmark.test_stream[0])  # one earlier experience alone: its weights are put back after it
    assert bwt(R) == 0.0 and [losses[2][j] for j in range(2)] == [losses[j][j] for j in range(2)]
    for j in range(3):
        assert torch.equal(task_logits(plugin, model, benchmark, j), logits[j])


def test_class_incremental_streams_are_refused_with_the_fix():
    benchmark = split(task_labels=False, from_zero=False)
    model = SharedHeadCNN(classes=6)
    strategy = naive(model, DSTPlugin(density=0.3, update_frequency=3))
    strategy.train(benchmark.train_stream[0])
    with pytest.raises(DstclError, match="carries task label 0, already learned") as caught:
        strategy.train(benchmark.train_stream[1])
    assert "task_labels=True" in str(caught.value)


def test_replayed_samples_of_earlier_tasks_are_refused():
    benchmark = split()
    strategy = naive(MultiHeadMLP(), DSTPlugin(density=0.3, update_frequency=3), ReplayPlugin(mem_size=32))
    strategy.train(benchmark.train_stream[0])
    with pytest.raises(DstclError, match="holds samples of task label 0"):
        strategy.train(benchmark.train_stream[1])


def test_options_and_a_task_without_topology_update():
    with pytest.raises(ConfigError, match="no option 'sparsity'"):
        DSTPlugin(sparsity=0.8)
    with pytest.raises(ConfigError, match="not both"):
        DSTPlugin(SparseConfig(), density=0.2)
    assert DSTPlugin(density=0.2, update_frequency=7).config == SparseConfig(density=0.2, update_frequency=7)
    strategy = naive(MultiHeadMLP(), DSTPlugin(density=0.3, update_frequency=100))
    with pytest.raises(ConfigError, match=r"4 batches x 4 epochs = 16 optimizer steps"):
        strategy.train(split().train_stream[0])


def test_importing_dstcl_never_imports_avalanche():
    code = ("import sys, dstcl, dstcl.sparse, dstcl.cli.main, dstcl.deploy; "
            "assert 'avalanche' not in sys.modules and 'torchvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_the_example_runs_and_reports_bwt_zero():
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "avalanche_dst.py"), "--epochs", "4"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "after experience 2" in done.stdout and "BWT is exactly 0" in done.stdout
