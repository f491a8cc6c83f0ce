"""Evaluation batching: fixed batches, and a lone last image joins the batch before it."""

import torch
from torch import nn

from dstcl.train.evaluate import accuracy, eval_batches


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
    value = accuracy(model, x, y, slice(0, 2), lambda b: b.float() / 255)
    assert 0.0 <= value <= 100.0
