"""Evaluation: fixed batches in a canonical, class-mixed order that does not depend on storage order."""

import numpy as np
import pytest
import torch
from torch import nn

from dstcl.train.evaluate import EvalSet, accuracy, canonical_order, eval_batches


def test_eval_batches_cover_everything_once():
    assert eval_batches(256, 128) == [(0, 128), (128, 256)]
    assert eval_batches(257, 128) == [(0, 128), (128, 257)]  # 1 left over: merged
    assert eval_batches(258, 128) == [(0, 128), (128, 256), (256, 258)]
    assert eval_batches(1, 128) == [(0, 1)]
    for n in range(1, 400, 7):
        bounds = eval_batches(n, 128)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert n == 1 or all(stop - start >= 2 for start, stop in bounds)


def test_a_test_set_of_128k_plus_1_images_evaluates_with_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4, bias=False),
                          nn.BatchNorm1d(4, affine=False, track_running_stats=False))
    x = torch.randint(0, 255, (129, 3, 2, 2), dtype=torch.uint8)
    y = torch.randint(0, 2, (129,))
    value = accuracy(model, EvalSet(x, y), slice(0, 2), lambda b: b.float() / 255)
    assert 0.0 <= value <= 100.0


def _sorted_by_class(x, y):
    order = torch.argsort(y, stable=True)
    return x[order], y[order]


def test_canonical_order_does_not_depend_on_how_the_images_are_stored():
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (300, 3, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 7, (300,), generator=gen)
    x[5], y[5] = x[9], y[9]  # a byte-identical duplicate (miniImageNet has some)
    reference = EvalSet(x, y)
    for copy in (_sorted_by_class(x, y), (x.flip(0), y.flip(0))):
        other = EvalSet(*copy)
        assert torch.equal(other.x, reference.x) and torch.equal(other.y, reference.y)
    perm = torch.randperm(300, generator=gen)
    shuffled = EvalSet(x[perm], y[perm])
    assert torch.equal(shuffled.x, reference.x) and torch.equal(shuffled.y, reference.y)


def test_every_batch_holds_every_class_in_proportion():
    y = torch.arange(10).repeat_interleave(100)  # stored by class, as the miniImageNet reader does
    x = torch.randint(0, 256, (1000, 3, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = EvalSet(x, y)
    for start, stop in eval_batches(len(data), 128):
        counts = torch.bincount(data.y[start:stop], minlength=10)
        size = stop - start
        assert counts.min() >= size // 10 and counts.max() <= -(-size // 10)
    # unequal classes: still proportional (class 0 three times as common as class 1)
    y2 = torch.cat([torch.zeros(300, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    x2 = torch.randint(0, 256, (400, 3, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    part = EvalSet(x2, y2).y[:40]
    assert int((part == 0).sum()) == 30


def test_canonical_order_is_a_permutation():
    y = torch.tensor([2, 2, 0, 1, 1, 1, 0])
    x = torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1)
    order = canonical_order(x, y)
    assert sorted(order.tolist()) == list(range(7))
    assert len(canonical_order(x[:0], y[:0])) == 0


def _colour_task(per_class: int, classes: int, seed: int):
    """Images whose class is only their colour (plus noise): batch statistics of one class erase it."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(per_class)  # class-sorted storage
    colours = torch.tensor([[40, 200, 90], [200, 60, 60], [60, 80, 220], [180, 180, 40]])[:classes]
    x = colours[y].view(-1, 3, 1, 1).float() + 12 * torch.randn(len(y), 3, 8, 8, generator=gen)
    return x.clamp(0, 255).round().to(torch.uint8), y


def test_a_trained_model_is_measured_far_above_what_single_class_batches_give():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False, track_running_stats=False),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4, bias=False),
    )
    prepare = lambda b: b.float() / 255  # noqa: E731
    train_x, train_y = _colour_task(64, 4, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(60):  # random (class-mixed) training batches, as the trainer draws them
        idx = torch.randperm(len(train_y), generator=gen)[:64]
        loss = nn.functional.cross_entropy(model(prepare(train_x[idx])), train_y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_x, test_y = _colour_task(100, 4, seed=1)  # stored by class
    mixed = accuracy(model, EvalSet(test_x, test_y), slice(0, 4), prepare, batch_size=100)
    model.eval()
    with torch.no_grad():  # the old evaluator: stored order, so each batch of 100 is one class
        stored = 100.0 * sum(int((model(prepare(test_x[s:s + 100])).argmax(1) == test_y[s:s + 100]).sum())
                             for s in range(0, 400, 100)) / 400
    assert mixed > 90.0
    assert stored < 60.0, "single-class batches should erase the colour; the test data lost its point"
    # the same weights on a shuffled copy of the test set: the same canonical batches, the same number
    perm = torch.randperm(400, generator=gen)
    assert accuracy(model, EvalSet(test_x[perm], test_y[perm]), slice(0, 4), prepare, batch_size=100) == mixed


def test_accuracy_refuses_raw_tensors():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="EvalSet"):
        accuracy(model, torch.zeros(2, 2), slice(0, 2), lambda b: b)  # type: ignore[arg-type]


def test_content_keys_separate_different_images():
    from dstcl.train.evaluate import content_keys

    x = torch.arange(2 * 48, dtype=torch.uint8).view(2, 3, 4, 4)
    keys = content_keys(torch.cat([x, x[:1]]))
    assert keys[0] == keys[2] != keys[1] and keys.dtype == np.uint64
