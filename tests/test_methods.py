"""PackNet, WSN and SupSup on hand-made cases: their masks, what they freeze, what they train, their capacity."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from conftest import TinyNet, train_steps
from dstcl.errors import ConfigError
from dstcl.methods import PackNetLearner, SupSupLearner, WSNLearner
from dstcl.methods.select import region_count, row_region, signed_constant, top_mask
from dstcl.sparse import SparseConfig

HEADS = {"classifier.weight": [slice(0, 2), slice(2, 4), slice(4, 6)]}


class Lines(nn.Module):
    """Two bias-free Linear layers over 4 inputs (40 + 60 weights): small enough to check by hand."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 10, bias=False)
        self.classifier = nn.Linear(10, 6, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.hidden(x)))


def make(kind, model=None, density=0.5, **kwargs):
    torch.manual_seed(0)
    model = model or Lines()
    config = SparseConfig(density=density, init="uniform")
    return kind(model, config, seed=1, num_tasks=3, heads=HEADS, **kwargs), model


def batches(model, learner, optimizer, task, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=gen)
        y = torch.randint(0, 2, (16,), generator=gen)
        loss = nn.functional.cross_entropy(model(x)[:, 2 * task:2 * task + 2], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.step(optimizer)


def run_task(learner, model, task, steps=6, kind="adam", lr=0.05):
    learner.start_task(task, steps)
    optimizer = learner.make_optimizer(kind, lr=lr, momentum=0.0)
    batches(model, learner, optimizer, task, steps, seed=task)
    return learner.end_task()


# --- the pure helpers --------------------------------------------------------------------------------------

def test_top_mask_takes_exactly_k_highest_within_the_region_ties_included():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.3, 0.8]])
    assert top_mask(scores, 2).tolist() == [[False, True, False], [False, False, True]]
    region = row_region((2, 3), slice(1, 2))
    assert top_mask(scores, 2, region).tolist() == [[False, False, False], [True, False, True]]
    assert int(top_mask(torch.ones(5, 5), 7).sum()) == 7  # equal scores: still exactly k
    assert int(top_mask(scores, 99, region).sum()) == 3  # never more than the region holds
    assert region_count(30, 60, region=row_region((6, 10), slice(0, 2))) == 10  # the layer's density in its rows


def test_signed_constant_keeps_the_sign_with_kaimings_std():
    w = torch.tensor([[0.3, -0.2], [-1.0, 0.5]])
    assert torch.equal(signed_constant(w), torch.sign(w) * math.sqrt(2 / 2))


# --- PackNet -------------------------------------------------------------------------------------------------

def test_packnet_keeps_the_largest_weights_it_trained_and_frees_the_rest_at_zero():
    learner, model = make(PackNetLearner, epochs=1, retrain_epochs=0)
    learner.start_task(0, 10)
    with torch.no_grad():
        model.hidden.weight.copy_(torch.arange(40, dtype=torch.float32).view(10, 4) - 20)  # |w| known
    learner.prune()
    kept = learner.masks["hidden.weight"]
    # min(d, 1/T) of the layer: min(20, 40 // 3) = 13 weights, the 13 largest |w| (20..15 and -20..-14)
    assert learner.keep_count("hidden.weight") == 13 and int(kept.sum()) == 13
    magnitudes = (torch.arange(40) - 20).abs().view(10, 4)
    assert magnitudes[kept].min() >= magnitudes[~kept].max()
    assert (model.hidden.weight[~kept] == 0).all()
    head = learner.masks["classifier.weight"]
    assert int(head.sum()) == 10 and not head[2:].any()  # in its own rows, at the layer's density d


def test_packnet_freezes_what_it_kept_and_reuses_it_in_later_tasks():
    learner, model = make(PackNetLearner, epochs=1, retrain_epochs=1)
    first = run_task(learner, model, 0)
    owned0 = learner.state.by_name["hidden.weight"].owner == 0
    values0 = learner.state.by_name["hidden.weight"].values.clone()
    assert int(owned0.sum()) == 13 and (values0[~owned0] == 0).all()  # pruned weights are free again, at zero
    digest = learner.task_digest(0)
    second = run_task(learner, model, 1)
    layer = learner.state.by_name["hidden.weight"]
    assert torch.equal(layer.values[owned0], values0[owned0])  # frozen: bit for bit
    assert learner.task_digest(0) == digest
    mask1 = layer.masks[1]
    assert torch.equal(mask1, layer.owner >= 0) and (mask1 & owned0).sum() == 13  # owned by tasks <= 1
    hidden0, hidden1 = first[0], second[0]
    assert hidden0.new_fraction == hidden1.new_fraction == 13 / 40
    assert hidden1.owned_fraction == 26 / 40 and hidden1.reused_fraction == 0.5 and hidden1.active == 26


def test_packnet_retrain_phase_trains_only_the_kept_weights():
    learner, model = make(PackNetLearner, epochs=2, retrain_epochs=1)
    learner.start_task(0, 6)  # 4 main-phase steps, then the pruning, then 2 retraining steps
    optimizer = learner.make_optimizer("adam", lr=0.05)
    batches(model, learner, optimizer, 0, 4)
    assert learner.pruned and learner.prune_at == 4
    kept = learner.masks["hidden.weight"].clone()
    before = model.hidden.weight.detach().clone()
    batches(model, learner, optimizer, 0, 2, seed=9)
    after = model.hidden.weight.detach()
    assert (after[~kept] == 0).all() and not torch.equal(after[kept], before[kept])


def test_packnet_refuses_kept_epoch_best_train():
    from dstcl.config import resolve
    from dstcl.methods import build_packnet

    cfg = resolve({"method": "packnet", "kept_epoch": "best-train"})
    with pytest.raises(ConfigError, match="kept-epoch"):
        build_packnet(cfg, Lines(), HEADS)


# --- WSN -------------------------------------------------------------------------------------------------------

def test_wsn_gradients_go_straight_through_to_scores_and_only_to_selected_free_weights():
    learner, model = make(WSNLearner)
    run_task(learner, model, 0)
    learner.start_task(1, 1)
    optimizer = learner.make_optimizer("sgd", lr=0.1, momentum=0.0)
    name = "hidden.weight"
    mask, frozen = learner.masks[name].clone(), learner.frozen[name].clone()
    assert int(mask.sum()) == 20 and (mask & frozen).any()  # top 50 % of |score|, reusing task 0's weights
    full, scores = learner.full[name].detach().clone(), learner.scores[name].detach().clone()
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    nn.functional.cross_entropy(model(x)[:, 2:4], y).backward()
    grad = model.hidden.weight.grad.clone()
    learner.step(optimizer)
    torch.testing.assert_close(learner.scores[name].detach(), scores - 0.1 * grad * full * torch.sign(scores))
    moved = learner.full[name].detach() != full
    assert not (moved & ~mask).any() and not (moved & frozen).any()  # unselected and frozen weights stay
    assert torch.equal(learner.masks[name], top_mask(learner.scores[name].abs(), 20))
    assert torch.equal(model.hidden.weight.detach(), torch.where(learner.masks[name], learner.full[name], 0.0))


def test_wsn_owns_the_weights_it_selected_first_and_never_changes_them():
    learner, model = make(WSNLearner)
    first = run_task(learner, model, 0)
    layer = learner.state.by_name["hidden.weight"]
    owned0, values0 = layer.owner == 0, layer.values.clone()
    assert torch.equal(owned0, layer.masks[0]) and first[0].new_fraction == 0.5
    digest = learner.task_digest(0)
    second = run_task(learner, model, 1, steps=12)
    assert torch.equal(layer.values[owned0], values0[owned0]) and learner.task_digest(0) == digest
    mask1 = layer.masks[1]
    new = mask1 & ~owned0
    assert torch.equal(layer.owner == 1, new)
    assert second[0].new_fraction == int(new.sum()) / 40
    assert second[0].reused_fraction == int((mask1 & owned0).sum()) / 20
    head = learner.state.by_name["classifier.weight"]
    assert not head.masks[1][:2].any() and int(head.masks[1][2:4].sum()) == 10  # its own rows only


# --- SupSup ----------------------------------------------------------------------------------------------------

def test_supsup_weights_are_fixed_signed_constants_and_only_masks_are_learned():
    torch.manual_seed(0)
    model = Lines()
    init = model.hidden.weight.detach().clone()
    learner = SupSupLearner(model, SparseConfig(density=0.5, init="uniform"), seed=1, num_tasks=3, heads=HEADS)
    values = learner.state.by_name["hidden.weight"].values
    assert torch.equal(values, torch.sign(init) * math.sqrt(2 / 4))
    fixed = {n: layer.values.clone() for n, layer in learner.state.by_name.items()}
    reports = [run_task(learner, model, t) for t in range(3)]
    assert all(torch.equal(fixed[n], layer.values) for n, layer in learner.state.by_name.items())
    layer = learner.state.by_name["hidden.weight"]
    assert (layer.owner == -1).all()  # nothing owned, nothing frozen
    assert all(int(m.sum()) == 20 for m in layer.masks)
    assert not torch.equal(layer.masks[0], layer.masks[1])  # each task its own mask, from fresh scores
    assert all(row.new_fraction == row.owned_fraction == 0 and row.free == row.numel for r in reports for row in r)


def test_supsup_score_gradient_is_straight_through():
    learner, model = make(SupSupLearner)
    learner.start_task(0, 1)
    optimizer = learner.make_optimizer("sgd", lr=0.1, momentum=0.0)
    name = "hidden.weight"
    scores = learner.scores[name].detach().clone()
    nn.functional.cross_entropy(model(torch.randn(8, 4))[:, :2], torch.randint(0, 2, (8,))).backward()
    grad = model.hidden.weight.grad.clone()
    learner.step(optimizer)
    values = learner.state.by_name[name].values
    torch.testing.assert_close(learner.scores[name].detach(), scores - 0.1 * grad * values * torch.sign(scores))
    assert model.hidden.weight.grad is None  # the weights are not optimized


# --- all three ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [PackNetLearner, WSNLearner, SupSupLearner])
def test_checkpoint_mid_task_continues_bit_for_bit(kind, tiny_net):
    extra = {"epochs": 1, "retrain_epochs": 1} if kind is PackNetLearner else {}

    def fresh():
        torch.manual_seed(0)
        model = TinyNet()
        return kind(model, SparseConfig(density=0.3), seed=2, num_tasks=3, heads=HEADS, **extra), model

    straight, model_a = fresh()
    straight.start_task(0, 10)
    opt_a = straight.make_optimizer("adam", lr=0.01)
    train_steps(model_a, straight, opt_a, 0, 4)
    saved = copy.deepcopy((model_a.state_dict(), straight.state_dict(), opt_a.state_dict()))  # as a file holds them
    train_steps(model_a, straight, opt_a, 0, 6, seed=5)
    straight.end_task()

    resumed, model_b = fresh()
    model_b.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    opt_b = resumed.make_optimizer("adam", lr=0.01)
    opt_b.load_state_dict(saved[2])
    train_steps(model_b, resumed, opt_b, 0, 6, seed=5)
    resumed.end_task()
    for a, b in zip(straight.state.layers, resumed.state.layers):
        assert torch.equal(a.values, b.values) and torch.equal(a.owner, b.owner) and torch.equal(a.masks[0], b.masks[0])


@pytest.mark.parametrize("kind", [PackNetLearner, WSNLearner, SupSupLearner])
def test_structured_subnetworks_are_refused(kind):
    with pytest.raises(ConfigError, match="--structure"):
        kind(Lines(), SparseConfig(density=0.5, structure="channel", free_init="kaiming"), num_tasks=3, heads=HEADS)
