import warnings

import pytest
import torch
from torch import nn

from conftest import TinyNet, train_steps
from dstcl.errors import ConfigError, DstclError
from dstcl.sparse import GROW, CapacityWarning, SparseConfig, SparseLearner, register_grow
from dstcl.sparse.criteria import LayerView, gradient_growth, grow_scores, momentum_growth


def make(config=None, seed=0, num_tasks=3, net_seed=0):
    torch.manual_seed(net_seed)
    model = TinyNet()
    learner = SparseLearner(model, config or SparseConfig(density=0.3, update_frequency=5), seed=seed, num_tasks=num_tasks)
    return model, learner


def as_bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().view(torch.int32)


def test_initial_mask_has_exact_counts_and_values():
    model, learner = make(SparseConfig(density=0.3, init="uniform"))
    initial = {n: p.detach().clone() for n, p in learner.params.items()}
    learner.start_task(0, 10_000)
    for name, mask in learner.current_masks().items():
        assert int(mask.sum()) == learner.counts[name]
        param = learner.params[name]
        # task 0 starts from the network's own (Kaiming) draw, zero elsewhere
        assert torch.equal(param[mask], initial[name][mask])
        assert torch.all(as_bits(param[~mask]) == 0)


def test_initial_mask_is_uniform_over_free_and_owned_positions():
    # after task 0 owns ~30 % of each layer, task 1's initial masks hit owned positions in proportion
    model, learner = make(SparseConfig(density=0.3, init="uniform"))
    learner.start_task(0, 10_000)
    learner.end_task()
    owned = {l.name: l.owner >= 0 for l in learner.state.layers}
    hits, total = 0.0, 0.0
    for seed in range(30):
        learner.generator.manual_seed(seed)
        learner.start_task(1, 10_000)
        for name, mask in learner.current_masks().items():
            hits += float((mask & owned[name]).sum())
            total += float(mask.sum())
        learner.task, learner._layers = None, []  # discard the sampled task
    share_owned = sum(float(o.sum()) for o in owned.values()) / sum(o.numel() for o in owned.values())
    assert hits / total == pytest.approx(share_owned, abs=0.03)


@pytest.mark.parametrize("free_init", ["zero", "kaiming"])
def test_free_init_of_later_tasks(free_init):
    model, learner = make(SparseConfig(density=0.4, free_init=free_init))
    learner.start_task(0, 10_000)
    learner.end_task()
    learner.start_task(1, 10_000)
    free_active = []
    for layer in learner._layers:
        sel = layer.mask & ~layer.frozen
        free_active.append(layer.param[sel])
        # reused (owned) weights start at their stored values
        used = layer.mask & layer.frozen
        assert torch.equal(layer.param[used], layer.state.values[used])
    values = torch.cat(free_active)
    if free_init == "zero":
        assert torch.all(values == 0)
    else:
        assert (values != 0).float().mean() > 0.99


@pytest.mark.parametrize("kind, wd", [("adam", 0.0), ("adam", 0.05), ("sgd", 0.0), ("sgd", 0.05)])
def test_isolation_under_real_optimizer_steps(kind, wd):
    model, learner = make(SparseConfig(density=0.3, growth="gradient", update_frequency=3))
    for task in range(3):
        owned_before = {l.name: (l.owner >= 0).clone() for l in learner.state.layers}
        values_before = {l.name: l.values.clone() for l in learner.state.layers}
        owner_before = {l.name: l.owner.clone() for l in learner.state.layers}
        learner.start_task(task, 20)
        opt = learner.make_optimizer(kind, lr=0.05, momentum=0.9, weight_decay=wd)
        for step in range(20):
            train_steps(model, learner, opt, task, 1, seed=100 * task + step)
            for layer in learner._layers:
                used = layer.mask & layer.frozen
                assert torch.equal(as_bits(layer.param[used]), as_bits(layer.state.values[used]))
                assert torch.all(as_bits(layer.param[layer.inactive]) == 0)
        learner.end_task()
        for layer in learner.state.layers:
            owned = owned_before[layer.name]
            assert torch.equal(as_bits(layer.values[owned]), as_bits(values_before[layer.name][owned]))
            assert torch.equal(layer.owner[owned], owner_before[layer.name][owned])
    # free weights of task 0 did train
    first = learner.state.layers[0]
    assert int((first.owner == 0).sum()) > 0


def test_evaluation_weights_do_not_change_with_later_tasks():
    model, learner = make(SparseConfig(density=0.3, growth="random", update_frequency=4))
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    outputs = {}
    for task in range(3):
        learner.start_task(task, 12)
        opt = learner.make_optimizer("adam", lr=0.01)
        train_steps(model, learner, opt, task, 12, seed=task)
        learner.end_task()
        for j in range(task + 1):
            learner.apply_task(j)
            with torch.no_grad():
                out = model(x)
            if j in outputs:
                assert torch.equal(out, outputs[j])
            outputs[j] = out


@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topology_updates_keep_exact_counts(growth, seed):
    model, learner = make(SparseConfig(density=0.25, growth=growth, update_frequency=2, drop_rate=0.5), seed=seed)
    for task in range(2):
        learner.start_task(task, 30)
        opt = learner.make_optimizer("adam", lr=0.01)
        fired_before = {n: m.clone() for n, m in learner.current_masks().items()}
        reports = train_steps(model, learner, opt, task, 30, seed=seed)
        assert len(reports) == 15
        assert sum(r.total_dropped for r in reports) > 0
        for name, mask in learner.current_masks().items():
            assert int(mask.sum()) == learner.counts[name]
        changed = any(not torch.equal(fired_before[n], m) for n, m in learner.current_masks().items())
        assert changed
        learner.end_task()


def test_grown_free_weights_start_at_zero_with_fresh_optimizer_state():
    for kind in ("adam", "sgd"):
        model, learner = make(SparseConfig(density=0.3, growth="random", update_frequency=1000))
        learner.start_task(0, 10_000)
        opt = learner.make_optimizer(kind, lr=0.05, momentum=0.9)
        train_steps(model, learner, opt, 0, 5)
        before = {n: m.clone() for n, m in learner.current_masks().items()}
        learner.update_topology(opt, 0.5)
        for layer in learner._layers:
            grown = layer.mask & ~before[layer.state.name]
            if not grown.any():
                continue
            assert torch.all(layer.param[grown] == 0)
            for key, value in opt.state[layer.param].items():
                if torch.is_tensor(value) and value.shape == layer.param.shape:
                    assert torch.all(value[grown] == 0), key
        # a step after the update still keeps the grown weights' state consistent and counts exact
        train_steps(model, learner, opt, 0, 2)
        for name, mask in learner.current_masks().items():
            assert int(mask.sum()) == learner.counts[name]


@pytest.fixture
def prefer_frozen():
    @register_grow("prefer_frozen")
    def prefer_frozen(view: LayerView) -> torch.Tensor:
        return view.frozen.float() * 10 + view.uniform()

    yield "prefer_frozen"
    GROW.unregister("prefer_frozen")


def test_grown_owned_weight_keeps_value_and_stays_frozen(prefer_frozen):
    model, learner = make(SparseConfig(density=0.3, growth=prefer_frozen, update_frequency=1000))
    learner.start_task(0, 10_000)
    opt = learner.make_optimizer("adam", lr=0.05)
    train_steps(model, learner, opt, 0, 5)
    learner.end_task()
    learner.start_task(1, 10_000)
    opt = learner.make_optimizer("adam", lr=0.05)
    train_steps(model, learner, opt, 1, 3, seed=1)
    before = {n: m.clone() for n, m in learner.current_masks().items()}
    learner.update_topology(opt, 0.5)
    grown_owned = 0
    for layer in learner._layers:
        grown = layer.mask & ~before[layer.state.name] & layer.frozen
        grown_owned += int(grown.sum())
        assert torch.equal(layer.param[grown], layer.state.values[grown])
    assert grown_owned > 0
    train_steps(model, learner, opt, 1, 5, seed=2)
    for layer in learner._layers:
        used = layer.mask & layer.frozen
        assert torch.equal(layer.param[used], layer.state.values[used])
    learner.end_task()


def test_frozen_candidates_score_zero_for_gradient_and_momentum():
    shape = (4, 4)
    frozen = torch.zeros(shape, dtype=torch.bool)
    frozen[0] = True
    param = torch.randn(shape)
    opt = torch.optim.Adam([nn.Parameter(param)], lr=0.1)
    p = opt.param_groups[0]["params"][0]
    p.grad = torch.randn(shape)
    opt.step()
    view = LayerView(
        name="w", weight=p.detach(), values=param, active=torch.ones(shape, dtype=torch.bool), frozen=frozen,
        fired=torch.ones(shape, dtype=torch.bool), grad=torch.randn(shape), generator=torch.Generator(), task=1,
        momentum_fn=lambda: opt.state[p]["exp_avg"] / (opt.state[p]["exp_avg_sq"].sqrt() + 1e-8),
    )
    for name in ("gradient", "momentum"):  # the policy is applied once, by grow_scores, from the registration
        score = grow_scores(name, view)
        assert torch.all(score[0] == 0)
        assert torch.all(score[1:] > 0)
    assert torch.all(gradient_growth(view)[0] != 0) and torch.all(momentum_growth(view)[0] != 0)  # raw scores
    random_scores = grow_scores("random", view)
    assert torch.all(random_scores[0] > 0)  # random growth may pick frozen weights (reuse)


def test_gradient_is_dense_wrt_masked_weight():
    model, learner = make(SparseConfig(density=0.1))
    learner.start_task(0, 10_000)
    x = torch.randn(8, 3, 8, 8)
    loss = nn.functional.cross_entropy(model(x)[:, :2], torch.randint(0, 2, (8,)))
    loss.backward()
    for layer in learner._layers:
        grad_inactive = layer.param.grad[layer.inactive]
        assert (grad_inactive != 0).float().mean() > 0.25


def test_momentum_growth_needs_momentum():
    model, learner = make(SparseConfig(density=0.3, growth="momentum", update_frequency=2))
    learner.start_task(0, 10)
    opt = learner.make_optimizer("sgd", lr=0.01, momentum=0.0)
    with pytest.raises(ConfigError, match="momentum growth needs"):
        train_steps(model, learner, opt, 0, 2)


def test_an_optimizer_made_elsewhere_keeps_isolation_exact_whatever_it_does():
    """Its own weight decay and moments kept across tasks would move frozen weights: the step hooks put them
    back (and reset its state at frozen positions), so the earlier task's subnetwork stays bit-identical."""
    model, learner = make()
    learner.start_task(0, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)  # one optimizer for every task
    learner.attach(opt)
    train_steps(model, learner, opt, 0, 6)
    learner.end_task()
    before = learner.task_digest(0)
    learner.apply_task(0)
    logits = model(torch.ones(4, 3, 8, 8)).detach().clone()
    learner.start_task(1, 10)
    train_steps(model, learner, opt, 1, 6, seed=1)
    learner.end_task()  # its isolation check passes
    assert learner.task_digest(0) == before
    learner.apply_task(0)
    assert torch.equal(model(torch.ones(4, 3, 8, 8)), logits)


def test_capacity_report_and_full_layer_warning():
    model, learner = make(SparseConfig(density=0.6, init="uniform", growth="random"), num_tasks=3)
    learner.start_task(0, 10_000)
    report0 = learner.end_task()
    for row in report0:
        assert row.reused_fraction == 0.0
        assert row.owned_fraction == pytest.approx(row.active / row.numel)
    learner.start_task(1, 10_000)
    masks = {n: m.clone() for n, m in learner.current_masks().items()}
    owned = {l.name: (l.owner >= 0).clone() for l in learner.state.layers}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report1 = learner.end_task()
    for row in report1:
        reused = int((masks[row.name] & owned[row.name]).sum())
        assert row.reused_fraction == pytest.approx(reused / row.active)
        assert row.owned_fraction == pytest.approx(float((owned[row.name] | masks[row.name]).float().mean()))
    # a full layer is a warning, never a crash; after the last task it limits nothing, so no warning
    learner2 = SparseLearner(TinyNet(), SparseConfig(density=1.0), num_tasks=2)
    learner2.start_task(0, 10_000)
    with pytest.warns(CapacityWarning, match="no free weight is left"):
        learner2.end_task()
    learner2.start_task(1, 10_000)  # still works: everything is reused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner2.end_task()
    assert not [w for w in caught if issubclass(w.category, CapacityWarning)]
    learner3 = SparseLearner(TinyNet(), SparseConfig(density=1.0), num_tasks=1)
    learner3.start_task(0, 10_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner3.end_task()  # the only task fills every layer: nothing left to warn about
    assert not [w for w in caught if issubclass(w.category, CapacityWarning)]


def test_custom_growth_criterion_trains():
    @register_grow("largest_value")
    def largest_value(view: LayerView) -> torch.Tensor:
        """Grow where the stored value is largest."""
        return view.values.abs()

    try:
        model, learner = make(SparseConfig(density=0.3, growth="largest_value", update_frequency=2))
        learner.start_task(0, 10)
        opt = learner.make_optimizer("adam", lr=0.01)
        reports = train_steps(model, learner, opt, 0, 10)
        assert reports and all(r.growth == "largest_value" for r in reports)
        for name, mask in learner.current_masks().items():
            assert int(mask.sum()) == learner.counts[name]
        learner.end_task()
    finally:
        GROW.unregister("largest_value")


def test_per_task_growth_plan_is_followed():
    model, learner = make(SparseConfig(density=0.3, growth="random@0,gradient", update_frequency=2))
    used = []
    for task in range(3):
        learner.start_task(task, 4)
        opt = learner.make_optimizer("adam", lr=0.01)
        used.append({r.growth for r in train_steps(model, learner, opt, task, 4)})
        learner.end_task()
    assert used == [{"random"}, {"gradient"}, {"gradient"}]


def test_bad_config_is_clear():
    with pytest.raises(ConfigError, match="valid: erk, uniform"):
        SparseLearner(TinyNet(), SparseConfig(init="bernoulli"))
    with pytest.raises(ConfigError, match="unknown drop criterion"):
        SparseLearner(TinyNet(), SparseConfig(drop="smallest"))
    with pytest.raises(ConfigError, match="free_init must be one of zero, kaiming"):
        SparseLearner(TinyNet(), SparseConfig(free_init="ones"))
    with pytest.raises(ConfigError, match="names task 5"):
        SparseLearner(TinyNet(), SparseConfig(growth="random@0-5,gradient"), num_tasks=3)
    biased = nn.Sequential(nn.Flatten(), nn.Linear(192, 6))  # its bias is kept per task, not refused
    assert set(SparseLearner(biased, SparseConfig()).copies.params) == {"1.bias"}


def test_task_order_is_enforced():
    model, learner = make()
    with pytest.raises(DstclError, match="next task is 0"):
        learner.start_task(1, 10)
    learner.start_task(0, 10)
    with pytest.raises(DstclError, match="still in progress"):
        learner.start_task(0, 10)


HEADS = {"classifier.weight": [slice(0, 2), slice(2, 4), slice(4, 6)]}


def test_a_task_owns_only_its_own_classifier_rows():
    """With a dense classifier (as ERK's capping gives), task 0 must not freeze later tasks' rows."""
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.99, init="uniform", growth="random", update_frequency=3),
                            num_tasks=3, heads=HEADS)
    owner = learner.state.by_name["classifier.weight"].owner
    for t in range(3):
        learner.start_task(t, 6)
        before = learner.params["classifier.weight"].detach().clone()
        train_steps(model, learner, learner.make_optimizer("adam", lr=0.01), t, 6, seed=t)
        after = learner.params["classifier.weight"].detach()
        mask = learner.current_masks()["classifier.weight"]
        rows = HEADS["classifier.weight"][t]
        trained = (before != after) & mask
        assert trained[rows].any(), "the task's own rows must train"
        report = {row.name: row for row in learner.end_task()}
        # owned: exactly the task's rows of its mask that were free; other tasks' rows stay free
        assert torch.all(owner[rows][mask[rows] & (owner[rows] != t)] < t)
        later = slice(rows.stop, None)
        assert torch.all(owner[later] == -1)
        assert report["classifier.weight"].free == int((owner == -1).sum())
    masks = learner.state.by_name["classifier.weight"].masks
    for t, rows in enumerate(HEADS["classifier.weight"]):  # what a task uses of its own rows is owned
        assert torch.all(owner[rows][masks[t][rows]] >= 0)


def test_heads_keep_isolation_and_survive_a_compact_round_trip():
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.5, growth="gradient", update_frequency=3), num_tasks=3, heads=HEADS)
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    outputs = []
    for t in range(3):
        learner.start_task(t, 6)
        train_steps(model, learner, learner.make_optimizer("adam", lr=0.01), t, 6, seed=t)
        learner.end_task()
        learner.apply_task(0)
        model.eval()
        outputs.append(model(x)[:, 0:2].detach())
    assert all(torch.equal(outputs[0], o) for o in outputs[1:]), "task 0's logits must not change"
    restored = SparseLearner(TinyNet(), SparseConfig(density=0.5), num_tasks=3, heads=HEADS)
    restored.load_state_dict(learner.state_dict())  # compact payload: owner must come back exactly
    for a, b in zip(learner.state.layers, restored.state.layers):
        assert torch.equal(a.owner, b.owner)
        owned = a.owner >= 0
        assert torch.equal(a.values[owned], b.values[owned])


def test_bad_heads_are_explained():
    with pytest.raises(ConfigError, match="not a prunable weight"):
        SparseLearner(TinyNet(), SparseConfig(), num_tasks=3, heads={"fc.weight": HEADS["classifier.weight"]})
    with pytest.raises(ConfigError, match="rows for 2 tasks"):
        SparseLearner(TinyNet(), SparseConfig(), num_tasks=3, heads={"classifier.weight": [slice(0, 2), slice(2, 4)]})
    with pytest.raises(ConfigError, match="non-empty slice"):
        SparseLearner(TinyNet(), SparseConfig(), num_tasks=3, heads={"classifier.weight": [slice(0, 2), slice(6, 8), slice(4, 6)]})
