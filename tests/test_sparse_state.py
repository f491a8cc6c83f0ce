import pytest
import torch

from conftest import TinyNet, train_steps
from dstcl.errors import DstclError
from dstcl.sparse import SparseConfig, SparseLearner, pack_mask, unpack_mask


def trained_learner(tasks=2):
    torch.manual_seed(0)
    model = TinyNet()
    learner = SparseLearner(model, SparseConfig(density=0.3, growth="random", update_frequency=3), num_tasks=3)
    for t in range(tasks):
        learner.start_task(t, 9)
        opt = learner.make_optimizer("adam", lr=0.01)
        train_steps(model, learner, opt, t, 9, seed=t)
        learner.end_task()
    return learner


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5, 3, 3), (64, 3, 7, 7)])
def test_pack_unpack_bit_exact(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < 0.3
    bits = pack_mask(mask)
    assert bits.dtype.name == "uint8" and bits.size == (mask.numel() + 7) // 8
    assert torch.equal(unpack_mask(bits, shape), mask)


def test_state_round_trip(tmp_path):
    learner = trained_learner()
    path = tmp_path / "state.pt"
    learner.state.save(path)
    torch.manual_seed(123)  # a different network draw
    other = SparseLearner(TinyNet(), SparseConfig(density=0.3), num_tasks=3)
    other.state.load(path)
    assert other.learned_tasks == 2
    for a, b in zip(learner.state.layers, other.state.layers):
        assert torch.equal(a.values.view(torch.int32), b.values.view(torch.int32))
        assert torch.equal(a.owner, b.owner)
        assert len(a.masks) == len(b.masks) == 2
        for ma, mb in zip(a.masks, b.masks):
            assert torch.equal(ma, mb)
    # the restored learner evaluates identically and can go on learning
    x = torch.randn(4, 3, 8, 8)
    for j in range(2):
        learner.apply_task(j)
        other.apply_task(j)
        assert torch.equal(learner.model(x), other.model(x))
    other.start_task(2, 10_000)
    other.end_task()


def test_loading_into_another_architecture_names_the_tensor(tmp_path):
    learner = trained_learner(1)
    path = tmp_path / "state.pt"
    learner.state.save(path)
    other = SparseLearner(TinyNet(classes=10), SparseConfig(density=0.3))
    with pytest.raises(DstclError, match=r"'classifier.weight' \(6, 16\) in the file but 'classifier.weight' \(10, 16\)"):
        other.state.load(path)


def test_corrupt_state_is_a_clear_error(tmp_path):
    learner = trained_learner(1)
    path = tmp_path / "state.pt"
    learner.state.save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DstclError, match="corrupt"):
        learner.state.load(path)


def test_learner_checkpoint_mid_task_round_trip():
    """state_dict in the middle of a task (compact: owners derived from masks) continues bit-identically."""
    learner = trained_learner(2)
    model = learner.model
    learner.start_task(2, 12)
    opt = learner.make_optimizer("adam", lr=0.01)
    train_steps(model, learner, opt, 2, 4, seed=9)
    saved = {"learner": learner.state_dict(), "model": {k: v.clone() for k, v in model.state_dict().items()},
             "opt": opt.state_dict()}
    import copy
    saved = copy.deepcopy(saved)
    train_steps(model, learner, opt, 2, 8, seed=10)
    learner.end_task()
    expected = [(l.values.clone(), l.owner.clone(), [m.clone() for m in l.masks]) for l in learner.state.layers]

    torch.manual_seed(99)
    other_model = TinyNet()
    other = SparseLearner(other_model, SparseConfig(density=0.3, growth="random", update_frequency=3), num_tasks=3)
    other_model.load_state_dict(saved["model"])
    other.load_state_dict(saved["learner"])
    assert other.task == 2 and other.steps == 4
    opt2 = other.make_optimizer("adam", lr=0.01)
    opt2.load_state_dict(saved["opt"])
    train_steps(other_model, other, opt2, 2, 8, seed=10)
    other.end_task()
    for layer, (values, owner, masks) in zip(other.state.layers, expected):
        assert torch.equal(layer.values.view(torch.int32), values.view(torch.int32))
        assert torch.equal(layer.owner, owner)
        assert all(torch.equal(a, b) for a, b in zip(layer.masks, masks))
