"""scripts/device_check.sh: on a machine without CUDA it says so in one line and succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the checks would run (minutes)")
def test_without_cuda_the_checks_are_skipped_in_one_line():
    assert os.access(SCRIPT, os.X_OK), "scripts/device_check.sh must be executable"
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines == ["device_check: no CUDA device found (torch.cuda.is_available() is not True); the GPU checks "
                     "were skipped."]
