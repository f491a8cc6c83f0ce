"""``Conv2d``: ``nn.Conv2d`` that runs small-output bf16 convolutions on the CPU as one matrix product.

Why: under bf16 autocast on the CPU, oneDNN's convolution kernels are slow when the output has only
a few positions per image (ResNet-18's last stages at 32 px: 4x4 and 2x2): there the weight-gradient
kernel of a 512-channel layer ran *slower* in bf16 than in fp32 (2 CPUs, AVX512-BF16/AMX), while a
plain bf16 matrix product is ~4x faster than fp32. ``benchmarks/small_conv.py`` measures each
ResNet-18 layer both ways. Gathering the 3x3 taps of a channels-last input into a (positions x
taps*channels) matrix ("im2col", done with slices, no unfold) turns the forward pass, the weight
gradient and the input gradient into three large bf16 matrix products.

Only bf16 on the CPU changes path, and only where :func:`use_gemm` says so (a fixed rule of the
layer's shape, never a timing: the same run computes the same way every time, so bf16 runs stay
repeatable and resume bit for bit). fp32 is untouched (oneDNN, bit-identical to earlier versions).
Parameters, names and the state dict are those of ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair


def use_gemm(out_positions: int, out_channels: int) -> bool:
    """The measured rule: a layer with at most 4 output positions per image and >= 64 output channels, or
    at most 16 positions and >= 256 channels (where gathering won 1.5-4.6x; smaller layers lost)."""
    return (out_positions <= 4 and out_channels >= 64) or (out_positions <= 16 and out_channels >= 256)


def _output_size(h: int, w: int, kh: int, kw: int, stride: tuple[int, int], padding: tuple[int, int]) -> tuple[int, int]:
    return (h + 2 * padding[0] - kh) // stride[0] + 1, (w + 2 * padding[1] - kw) // stride[1] + 1


def _bf16_autocast_on_cpu(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def _taps(xp: torch.Tensor, kh: int, kw: int, stride: tuple[int, int], ho: int, wo: int) -> torch.Tensor:
    """Padded NHWC input -> (N*Ho*Wo) x (kh*kw*C): each row the receptive field of one output position."""
    n, c = xp.shape[0], xp.shape[3]
    sh, sw = stride
    parts = [xp[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw, :] for a in range(kh) for b in range(kw)]
    return torch.stack(parts, dim=3).reshape(n * ho * wo, kh * kw * c)


class _GemmConv(torch.autograd.Function):
    """Convolution (groups 1, dilation 1, zero padding) as gathered taps @ weight; inputs in one dtype."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):  # type: ignore[override]
        n, c, h, w = x.shape
        cout, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = stride, padding
        ho, wo = _output_size(h, w, kh, kw, stride, padding)
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))
        cols = _taps(xp, kh, kw, stride, ho, wo)
        wmat = weight.permute(0, 2, 3, 1).reshape(cout, kh * kw * c)
        ctx.save_for_backward(cols, wmat)
        ctx.shape = (n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw)
        return (cols @ wmat.t()).view(n, ho, wo, cout).permute(0, 3, 1, 2)  # channels-last NCHW

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        cols, wmat = ctx.saved_tensors
        n, c, h, w, ho, wo, kh, kw, sh, sw, ph, pw = ctx.shape
        cout = wmat.shape[0]
        g = grad.permute(0, 2, 3, 1).reshape(n * ho * wo, cout)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = (g.t() @ cols).view(cout, kh, kw, c).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[0]:
            gcols = (g @ wmat).view(n, ho, wo, kh * kw, c)
            acc = torch.zeros(n, h + 2 * ph, w + 2 * pw, c, dtype=torch.promote_types(grad.dtype, torch.float32),
                              device=grad.device)
            for t in range(kh * kw):  # overlapping taps summed in >= fp32, rounded once
                a, b = divmod(t, kw)
                acc[:, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw, :] += gcols[:, :, :, t, :]
            grad_x = acc[:, ph:ph + h, pw:pw + w, :].to(grad.dtype).permute(0, 3, 1, 2)
        return grad_x, grad_w, None, None


def gemm_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d`` (groups 1, dilation 1, zero padding) computed as matrix products in ``x``'s dtype."""
    out = _GemmConv.apply(x, weight, tuple(stride), tuple(padding))
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` (zero padding), except that under CPU bf16 autocast a layer :func:`use_gemm` picks runs
    as gathered matrix products. The one place the rule is applied (:class:`Conv2d`, the compact layers
    of structured DST in :mod:`dstcl.models.gather`)."""
    stride, dilation = _pair(stride), _pair(dilation)
    padding = padding if isinstance(padding, str) else _pair(padding)
    if (groups == 1 and dilation == (1, 1) and not isinstance(padding, str) and x.dim() == 4
            and _bf16_autocast_on_cpu(x)):
        ho, wo = _output_size(x.shape[2], x.shape[3], weight.shape[2], weight.shape[3], stride, padding)
        if use_gemm(ho * wo, weight.shape[0]):
            with torch.autocast("cpu", enabled=False):
                low = None if bias is None else bias.to(torch.bfloat16)
                return gemm_conv2d(x.to(torch.bfloat16), weight.to(torch.bfloat16), low, stride, padding)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed by :func:`conv2d` (the same oneDNN call in fp32; the rule under CPU bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
