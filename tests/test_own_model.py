"""The learner in a training loop it does not own: optimizer hooks, biases and affine BatchNorm, heads added
later, a torchvision ResNet-18. Isolation must stay exact: BWT exactly 0 in every case."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.functional import cross_entropy

from dstcl.sparse import SparseConfig, SparseLearner
from dstcl.train.contract import Learner
from dstcl.train.dense import DenseLearner

PER_TASK, TASKS = 2, 3


class Published(nn.Module):
    """What published models have and dstcl's backbones do not: biases, affine BatchNorm with running statistics."""

    def __init__(self, classes: int = PER_TASK * TASKS):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.features(x))


def batches(task: int, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(100 * task + seed)
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8, generator=g) + task
        yield x, torch.randint(0, PER_TASK, (8,), generator=g)


def learn(model, learner, make_optimizer, steps: int = 12, head=lambda out, t: out[:, PER_TASK * t:PER_TASK * (t + 1)]):
    """A plain loop: the user's optimizer, zero_grad / backward / optimizer.step(); returns each task's logits
    on a fixed batch right after learning it and at the end (in eval mode)."""
    probe = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    right_after, optimizer = [], None
    for task in range(TASKS):
        learner.start_task(task, steps)
        optimizer = make_optimizer(model, optimizer)
        learner.attach(optimizer)
        model.train()
        for x, y in batches(task, steps):
            loss = cross_entropy(head(model(x), task), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        learner.end_task()
        learner.apply_task(task)
        model.eval()
        with torch.no_grad():
            right_after.append(head(model(probe), task).clone())
    at_end = []
    for task in range(TASKS):
        learner.apply_task(task)
        with torch.no_grad():
            at_end.append(head(model(probe), task).clone())
    return right_after, at_end


OPTIMIZERS = {
    "fused adam, new per task": lambda model, old: torch.optim.Adam(model.parameters(), lr=1e-2, fused=True),
    "sgd with momentum and decay": lambda model, old: torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9,
                                                                      nesterov=True, weight_decay=1e-3),
    "one adamw for every task": lambda model, old: old or torch.optim.AdamW(model.parameters(), lr=1e-2,
                                                                            weight_decay=0.1),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_plain_loop_with_its_own_optimizer_keeps_bwt_exactly_zero(name):
    torch.manual_seed(0)
    model = Published()
    learner = SparseLearner(model, SparseConfig(density=0.3, growth="gradient", update_frequency=4),
                            num_tasks=TASKS, heads={"fc.weight": [slice(2 * t, 2 * t + 2) for t in range(TASKS)]})
    right_after, at_end = learn(model, learner, OPTIMIZERS[name])
    for task in range(TASKS):
        assert torch.equal(right_after[task], at_end[task]), f"task {task} changed"
    assert len(learner.updates) >= TASKS * 2  # DST updates happened inside optimizer.step()
    assert set(learner.copies.params) == {"features.0.bias", "features.1.weight", "features.1.bias",
                                          "features.3.bias", "features.4.weight", "features.4.bias", "fc.bias"}
    assert "features.1.running_mean" in learner.copies.buffers


def test_the_hooks_are_the_built_in_step():
    """learner.step() (dstcl's own loop) and a plain optimizer.step() after make_optimizer give the same bits."""
    results = []
    for use_step in (True, False):
        torch.manual_seed(0)
        from conftest import TinyNet

        model = TinyNet()
        learner = SparseLearner(model, SparseConfig(density=0.3, growth="momentum", update_frequency=3), num_tasks=2)
        for task in range(2):
            learner.start_task(task, 9)
            optimizer = learner.make_optimizer("adam", lr=1e-2, weight_decay=1e-4)
            for x, y in batches(task, 9):
                loss = cross_entropy(model(x)[:, 2 * task:2 * task + 2], y)
                optimizer.zero_grad()
                loss.backward()
                learner.step(optimizer) if use_step else optimizer.step()
            learner.end_task()
        results.append([layer.values.clone() for layer in learner.state.layers])
    assert all(torch.equal(a, b) for a, b in zip(*results))


class GrowingHeads(nn.Module):
    """A shared trunk and one head per task, added when the task arrives (as Avalanche's MultiHeadClassifier)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten())
        self.heads = nn.ModuleList()

    def forward(self, x):
        features = self.trunk(x)
        return torch.cat([head(features) for head in self.heads], dim=1)


def test_heads_added_after_the_learner_was_built_are_learned_and_isolated():
    torch.manual_seed(0)
    model = GrowingHeads()
    model.heads.append(nn.Linear(8, PER_TASK))
    learner = SparseLearner(model, SparseConfig(density=0.5, update_frequency=4), num_tasks=TASKS)

    def new_optimizer(model, old):
        if len(model.heads) < learner.learned_tasks + 1:
            raise AssertionError("heads out of step")
        return torch.optim.Adam(model.parameters(), lr=1e-2)

    original_start = learner.start_task

    def start_task(task, steps, **kwargs):
        while len(model.heads) <= task:
            model.heads.append(nn.Linear(8, PER_TASK))  # the framework adds the task's head
        original_start(task, steps, **kwargs)
    learner.start_task = start_task
    right_after, at_end = learn(model, learner, new_optimizer, head=lambda out, t: out[:, PER_TASK * t:PER_TASK * (t + 1)])
    for task in range(TASKS):
        assert torch.equal(right_after[task][:, :PER_TASK], at_end[task][:, :PER_TASK])
    assert {f"heads.{t}.weight" for t in range(TASKS)} <= set(learner.params)
    head2 = learner.state.by_name["heads.2.weight"]
    assert not head2.masks[0].any() and bool(head2.masks[2].all())  # dense for the task that brought it


def test_the_state_follows_the_model_to_another_device():
    from dstcl.sparse.state import LayerState, SparseState

    state = SparseState([LayerState.fresh("w", torch.ones(2, 2))])
    state.follow({"w": torch.device("meta")})
    assert state.layers[0].values.device.type == "meta" and state.layers[0].owner.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_model_moved_to_the_gpu_after_the_learner_was_built():
    torch.manual_seed(0)
    model = Published()
    learner = SparseLearner(model, SparseConfig(density=0.3, update_frequency=4), num_tasks=TASKS)
    model.cuda()
    learner.start_task(0, 8)
    assert all(layer.values.is_cuda for layer in learner.state.layers)


def test_sparse_and_dense_learners_implement_the_contract():
    from conftest import TinyNet

    assert isinstance(SparseLearner(TinyNet(), SparseConfig()), Learner)
    assert isinstance(DenseLearner(TinyNet()), Learner)


@pytest.mark.slow
def test_torchvision_resnet18_learns_ten_tasks_with_bwt_exactly_zero():
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (pip install -e \".[avalanche]\")")
    from dstcl.vision import import_torchvision

    torchvision = import_torchvision()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=100)
    tasks, per_task = 10, 10
    learner = SparseLearner(model, SparseConfig(density=0.2, update_frequency=4), num_tasks=tasks,
                            heads={"fc.weight": [slice(per_task * t, per_task * (t + 1)) for t in range(tasks)]})
    probe = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    right_after = []
    for task in range(tasks):
        learner.start_task(task, 4)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        learner.attach(optimizer)
        model.train()
        g = torch.Generator().manual_seed(task)
        for _ in range(4):
            x, y = torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, per_task, (4,), generator=g)
            loss = cross_entropy(model(x)[:, per_task * task:per_task * (task + 1)], y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        learner.end_task()
        learner.apply_task(task)
        model.eval()
        with torch.no_grad():
            right_after.append(model(probe)[:, per_task * task:per_task * (task + 1)].clone())
    for task in range(tasks):
        learner.apply_task(task)
        with torch.no_grad():
            assert torch.equal(model(probe)[:, per_task * task:per_task * (task + 1)], right_after[task])
