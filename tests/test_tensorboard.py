"""The TensorBoard logger: what it writes for each event, and ``dstcl run --tensorboard`` end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dstcl.errors import DstclError
from dstcl.run.tensorboard import TensorBoardLogger, summary_writer_class


class FakeWriter:
    def __init__(self, path: str):
        self.path = path
        self.scalars: list[tuple[str, float, int]] = []
        self.hparams: list[tuple[dict, dict]] = []
        self.closed = False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), int(step)))

    def add_hparams(self, hparams, metrics, run_name=None):
        self.hparams.append((hparams, metrics))

    def flush(self):
        pass

    def close(self):
        self.closed = True

    def series(self, tag):
        return [(step, value) for t, value, step in self.scalars if t == tag]


CAPACITY = [
    {"task": t, "layers": [{"name": "conv.weight", "numel": 100, "active": 20, "owned_fraction": 0.2 * (t + 1),
                            "new_fraction": 0.2, "reused_fraction": 0.5 * t, "free": 80 - 20 * t}]}
    for t in range(2)
]


def events_of_a_run() -> list[dict]:
    events = [{"event": "baseline", "accuracy": [10.0, 20.0]}]
    for task in range(2):
        for epoch in range(2):
            events.append({"event": "topology_update", "task": task, "step": 5 * (epoch + 1), "drop_fraction": 0.4 / (epoch + 1),
                           "growth": "random", "dropped": 7, "grown_reused": task})
            events.append({"event": "epoch", "task": task, "epoch": epoch, "loss": 1.0 / (epoch + 1 + task),
                           "train_accuracy": 50.0 + epoch, "lr": 0.001})
        events.append({"event": "task_end", "task": task, "steps": 10, "accuracy": [90.0, 80.0][: task + 1]})
    return events


def fake_run_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "capacity.json").write_text(json.dumps(CAPACITY))
    (path / "metrics.json").write_text(json.dumps({"status": "completed", "acc": 85.0, "bwt": 0.0, "fwt": 3.5,
                                                   "fwt_reference": None}))
    (path / "config.json").write_text(json.dumps({"init": "erk", "sparsity": 0.8, "out": "runs", "data_dir": None}))
    return path


def test_events_become_scalars_on_continuous_axes(tmp_path):
    writers: list[FakeWriter] = []
    logger = TensorBoardLogger(tmp_path / "tb", fake_run_dir(tmp_path / "run"),
                               writer_factory=lambda p: writers.append(FakeWriter(p)) or writers[-1])
    for event in events_of_a_run() + [{"event": "run_end", "status": "completed"}]:
        logger(event)
    (w,) = writers
    assert w.series("train/loss") == [(0, 1.0), (1, 0.5), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert [s for s, _ in w.series("dst/drop_fraction")] == [5, 10, 15, 20]  # task 1 starts after task 0's 10 steps
    assert w.series("accuracy/task_00") == [(1, 90.0), (2, 90.0)]
    assert w.series("accuracy/mean_seen") == [(1, 90.0), (2, 85.0)]
    assert w.series("density/conv.weight") == [(1, 0.2), (2, 0.2)]
    assert w.series("capacity/owned/conv.weight") == [(1, 0.2), (2, 0.4)]
    assert w.series("final/acc") == [(0, 85.0)] and not w.series("final/fwt_reference")
    ((hparams, metrics),) = w.hparams
    assert hparams == {"init": "erk", "sparsity": 0.8} and metrics["hparam/acc"] == 85.0
    assert w.closed


def test_resumed_run_continues_the_curves(tmp_path):
    run_dir = fake_run_dir(tmp_path / "run")
    before = events_of_a_run()[:7]  # task 0 complete, task 1 one epoch in, then killed
    resumed = {"event": "resumed", "task": 1}
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in before + [resumed]))
    writers: list[FakeWriter] = []
    logger = TensorBoardLogger(tmp_path / "tb", run_dir, writer_factory=lambda p: writers.append(FakeWriter(p)) or writers[-1])
    logger(resumed)
    logger({"event": "epoch", "task": 1, "epoch": 0, "loss": 0.3, "train_accuracy": 60.0, "lr": 0.001})
    logger({"event": "topology_update", "task": 1, "step": 5, "drop_fraction": 0.4, "growth": "random", "dropped": 1})
    assert writers[0].series("train/loss") == [(2, 0.3)]
    assert writers[0].series("dst/drop_fraction") == [(15, 0.4)]


def test_missing_tensorboard_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(DstclError, match=r"pip install 'dstcl\[tensorboard\]'"):
        summary_writer_class()


@pytest.fixture
def one_thread():
    """Tiny runs are several times faster on one thread when the 2 cores are shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_dstcl_run_tensorboard_end_to_end(tmp_path, capsys, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dstcl.cli.main import main

    code = main(["run", "--epochs", "1", "--tasks", "2", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb")])
    assert code == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    (log_dir,) = list((tmp_path / "tb").iterdir())
    assert log_dir.name == run_dir.name
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    layers = [layer["name"] for layer in json.loads((run_dir / "capacity.json").read_text())[0]["layers"]]
    assert {"train/loss", "train/accuracy", "dst/drop_fraction", "accuracy/task_00", "accuracy/mean_seen",
            "final/acc"} <= tags
    assert {f"density/{name}" for name in layers} <= tags
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert accumulator.Scalars("final/acc")[0].value == pytest.approx(metrics["acc"], rel=1e-6)
    assert [e.step for e in accumulator.Scalars("train/loss")] == [0, 1]
