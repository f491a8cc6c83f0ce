"""Backbones: exact architectures and parameter counts, the no-bias contract, BN policies, registry."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dstcl.errors import ConfigError
from dstcl.sparse import prunable_parameters
from dstcl.models import (
    MODELS, TaskBatchNorm1d, TaskBatchNorm2d, build_model, model_options,
    register_model, set_task,
)

# ----------------------------------------------------------------------------- parameter counts


def resnet18_count(num_classes: int, width: int = 64, stem_kernel: int = 7, in_channels: int = 3) -> int:
    """Count from the architecture: stem, 4 stages x 2 BasicBlocks, 1x1 shortcuts, classifier."""
    total = in_channels * width * stem_kernel**2
    c_in = width
    for stage in range(4):
        c = width * 2**stage
        total += c_in * c * 9 + c * c * 9  # block 0
        if c_in != c:
            total += c_in * c  # 1x1 shortcut (stages 2-4)
        total += 2 * c * c * 9  # block 1
        c_in = c
    return total + c_in * num_classes


def mobilenetv2_count(num_classes: int, in_channels: int = 3) -> int:
    """Count from the MobileNetV2 table (t, c, n, s); expansion conv present even for t = 1."""
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    total = in_channels * 32 * 9
    c_in = 32
    for t, c, n, _ in table:
        for _ in range(n):
            hidden = c_in * t
            total += c_in * hidden + hidden * 9 + hidden * c  # expand, depthwise, project
            c_in = c
    return total + c_in * 1280 + 1280 * num_classes


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet18_parameter_count_is_exact():
    assert 9408 + 147456 + 524288 + 2097152 + 8388608 + 51200 == 11_218_112
    assert resnet18_count(100) == 11_218_112
    assert n_params(build_model("resnet18", num_classes=100)) == 11_218_112


def test_reduced_resnet18_and_cifar_stem_counts():
    reduced = build_model("resnet18", 100, width=20)
    assert n_params(reduced) == resnet18_count(100, width=20) == 1_108_540
    assert [reduced.layer1[0].conv1.out_channels, reduced.layer2[0].conv1.out_channels,
            reduced.layer3[0].conv1.out_channels, reduced.layer4[0].conv1.out_channels] == [20, 40, 80, 160]
    cifar = build_model("resnet18", 10, stem="cifar")
    assert n_params(cifar) == resnet18_count(10, stem_kernel=3)


def test_mobilenetv2_parameter_count_is_exact():
    assert mobilenetv2_count(100) == 2_318_784
    assert n_params(build_model("mobilenetv2", num_classes=100)) == 2_318_784
    assert n_params(build_model("mobilenetv2", num_classes=10)) == mobilenetv2_count(10)


def test_small_network_counts():
    # mlp: 64*256 + 256*256 + 256*10; cnn: 1*32*9 + 32*64*9 + 64*128*9 + 128*10
    assert n_params(build_model("mlp", 10, in_channels=1, image_size=8)) == 16384 + 65536 + 2560
    assert n_params(build_model("cnn", 10, in_channels=1, image_size=8)) == 288 + 18432 + 73728 + 1280


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
@pytest.mark.parametrize("size", [32, 84])
def test_large_backbones_output_all_logits(name, size):
    model = build_model(name, num_classes=100, image_size=size)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 100)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_small_backbones_on_8x8_digits(name):
    model = build_model(name, num_classes=10, in_channels=1, image_size=8)
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_cnn_on_32x32_rgb_and_cifar_stem():
    assert build_model("cnn", 10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("resnet18", 10, stem="cifar", width=8)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# ----------------------------------------------------------------------------- the no-bias contract

ALL = [
    ("resnet18", {}), ("resnet18", {"bn": "task"}), ("mobilenetv2", {}), ("mobilenetv2", {"bn": "task"}),
    ("mlp", {"in_channels": 1, "image_size": 8}), ("cnn", {"in_channels": 1, "image_size": 8}),
    ("cnn", {"bn": "task"}),
]


@pytest.mark.parametrize("name,kwargs", ALL)
def test_every_parameter_is_prunable(name, kwargs):
    model = build_model(name, num_classes=10, **kwargs)
    prunable = {id(p) for _, p in prunable_parameters(model)}
    assert prunable == {id(p) for p in model.parameters()}
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert module.bias is None
        if isinstance(module, nn.modules.batchnorm._NormBase):
            assert not module.affine and not module.track_running_stats
    names = [n for n, _ in prunable_parameters(model)]
    assert names[-1].startswith("classifier") and names[-1].endswith("weight")


def test_default_initialisation_is_kept():
    torch.manual_seed(0)
    reference = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    torch.manual_seed(0)
    model = build_model("resnet18", 100)
    assert torch.equal(model.conv1.weight, reference.weight)
    bound = 1 / math.sqrt(512)  # kaiming_uniform_(a=sqrt(5)) on a Linear: U(-1/sqrt(fan_in), +)
    assert 0.9 * bound < model.classifier.weight.abs().max() <= bound


# ----------------------------------------------------------------------------- resnet18 structure


def test_resnet18_structure_matches_the_reference():
    model = build_model("resnet18", num_classes=100)
    stem = model.conv1
    assert (stem.in_channels, stem.out_channels) == (3, 64)
    assert stem.kernel_size == (7, 7) and stem.stride == (2, 2) and stem.padding == (3, 3)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d) and model.avgpool.output_size in (1, (1, 1))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 4 * 2 * 2 + 3
    assert all(not m.affine and not m.track_running_stats for m in bns)
    for i, stage in enumerate([model.layer1, model.layer2, model.layer3, model.layer4]):
        assert len(stage) == 2
        c = 64 * 2**i
        first, second = stage
        assert first.conv1.stride == ((1, 1) if i == 0 else (2, 2))
        assert first.conv1.out_channels == first.conv2.out_channels == c
        assert first.conv1.kernel_size == first.conv2.kernel_size == (3, 3)
        assert second.conv1.stride == (1, 1) and len(second.shortcut) == 0
        if i == 0:
            assert len(first.shortcut) == 0
        else:
            conv, bn = first.shortcut
            assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and isinstance(bn, nn.BatchNorm2d)
    assert isinstance(model.classifier, nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (512, 100)
    names = [n for n, _ in prunable_parameters(model)]
    assert len(names) == 21 and names[0] == "conv1.weight" and names[-1] == "classifier.weight"
    assert "layer2.0.shortcut.0.weight" in names
    # ReLU after the residual add: block outputs are non-negative
    with torch.no_grad():
        assert (model.layer1[0](torch.randn(2, 64, 8, 8)) >= 0).all()


def test_mobilenetv2_structure():
    model = build_model("mobilenetv2", num_classes=100)
    assert len(model.features) == 1 + 17 + 1
    stem = model.features[0][0]
    assert stem.kernel_size == (3, 3) and stem.stride == (2, 2) and stem.out_channels == 32
    first = model.features[1]
    assert first.conv[0].kernel_size == (1, 1) and first.conv[0].out_channels == 32  # t = 1 expansion kept
    assert [b.use_residual for b in model.features[1:18]].count(True) == 10
    assert model.classifier[-1].bias is None and model.classifier[-1].in_features == 1280


# ----------------------------------------------------------------------------- registry and errors


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet19'") as info:
        build_model("resnet19", 10)
    for name in ("resnet18", "mobilenetv2", "mlp", "cnn"):
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name,options,match", [
    ("mobilenetv2", {"width": 20}, "does not take the option.*width.*width_mult"),
    ("resnet18", {"stem": "tiny"}, "stem must be one of imagenet, cifar"),
    ("resnet18", {"width": 0}, "width"),
    ("resnet18", {"bn": "group"}, "bn must be one of batch, task"),
    ("cnn", {"max_tasks": 0}, "max_tasks"),
    ("mlp", {"hidden": (256, -1)}, "hidden"),
])
def test_bad_options_are_config_errors(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_model(name, 10, **options)


def test_bad_standard_arguments():
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("cnn", 0)
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("cnn", 10, in_channels=0)


def test_model_options():
    assert model_options("resnet18") == ["width", "stem"]
    assert model_options("mobilenetv2") == ["width_mult"]


@pytest.fixture
def registry():
    before = MODELS.snapshot()
    yield MODELS
    MODELS.restore(before)


def test_register_custom_model(registry):
    @register_model("tiny")
    def tiny(num_classes, in_channels=3, image_size=32, hidden=16):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden, bias=False),
                             nn.ReLU(), nn.Linear(hidden, num_classes, bias=False))

    model = build_model("tiny", 5, in_channels=1, image_size=4, hidden=7)
    assert model(torch.randn(3, 1, 4, 4)).shape == (3, 5)
    assert [tuple(p.shape) for _, p in prunable_parameters(model)] == [(7, 16), (5, 7)]
    with pytest.raises(ConfigError, match="no per-task BatchNorm"):
        build_model("tiny", 5, bn="task")
    with pytest.raises(ConfigError, match="does not take the option.*depth.*hidden"):
        build_model("tiny", 5, depth=3)
    with pytest.raises(ConfigError, match="already registered"):
        register_model("tiny")(lambda num_classes: nn.Linear(1, num_classes, bias=False))
    register_model("tiny", override=True)(lambda num_classes: nn.Linear(2, num_classes, bias=False))
    assert build_model("tiny", 3).in_features == 2


# ----------------------------------------------------------------------------- BatchNorm policies


def test_batch_mode_eval_depends_on_the_batch():
    torch.manual_seed(0)
    model = build_model("cnn", 10, in_channels=1, image_size=8).eval()
    x = torch.randn(8, 1, 8, 8)
    other = torch.cat([x[:1], 3 * torch.randn(7, 1, 8, 8) + 2])
    with torch.no_grad():
        assert not torch.allclose(model(x)[0], model(other)[0], atol=1e-3)
    assert set_task(model, 5) == 0  # no per-task modules: a no-op


def _train(model, data, steps, seed, optimizer=None):
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        x = data(gen)
        loss = F.cross_entropy(model(x)[:, :2], torch.randint(0, 2, (len(x),), generator=gen))
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def test_task_mode_classifies_single_images_and_isolates_statistics():
    torch.manual_seed(0)
    model = build_model("cnn", 4, in_channels=1, image_size=8, bn="task", max_tasks=3)
    norms = [m for m in model.modules() if isinstance(m, TaskBatchNorm2d)]
    assert len(norms) == 3
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    task0 = lambda g: torch.randn(16, 1, 8, 8, generator=g)  # noqa: E731
    task1 = lambda g: 3 * torch.randn(16, 1, 8, 8, generator=g) + 2  # noqa: E731

    assert set_task(model, 0) == 3
    _train(model, task0, 5, seed=0, optimizer=opt)
    row0 = [(m.running_mean[0].clone(), m.running_var[0].clone()) for m in norms]
    set_task(model, 1)
    _train(model, task1, 5, seed=1, optimizer=opt)
    for m, (mean, var) in zip(norms, row0):
        assert torch.equal(m.running_mean[0], mean) and torch.equal(m.running_var[0], var)
        assert not torch.allclose(m.running_mean[1], mean)
        assert int(m.num_batches_tracked[0]) == int(m.num_batches_tracked[1]) == 5

    x = torch.randn(8, 1, 8, 8)
    set_task(model, 0)
    model.eval()
    with torch.no_grad():
        batch = model(x)
        single = model(x[:1])
        assert torch.allclose(single, batch[:1], rtol=1e-5, atol=1e-6)
        # more training-mode passes on task 1 (statistics only) leave task 0's outputs bit-identical
        set_task(model, 1)
        _train(model, task1, 3, seed=2)
        set_task(model, 0)
        model.eval()
        assert torch.equal(model(x), batch)

    # a saved model restores the per-task statistics
    clone = build_model("cnn", 4, in_channels=1, image_size=8, bn="task", max_tasks=3)
    clone.load_state_dict(model.state_dict())
    set_task(clone, 0)
    clone.eval()
    with torch.no_grad():
        assert torch.equal(clone(x[:1]), model(x[:1]))


def test_task_batchnorm_matches_torch_running_statistics():
    torch.manual_seed(0)
    ours, ref = TaskBatchNorm2d(5, max_tasks=2), nn.BatchNorm2d(5, affine=False)
    ours.set_task(1)
    for _ in range(4):
        x = torch.randn(6, 5, 3, 3) * 2 + 1
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
    assert torch.allclose(ours.running_mean[1], ref.running_mean)
    assert torch.allclose(ours.running_var[1], ref.running_var)
    assert torch.equal(ours.running_mean[0], torch.zeros(5))
    ours.eval(), ref.eval()
    x = torch.randn(1, 5, 3, 3)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_task_without_statistics_uses_batch_statistics():
    norm = TaskBatchNorm1d(4, max_tasks=2).eval()
    norm.set_task(1)
    x = torch.randn(10, 4)
    assert torch.allclose(norm(x), F.batch_norm(x, None, None, training=True), atol=1e-6)
    with pytest.raises(ConfigError, match="max_tasks=2"):
        norm.set_task(2)


def test_resnet18_task_mode_uses_task_norm_everywhere():
    model = build_model("resnet18", 10, width=8, bn="task", max_tasks=4)
    assert sum(isinstance(m, TaskBatchNorm2d) for m in model.modules()) == 20
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(ConfigError, match="max_tasks=4"):
        set_task(model, 4)
