"""dstcl's Conv2d: the gathered matrix-product path computes the convolution, and only where the rule says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dstcl.models import build_model
from dstcl.models.conv import Conv2d, gemm_conv2d, use_gemm
from dstcl.train import precision as P

needs_bf16 = pytest.mark.skipif(not P.cpu_has_native_bf16(), reason="this CPU has no native bf16")

SHAPES = [  # (batch, in, size, out, kernel, stride, padding)
    (3, 5, 7, (6), (3, 3), (2, 2), (1, 1)),
    (2, 4, 5, 3, (1, 1), (1, 1), (0, 0)),
    (2, 3, 6, 4, (3, 3), (1, 1), (1, 1)),
    (2, 3, 9, 4, (5, 5), (2, 2), (2, 2)),
    (2, 3, 6, 4, (3, 1), (2, 1), (1, 0)),  # rectangular kernel, stride and padding
    (2, 8, 1, 4, (3, 3), (1, 1), (1, 1)),  # one input position: every tap but the centre is padding
]


@pytest.mark.parametrize("shape", SHAPES)
def test_gathered_convolution_equals_conv2d_with_its_gradients(shape):
    n, cin, size, cout, kernel, stride, padding = shape
    torch.manual_seed(0)
    x = torch.randn(n, cin, size, size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin, *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    expected = F.conv2d(x, w, b, stride=stride, padding=padding)
    got = gemm_conv2d(x, w, b, stride, padding)
    assert got.shape == expected.shape
    grad = torch.randn_like(expected)
    for a, e in zip(torch.autograd.grad(got, (x, w, b), grad), torch.autograd.grad(expected, (x, w, b), grad)):
        torch.testing.assert_close(a, e)
    torch.testing.assert_close(got, expected)


def test_the_rule_gathers_only_layers_with_few_output_positions_and_many_channels():
    assert use_gemm(4, 512) and use_gemm(1, 64) and use_gemm(16, 256)
    assert not use_gemm(4, 32)  # too few channels: oneDNN was faster
    assert not use_gemm(16, 128) and not use_gemm(64, 512)  # too many positions


def test_fp32_and_other_convolutions_never_take_the_gathered_path(gathered_calls):
    calls = gathered_calls
    layer = Conv2d(64, 64, 3, padding=1, bias=False)
    x = torch.randn(2, 64, 2, 2)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, padding=1), rtol=0, atol=0)  # fp32: oneDNN, bit for bit
    grouped = Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grouped(x)  # depthwise: not a single matrix product
        Conv2d(64, 64, 3, padding=1, dilation=2, bias=False)(torch.randn(2, 64, 3, 3))
        Conv2d(8, 16, 3, padding=1, bias=False)(x[:, :8])  # the rule: too few channels
    assert calls["n"] == 0


@needs_bf16
def test_bf16_autocast_gathers_and_matches_onednn_within_bf16_rounding(gathered_calls):
    calls = gathered_calls
    torch.manual_seed(0)
    layer = Conv2d(128, 256, 3, stride=2, padding=1, bias=True)
    x = torch.randn(8, 128, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
        expected = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1)
    assert calls["n"] == 1 and got.dtype == torch.bfloat16 and got.shape == expected.shape
    scale = expected.float().abs().max()
    assert (got.float() - expected.float()).abs().max() <= 2e-2 * scale
    grad = torch.randn_like(expected)
    mine = torch.autograd.grad(got, (x, layer.weight, layer.bias), grad)
    theirs = torch.autograd.grad(expected, (x, layer.weight, layer.bias), grad)
    for a, e in zip(mine, theirs):
        assert a.dtype == e.dtype  # the weight's gradient arrives in fp32, as autocast's would
        assert (a.float() - e.float()).abs().max() <= 2e-2 * e.float().abs().max()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(layer(x.detach()), got.detach(), rtol=0, atol=0)  # evaluation: same numbers
    assert calls["n"] == 2


@needs_bf16
def test_resnet18_in_bf16_gathers_its_last_stages_and_keeps_parameter_names(gathered_calls):
    calls = gathered_calls
    model = build_model("resnet18", num_classes=10, width=64)
    names = set(dict(model.named_parameters()))
    assert names == set(dict(torch.nn.Module.named_parameters(model)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)).float().sum().backward()
    # 32 px, imagenet stem: layer3 (256 channels at 4x4: 2 convs per block x 2 blocks + shortcut) and layer4 (2x2)
    assert calls["n"] == 10
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


@needs_bf16
def test_structured_dsts_compact_layers_follow_the_same_rule(gathered_calls):
    from dstcl.models.gather import GatheredConv2d

    torch.manual_seed(0)
    layer = Conv2d(128, 256, 3, stride=2, padding=1, bias=False)
    live_in, live_out = torch.arange(0, 128, 2), torch.arange(0, 256, 3)  # the compact layer: 64 -> 86 channels
    with torch.no_grad():
        layer.weight[:, 1::2] = 0  # dead inputs carry no weight, as structured DST leaves them
    compact = GatheredConv2d(layer, live_in, live_out)
    x = torch.randn(4, 128, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = layer(x)  # 256 channels at 4x4: gathered
        assert gathered_calls["n"] == 1
        part = compact(x)  # 86 channels at 4x4: below the rule's 256, so oneDNN
        assert gathered_calls["n"] == 1
        small = GatheredConv2d(Conv2d(128, 256, 3, stride=4, padding=1, bias=False), live_in, live_out)(x)
        assert gathered_calls["n"] == 2  # 86 channels at 2x2: gathered
    assert small.shape == (4, 256, 2, 2)
    scale = full.float().abs().max()
    assert (part.float()[:, live_out] - full.float()[:, live_out]).abs().max() <= 2e-2 * scale
