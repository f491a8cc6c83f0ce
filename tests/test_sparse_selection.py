"""The pure topology selector, the criteria's scores, and the fidelity rules of a topology update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TinyNet, train_steps
from dstcl.errors import ConfigError
from dstcl.sparse import GROW, LayerView, SparseConfig, SparseLearner, grow_scores, select_topology, top_positions


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_top_positions_takes_the_highest_scores_exactly():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    eligible = torch.tensor([True, True, True, False, True])
    chosen = top_positions(scores, eligible, 2, gen())
    assert chosen.tolist() == [False, True, True, False, False]  # 0.7 is not eligible
    assert int(top_positions(scores, eligible, 0, gen()).sum()) == 0
    assert top_positions(scores, eligible, 4, gen()).tolist() == eligible.tolist()
    with pytest.raises(RuntimeError, match="cannot select 5"):
        top_positions(scores, eligible, 5, gen())


def test_ties_are_broken_uniformly_at_random_not_by_position():
    scores = torch.zeros(1000)  # e.g. zero gradients everywhere
    eligible = torch.ones(1000, dtype=torch.bool)
    hits = torch.zeros(1000)
    for seed in range(200):
        hits += top_positions(scores, eligible, 100, gen(seed)).float()
    # every position is picked about 200 * 100 / 1000 = 20 times, the first rows no more than the last
    assert hits[:100].mean() == pytest.approx(20, rel=0.2) and hits[-100:].mean() == pytest.approx(20, rel=0.2)
    assert hits.min() > 2
    # ties only among the positions at the threshold: strictly higher scores are always taken
    scores[:30] = 1.0
    for seed in range(5):
        chosen = top_positions(scores, eligible, 50, gen(seed))
        assert chosen[:30].all() and int(chosen.sum()) == 50
    # the same generator state gives the same choice (deterministic for a seed)
    assert torch.equal(top_positions(scores, eligible, 50, gen(3)), top_positions(scores, eligible, 50, gen(3)))


def test_nan_scores_rank_last_and_counts_stay_exact():
    scores = torch.tensor([float("nan"), 0.2, float("nan"), 0.4])
    chosen = top_positions(scores, torch.ones(4, dtype=torch.bool), 3, gen())
    assert int(chosen.sum()) == 3 and chosen[1] and chosen[3]


def test_select_topology_keeps_counts_and_may_regrow_a_dropped_position():
    mask = torch.tensor([True, True, True, False, False, False])
    drop = torch.tensor([0.9, 0.1, 0.5, 0.0, 0.0, 0.0])
    grow = torch.tensor([0.0, 5.0, 0.0, 1.0, 0.0, 0.0])  # position 1 is dropped (lowest) and regrown (highest)
    chosen = select_topology(mask, drop, grow, 2, generator=gen())
    assert int(chosen.mask.sum()) == 3
    assert chosen.kept.tolist() == [True, False, False, False, False, False]
    assert chosen.grown.tolist() == [False, True, False, True, False, False]
    assert not (chosen.kept & chosen.grown).any()
    restricted = select_topology(mask, drop, grow, 2, eligible=~mask, generator=gen())  # only inactive ones grow
    assert restricted.grown.tolist() == [False, False, False, True, True, False] or \
        restricted.grown.tolist() == [False, False, False, True, False, True]
    with pytest.raises(ValueError):
        select_topology(mask, drop, grow, 4)


def _view(frozen_row: bool = True) -> LayerView:
    shape = (4, 4)
    frozen = torch.zeros(shape, dtype=torch.bool)
    frozen[0] = frozen_row
    fired = torch.zeros(shape, dtype=torch.bool)
    fired[1] = True
    return LayerView("w", torch.randn(shape), torch.randn(shape), torch.ones(shape, dtype=torch.bool), frozen, fired,
                     torch.randn(shape), gen(), 1, momentum_fn=lambda: torch.full(shape, -2.0))


def test_growth_scores_of_the_built_in_criteria():
    view = _view()
    random = grow_scores("random", view)
    assert ((random >= 0) & (random < 1)).all()
    unfired = grow_scores("unfired", view)
    assert (unfired[1] < 1).all() and (unfired[2:] >= 1).all()  # never-fired positions first
    assert torch.equal(grow_scores("gradient", view)[1:], view.grad.abs()[1:])
    assert (grow_scores("gradient", view)[0] == 0).all()  # frozen candidates cannot learn: 0
    assert torch.equal(grow_scores("momentum", view)[1:], torch.full((3, 4), 2.0))
    assert GROW.entry("momentum").meta["needs"] == "momentum" and GROW.entry("random").meta["frozen"] == "score"


def test_gradient_growth_before_any_backward_is_a_clear_error():
    view = _view()
    view.grad = None
    with pytest.raises(ConfigError, match="needs the gradient"):
        grow_scores("gradient", view)


def test_a_regrown_free_weight_keeps_its_value_and_optimizer_state():
    """RigL and the reference: only newly activated positions start at zero with fresh state."""
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.3, growth="gradient", update_frequency=10_000), num_tasks=1)
    learner.start_task(0, 10_000)
    opt = learner.make_optimizer("adam", lr=0.01)
    train_steps(model, learner, opt, 0, 5)
    layer = learner._layers[1]
    before_value = layer.param.detach().clone()
    before_m = opt.state[layer.param]["exp_avg"].clone()
    # force every drop candidate to be regrown: the growth score is highest exactly at the active positions
    layer.param.grad = layer.mask.float() * 10.0 + torch.rand(layer.mask.shape) * 0.1
    old_mask = layer.mask.clone()
    report = learner.update_topology(opt, 0.5)
    assert torch.equal(layer.mask, old_mask)  # every dropped weight was grown again
    assert report.regrown[layer.state.name] == report.dropped[layer.state.name] > 0
    assert torch.equal(layer.param.detach(), before_value)
    assert torch.equal(opt.state[layer.param]["exp_avg"], before_m)


def test_a_newly_grown_free_weight_starts_at_zero_with_fresh_state():
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.3, growth="random", update_frequency=10_000), num_tasks=1)
    learner.start_task(0, 10_000)
    opt = learner.make_optimizer("adam", lr=0.01)
    train_steps(model, learner, opt, 0, 5)
    layer = learner._layers[1]
    old_mask = layer.mask.clone()
    learner.update_topology(opt, 0.5)
    newly = layer.mask & ~old_mask
    assert newly.any()
    assert (layer.param.detach()[newly] == 0).all()
    assert (opt.state[layer.param]["exp_avg"][newly] == 0).all()
    assert (opt.state[layer.param]["exp_avg_sq"][newly] == 0).all()


def test_zero_gradient_ties_do_not_cluster_in_the_first_output_filters():
    """Gradient growth on a layer whose gradient is zero everywhere: picks spread over all filters."""
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.1, init="uniform", growth="gradient",
                                                update_frequency=10_000), num_tasks=1)
    learner.start_task(0, 10_000)
    opt = learner.make_optimizer("adam", lr=0.01)
    layer = learner._layers[1]  # 16 x 8 x 3 x 3
    old_mask = layer.mask.clone()
    for l in learner._layers:
        l.param.grad = torch.zeros_like(l.param)
    learner.update_topology(opt, 0.5)
    grown = layer.mask & ~old_mask
    per_filter = grown.flatten(1).sum(1)
    assert int((per_filter > 0).sum()) >= 12, per_filter.tolist()  # old tie-breaking: the first few filters only


def test_static_sparse_training_never_updates():
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.3, update_frequency=0), num_tasks=1)
    learner.start_task(0, 50)
    opt = learner.make_optimizer("adam", lr=0.01)
    masks = {k: v.clone() for k, v in learner.current_masks().items()}
    assert train_steps(model, learner, opt, 0, 50) == []
    assert all(torch.equal(masks[k], v) for k, v in learner.current_masks().items())
    assert not SparseConfig(update_frequency=0).dynamic and not SparseConfig(update_frequency=0,
                                                                             growth="momentum").needs("momentum")


def test_an_optimizer_with_its_own_weight_decay_leaves_inactive_weights_at_zero():
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.3), num_tasks=1)
    learner.start_task(0, 10_000)
    opt = torch.optim.SGD(list(model.parameters()), lr=0.1, weight_decay=0.1)
    model(torch.randn(4, 3, 8, 8)).sum().backward()
    learner.step(opt)
    for name, mask in learner.current_masks().items():
        assert bool((learner.params[name][~mask] == 0).all())


def test_auto_growth_chooses_deterministically_and_resumes_its_bandit():
    from dstcl.sparse.auto import AutoGrowth

    def play(bandit, losses):
        picks = []
        for window in losses:
            for value in window:
                bandit.observe(torch.tensor(value))
            picks.append(bandit.choose()[0])
        return picks

    losses = [[1.0, 0.9], [0.8, 0.7], [0.9, 0.95], [0.6, 0.5], [0.55, 0.5], [0.4, 0.35], [0.5, 0.6], [0.3, 0.2]]
    first = play(AutoGrowth(["random", "unfired", "gradient", "momentum"]), losses)
    again = play(AutoGrowth(["random", "unfired", "gradient", "momentum"]), losses)
    assert first == again and first[:4] == ["random", "unfired", "gradient", "momentum"]  # untried arms first
    half = AutoGrowth(["random", "unfired", "gradient", "momentum"])
    picks = play(half, losses[:5])
    restored = AutoGrowth(["random", "unfired", "gradient", "momentum"])
    restored.load_state_dict(half.state_dict())
    assert picks + play(restored, losses[5:]) == first
    # an arm followed by a larger loss decrease is preferred once every arm has been tried
    bandit = AutoGrowth(["a", "b"], exploration=0.0)
    play(bandit, [[1.0], [0.5], [0.5]])  # a: 1.0 -> 0.5, b: 0.5 -> 0.5
    assert bandit.choose()[0] == "a"
    assert AutoGrowth(["a", "momentum"]).choose(lambda name: name != "a")[0] == "momentum"


def test_auto_growth_in_a_learner_logs_each_choice():
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.3, growth="auto", update_frequency=2), num_tasks=2)
    learner.start_task(0, 20)
    opt = learner.make_optimizer("adam", lr=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 2, (8,), generator=gen)
        loss = nn.functional.cross_entropy(model(x)[:, :2], y)
        opt.zero_grad()
        loss.backward()
        learner.step(opt, loss=loss)
    assert [r.growth for r in learner.updates][:4] == ["gradient", "momentum", "random", "unfired"]
    assert learner.updates[0].auto_reward is None and learner.updates[1].auto_reward is not None
    saved = learner.state_dict()["auto"]
    assert saved["history"][0]["arm"] == "gradient" and len(saved["history"]) == 6


# --- structured (channel) DST ------------------------------------------------------------------------

HEADS6 = {"classifier.weight": [slice(0, 2), slice(2, 4), slice(4, 6)]}


def _channel_learner(growth: str = "gradient") -> tuple[TinyNet, SparseLearner]:
    torch.manual_seed(0)
    model = TinyNet()
    cfg = SparseConfig(density=0.3, init="uniform", growth=growth, update_frequency=3, structure="channel",
                       free_init="kaiming")
    return model, SparseLearner(model, cfg, num_tasks=3, heads=HEADS6)


@pytest.mark.parametrize("growth", ["random", "unfired", "gradient", "momentum"])
def test_channel_masks_stay_whole_channels_with_exact_counts(growth):
    from dstcl.sparse.structure import channel_mask

    model, learner = _channel_learner(growth)
    assert learner.channels == {"features.0.weight": 2, "features.3.weight": 5}  # round(0.3 x 8), round(0.3 x 16)
    for task in range(3):
        learner.start_task(task, 12)
        opt = learner.make_optimizer("adam", lr=0.01)
        train_steps(model, learner, opt, task, 12, seed=task)
        for layer in learner._layers:
            if layer.state.name in learner.channels:
                channels = channel_mask(layer.mask)
                assert int(channels.sum()) == learner.channels[layer.state.name]
                assert torch.equal(layer.mask, channels.view(-1, 1, 1, 1).expand_as(layer.mask))
        learner.end_task()


def test_channel_dst_keeps_isolation_exact():
    model, learner = _channel_learner()
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    outputs = {}
    for task in range(3):
        learner.start_task(task, 12)
        train_steps(model, learner, learner.make_optimizer("adam", lr=0.01), task, 12, seed=task)
        learner.end_task()
        for j in range(task + 1):
            learner.apply_task(j)
            with torch.no_grad():
                out = model(x)[:, 2 * j:2 * j + 2]
            if j in outputs:
                assert torch.equal(out, outputs[j])
            outputs[j] = out
    owner = learner.state.by_name["features.3.weight"].owner
    per_channel = owner.reshape(16, -1)
    assert all(len(set(row.tolist())) == 1 for row in per_channel)  # a channel is owned whole


def test_channel_structure_needs_a_fresh_draw_for_free_channels():
    with pytest.raises(ConfigError, match="structure 'channel' needs free_init 'kaiming'"):
        SparseConfig(structure="channel").validate()
    from dstcl.config import resolve

    assert resolve({"structure": "channel"}).free_init == "kaiming"  # the structured default


def test_a_gathered_network_equals_the_masked_one():
    from dstcl.models import build_model
    from dstcl.models.gather import GatheredBasicBlock, GatheredConv2d, gather_channels

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=20, width=16)
    learner = SparseLearner(model, SparseConfig(density=0.2, init="uniform", structure="channel", free_init="kaiming"),
                            num_tasks=1, heads={"classifier.weight": [slice(0, 20)]})
    learner.start_task(0, 10_000)
    model.eval()
    x = torch.randn(8, 3, 32, 32)
    gathered = gather_channels(model, (3, 32, 32))
    assert any(isinstance(m, GatheredConv2d) for m in gathered.modules())
    small = [m for m in gathered.modules() if isinstance(m, GatheredConv2d)]
    assert all(m.weight.shape[0] < m.out_channels for m in small[1:])  # physically smaller
    blocks = [m for m in gathered.modules() if isinstance(m, GatheredBasicBlock)]
    assert len(blocks) == 8 and all(b.w1.shape[0] < b.conv1.out_channels for b in blocks)  # compact inside
    with torch.no_grad():
        assert torch.allclose(gathered(x), model(x), atol=1e-5)


def test_gathered_training_step_matches_the_masked_one_on_a_later_task():
    """--channel-training gathered: the live-channel network shares the parameters; one step's loss and the
    gradients of active weights equal the masked network's, inactive channels get no gradient."""
    from dstcl.models import build_model
    from dstcl.models.gather import gather_channels

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=20, width=16)
    learner = SparseLearner(model, SparseConfig(density=0.2, init="uniform", structure="channel", free_init="kaiming"),
                            num_tasks=2, heads={"classifier.weight": [slice(0, 10), slice(10, 20)]})
    learner.start_task(0, 10_000)
    learner.end_task()
    learner.start_task(1, 10_000)  # reuses task 0's channels read-only
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    gathered = gather_channels(model, (3, 32, 32), live=True)
    assert set(map(id, gathered.parameters())) <= set(map(id, model.parameters()))  # shared, not copied
    grads = []
    for net in (model, gathered):
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x)[:, 10:20], y)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (loss_m, grad_m), (loss_g, grad_g) = grads
    assert torch.allclose(loss_m, loss_g, atol=1e-5)
    for layer in learner._layers:
        name = layer.state.name
        active = layer.mask
        assert torch.allclose(grad_g[name][active], grad_m[name][active], atol=1e-4, rtol=1e-3), name
        if name != "classifier.weight":
            rows = layer.mask.reshape(layer.mask.shape[0], -1).any(dim=1)
            assert bool((grad_g[name][~rows] == 0).all()), name  # no gradient for inactive channels


def test_gathered_training_is_refused_where_it_cannot_be_exact():
    from dstcl.config import resolve

    with pytest.raises(ConfigError, match="--structure channel"):
        resolve({"channel_training": "gathered"})
    with pytest.raises(ConfigError, match="momentum"):
        resolve({"channel_training": "gathered", "structure": "channel", "growth": "momentum"})
    with pytest.raises(ConfigError, match="--bn batch"):
        resolve({"channel_training": "gathered", "structure": "channel", "bn": "task"})
    assert resolve({"channel_training": "gathered", "structure": "channel", "growth": "gradient"}).train.channel_training == "gathered"


def test_a_gathered_channel_run_keeps_isolation_and_the_masked_runs_accuracy(tmp_path, monkeypatch):
    import dstcl.train.gathered as gathered_module
    from dstcl.config import resolve
    from dstcl.run.experiment import Experiment
    from dstcl.run.rundir import RunDir

    built = []
    original = gathered_module.gather_channels
    monkeypatch.setattr(gathered_module, "gather_channels", lambda *a, **k: built.append(1) or original(*a, **k))
    results = {}
    for mode in ("masked", "gathered"):
        cfg = resolve({"structure": "channel", "channel_training": mode, "backbone": "resnet18", "width": 16,
                       "epochs": 2, "update_frequency": 4, "growth": "gradient", "progress": False, "threads": 1})
        experiment = Experiment(cfg, echo=lambda line: None)
        experiment.execute(RunDir.fresh(tmp_path / mode))  # an isolation break would raise IsolationError
        results[mode] = experiment.matrix.summary()
    assert built  # the gathered network really ran
    assert results["gathered"]["bwt"] == 0.0
    assert abs(results["gathered"]["acc"] - results["masked"]["acc"]) < 3.0
