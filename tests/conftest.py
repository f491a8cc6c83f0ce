"""Shared fixtures: a tiny bias-free CNN and a way to train it for a few steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Two convs and a bias-free classifier over 6 classes (3 tasks x 2)."""

    def __init__(self, classes: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8, affine=False, track_running_stats=False),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16, affine=False, track_running_stats=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(16, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()


def train_steps(model, learner, optimizer, task: int, steps: int, seed: int = 0, classes_per_task: int = 2):
    """Run ``steps`` real optimizer steps of task ``task`` on random data; returns update reports."""
    gen = torch.Generator().manual_seed(seed)
    reports = []
    lo = task * classes_per_task
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8, generator=gen)
        y = torch.randint(0, classes_per_task, (8,), generator=gen)
        loss = nn.functional.cross_entropy(model(x)[:, lo:lo + classes_per_task], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        report = learner.step(optimizer)
        if report is not None:
            reports.append(report)
    return reports


@pytest.fixture
def gathered_calls(monkeypatch) -> dict:
    """Counts calls of dstcl's gathered convolution path (``dstcl.models.conv.gemm_conv2d``): ``["n"]``."""
    from dstcl.models import conv

    calls = {"n": 0}
    original = conv.gemm_conv2d

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(conv, "gemm_conv2d", counting)
    return calls


def dstcl(*args: str, env_extra: dict | None = None, env: dict | None = None, cwd: Path | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess:
    """``dstcl ARGS`` in a fresh process (the one way the tests run the command line): ``env`` replaces the
    environment, ``env_extra`` adds to it; a fault-injection variable is never inherited by accident."""
    base = dict(env if env is not None else os.environ)
    if not env_extra or "DSTCL_KILL_AT" not in env_extra:
        base.pop("DSTCL_KILL_AT", None)
    return subprocess.run([sys.executable, "-m", "dstcl.cli.main", *args], env={**base, **(env_extra or {})},
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
