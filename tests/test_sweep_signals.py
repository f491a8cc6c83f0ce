"""A stopped sweep stops its runs (SIGTERM as Ctrl-C), and one --out folder takes one sweep at a time
(issue 26, rows 8 and 12 d)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dstcl.sweep.lock import LOCK_NAME, sweep_lock

# Two digits runs long enough (minutes on one thread) to be caught while they train; they are stopped early.
GRID = """
name: signals
base: {threads: 1, dataset: digits, tasks: 5, epochs: 40, device: cpu}
vary:
  sparsity: [0.8, 0.9]
"""


def start_sweep(tmp_path: Path, out: Path) -> subprocess.Popen:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    return subprocess.Popen([sys.executable, "-m", "dstcl.cli.main", "sweep", str(grid), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def running_child(out: Path, sweep: subprocess.Popen, timeout: float = 120) -> tuple[int, Path]:
    """The pid and folder of a ``dstcl run`` of the sweep once it is training (from its run.lock)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        for lock in out.glob("*/run.lock"):
            found = re.match(r"pid (\d+) on ", lock.read_text())
            if found and (lock.parent / "events.jsonl").is_file():
                return int(found.group(1)), lock.parent
        time.sleep(0.2)
    raise AssertionError("no run of the sweep started within the time allowed")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in handle)
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_sweep_and_its_runs(tmp_path):
    out = tmp_path / "out"
    sweep = start_sweep(tmp_path, out)
    try:
        child, run_dir = running_child(out, sweep)
        sweep.send_signal(signal.SIGTERM)
        _, err = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    deadline = time.time() + 10
    while alive(child) and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(child), "the sweep's dstcl run was left running"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["error"] == "terminated by SIGTERM"
    assert sweep.returncode == 130 and "Traceback" not in err
    said = " ".join(err.split())
    assert "sweep stopped by SIGTERM" in said and "run the same dstcl sweep command again" in said.lower()


def test_a_second_sweep_on_the_same_out_is_refused_at_once(tmp_path):
    out = tmp_path / "out"
    first = start_sweep(tmp_path, out)
    try:
        running_child(out, first)
        started = time.time()
        second = subprocess.run([sys.executable, "-m", "dstcl.cli.main", "sweep", str(tmp_path / "grid.yaml"),
                                 "--out", str(out)], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        said = " ".join(second.stderr.split())
        assert f"pid {first.pid} on {socket.gethostname()}" in said and str(out) in said
        assert time.time() - started < 60
        assert first.poll() is None  # the first sweep goes on, its runs untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 130


def test_the_sweep_lock_is_exclusive_and_released(tmp_path):
    with sweep_lock(tmp_path):
        assert f"pid {os.getpid()} on {socket.gethostname()}" in (tmp_path / LOCK_NAME).read_text()
        holder = subprocess.run([sys.executable, "-c", "from dstcl.sweep.lock import sweep_lock\n"
                                 f"with sweep_lock({str(tmp_path)!r}): pass"], capture_output=True, text=True)
        assert holder.returncode != 0 and f"pid {os.getpid()}" in holder.stderr
    with sweep_lock(tmp_path):  # released: taken again
        pass
