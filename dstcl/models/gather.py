"""A channel-sparse network as a physically smaller one: each Conv/Linear computes only live channels.

With channel-structured masks (``--structure channel``) a task's subnetwork has whole output channels
at zero, and the channels they feed are zero too. :func:`gather_channels` returns a copy of the model
in which every Conv2d / Linear layer computes only its active output channels from its live input
channels (a dense, smaller convolution on gathered weights) and scatters the result back into the full
channel layout, so BatchNorm, residual additions and pooling work unchanged. Its outputs equal the
masked network's up to floating-point summation order (the skipped terms are exact zeros).

Which input channels are live is found structurally: one probe forward pass on random inputs with
every ReLU made transparent, so a channel is zero in the probe only when no active weight can ever
make it non-zero (BatchNorm maps a zero channel to zero, a residual sum is zero only where both
branches are).
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from .conv import conv2d


class _GatheredWeights(nn.Module):
    """The live rows (``out_index``) and columns (``in_index``) of a layer's weight: copied once, or, with
    ``live``, gathered from the layer's parameter at every call (differentiable, so a gradient reaches the
    full-size parameter: gathered training)."""

    def __init__(self, layer: nn.Module, in_index: torch.Tensor, out_index: torch.Tensor, live: bool):
        super().__init__()
        self.register_buffer("in_index", in_index)
        self.register_buffer("out_index", out_index)
        self.live = live
        if live:
            self.source = layer
        else:
            self.register_buffer("weight", layer.weight.detach()[out_index][:, in_index].contiguous())

    def gathered_weight(self) -> torch.Tensor:
        if self.live:
            return self.source.weight.index_select(0, self.out_index).index_select(1, self.in_index)
        return self.weight


class GatheredConv2d(_GatheredWeights):
    """A Conv2d computing only ``out_index`` channels from ``in_index`` channels; scattered back to full size."""

    def __init__(self, conv: nn.Conv2d, in_index: torch.Tensor, out_index: torch.Tensor, live: bool = False):
        super().__init__(conv, in_index, out_index, live)
        self.out_channels = conv.out_channels
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = conv2d(x.index_select(1, self.in_index), self.gathered_weight(), None, self.stride, self.padding,
                     self.dilation)
        out = y.new_zeros((y.shape[0], self.out_channels, *y.shape[2:]))
        return out.index_copy_(1, self.out_index, y)


class GatheredLinear(_GatheredWeights):
    def __init__(self, linear: nn.Linear, in_index: torch.Tensor, out_index: torch.Tensor, live: bool = False):
        super().__init__(linear, in_index, out_index, live)
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.index_select(-1, self.in_index), self.gathered_weight())
        out = y.new_zeros((*y.shape[:-1], self.out_features))
        return out.index_copy_(-1, self.out_index, y)


def _norm_compact(norm: nn.Module, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """BatchNorm (no affine) of the channels ``index`` only, ``x`` holding just those channels."""
    if isinstance(norm, nn.BatchNorm2d) and not norm.track_running_stats:
        return F.batch_norm(x, None, None, None, None, True, 0.0, norm.eps)
    if hasattr(norm, "running_mean") and norm.running_mean.dim() == 2:  # per-task statistics (TaskBatchNorm)
        t = norm.task
        if not norm._has_stats[t]:
            return F.batch_norm(x, None, None, None, None, True, 0.0, norm.eps)
        return F.batch_norm(x, norm.running_mean[t][index], norm.running_var[t][index], None, None, False, 0.0,
                            norm.eps)
    raise TypeError(f"cannot normalise gathered channels with {type(norm).__name__}")


class GatheredBasicBlock(nn.Module):
    """A ResNet BasicBlock whose inner activations stay compact (only the live channels, never scattered):
    conv1 -> BN -> ReLU -> conv2 -> BN on gathered channels, then one scatter to add the shortcut.
    ``live`` as for :class:`GatheredConv2d`."""

    def __init__(self, block: nn.Module, live: dict[str, torch.Tensor], prefix: str, live_weights: bool = False):
        super().__init__()
        w1, w2 = block.conv1.weight.detach(), block.conv2.weight.detach()
        in1 = live[f"{prefix}.conv1"].nonzero().flatten()
        mid = w1.reshape(w1.shape[0], -1).ne(0).any(dim=1).nonzero().flatten()
        out = w2.reshape(w2.shape[0], -1).ne(0).any(dim=1).nonzero().flatten()
        self.register_buffer("in1", in1)
        self.register_buffer("mid", mid)
        self.register_buffer("out_index", out)
        self.live = live_weights
        if not live_weights:
            self.register_buffer("w1", w1[mid][:, in1].contiguous())
            self.register_buffer("w2", w2[out][:, mid].contiguous())
        self.conv1, self.conv2 = block.conv1, block.conv2  # strides and paddings (and the weights when live)
        self.bn1, self.bn2 = block.bn1, block.bn2
        self.shortcut = block.shortcut
        self.out_channels = block.conv2.out_channels

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.live:
            return (self.conv1.weight.index_select(0, self.mid).index_select(1, self.in1),
                    self.conv2.weight.index_select(0, self.out_index).index_select(1, self.mid))
        return self.w1, self.w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2 = self.conv1, self.conv2
        w1, w2 = self.weights()
        h = conv2d(x.index_select(1, self.in1), w1, None, c1.stride, c1.padding, c1.dilation)
        h = F.relu(_norm_compact(self.bn1, h, self.mid))
        h = conv2d(h, w2, None, c2.stride, c2.padding, c2.dilation)
        h = _norm_compact(self.bn2, h, self.out_index)
        h = h.to(x.dtype)
        if len(self.shortcut) == 0 or self.live:  # x may be read elsewhere; autograd may need the sum's input
            return F.relu(self.shortcut(x).index_add(1, self.out_index, h))
        return F.relu(self.shortcut(x).index_add_(1, self.out_index, h))


@contextlib.contextmanager
def _transparent_relu():
    original = F.relu
    F.relu = lambda x, inplace=False: x  # noqa: E731  (the probe only: a linear signal path)
    try:
        yield
    finally:
        F.relu = original


@torch.no_grad()
def live_inputs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per Conv2d/Linear module name: a boolean mask of its input channels (features) that can be non-zero."""
    found: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            def record(mod, inputs, name=name):
                x = inputs[0]
                dims = [d for d in range(x.dim()) if d != (1 if isinstance(mod, nn.Conv2d) else x.dim() - 1)]
                found[name] = x.abs().amax(dim=dims) > 0
            hooks.append(module.register_forward_pre_hook(record))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probe = torch.randn((8, *input_shape), generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with _transparent_relu():
            model(probe)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return found


def gather_channels(model: nn.Module, input_shape: tuple[int, ...], *, live: bool = False) -> nn.Module:
    """A copy of ``model`` computing only live channels (see the module doc).

    Default: a deep copy holding the current weights (evaluation, the model file). ``live``: a copy of
    the module structure that shares ``model``'s parameters and BatchNorm buffers and gathers the live
    weights at every call, so training it trains ``model`` (rebuild it whenever the masks change).
    """
    from .resnet import BasicBlock

    gathered = _structural_copy(model) if live else copy.deepcopy(model)
    found = live_inputs(model, input_shape)
    for name, module in list(gathered.named_modules()):
        if isinstance(module, BasicBlock):  # keep the block's inner activations compact
            parent, _, child = name.rpartition(".")
            setattr(gathered.get_submodule(parent) if parent else gathered, child,
                    GatheredBasicBlock(module, found, name, live_weights=live))
    for name, module in list(gathered.named_modules()):
        if _inside_block(gathered, name) or ".source" in f".{name}":  # kept for their geometry / weights
            continue
        if isinstance(module, nn.Conv2d) and module.groups == 1 and module.bias is None:
            out_active = module.weight.detach().reshape(module.out_channels, -1).ne(0).any(dim=1)
            replacement = GatheredConv2d(module, found[name].nonzero().flatten(), out_active.nonzero().flatten(), live)
        elif isinstance(module, nn.Linear) and module.bias is None:
            out_active = module.weight.detach().ne(0).any(dim=1)
            replacement = GatheredLinear(module, found[name].nonzero().flatten(), out_active.nonzero().flatten(), live)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(gathered.get_submodule(parent) if parent else gathered, child, replacement)
    return gathered if live else gathered.eval()


def _structural_copy(module: nn.Module) -> nn.Module:
    """The module tree copied, parameters and buffers shared (replacing a child in it leaves ``module`` as is)."""
    clone = copy.copy(module)
    clone._modules = {name: _structural_copy(child) for name, child in module._modules.items() if child is not None}
    return clone


def _inside_block(model: nn.Module, name: str) -> bool:
    parent, _, child = name.rpartition(".")
    return child in ("conv1", "conv2") and bool(parent) and isinstance(model.get_submodule(parent), GatheredBasicBlock)


def computed_channels(gathered: nn.Module) -> int:
    """Output channels (features) a gathered network computes, over all its gathered layers."""
    total = 0
    for module in gathered.modules():
        if isinstance(module, GatheredBasicBlock):
            total += module.mid.numel() + module.out_index.numel()
        elif isinstance(module, _GatheredWeights):
            total += module.out_index.numel()
    return total
