"""FLOPs accounting against a hand count on the small CNN, and in a run's outputs."""

from __future__ import annotations

import json

from dstcl.config import resolve
from dstcl.models import build_model
from dstcl.models.probe import weight_uses
from dstcl.run.compute import ComputeLedger
from dstcl.run.experiment import run_experiment
from dstcl.sparse.flops import dense_gradient_steps, forward_flops, training_flops


def test_weight_uses_and_dense_flops_match_a_hand_count_on_the_small_cnn():
    w, classes = 32, 10
    model = build_model("cnn", num_classes=classes, in_channels=1, image_size=8, width=w)
    from dstcl.sparse import prunable_parameters

    uses = weight_uses(model, (1, 8, 8), [name for name, _ in prunable_parameters(model)])
    # 8x8 input, 3x3 convs with padding 1, a 2x2 max-pool after the first two: 64, 16 and 4 positions
    assert uses == {"features.0.weight": 64, "features.4.weight": 16, "features.8.weight": 4, "classifier.weight": 1}
    sizes = {"features.0.weight": 9 * w, "features.4.weight": 9 * w * 2 * w, "features.8.weight": 9 * 2 * w * 4 * w,
             "classifier.weight": 4 * w * classes}
    by_hand = 2 * (9 * w * 64 + 18 * w * w * 16 + 72 * w * w * 4 + 4 * w * classes)
    assert forward_flops(sizes, uses) == by_hand == 1_219_072
    half = {name: n // 2 for name, n in sizes.items()}  # a sparse network counts active weights only
    assert forward_flops(half, uses) == by_hand // 2


def test_training_flops_follow_rigls_accounting():
    f_s, f_d = 100, 1000
    assert training_flops(f_s, f_d, examples=10) == 10 * 3 * f_s  # forward + backward twice its cost
    assert training_flops(f_s, f_d, examples=10, dense_examples=4) == 10 * 300 + 4 * (f_d - f_s)
    assert dense_gradient_steps("random", 100, 5) == 0 and dense_gradient_steps("unfired", 100, 5) == 0
    assert dense_gradient_steps("gradient", 100, 5) == 5  # the dense gradient at each update
    assert dense_gradient_steps("momentum", 100, 5) == 100  # the dense momentum every step


def test_the_ledger_counts_only_the_tasks_own_classifier_rows():
    shapes = {"body": (4, 4), "head": (6, 4)}
    ledger = ComputeLedger({"body": 10, "head": 1}, shapes, "head", [slice(0, 3), slice(3, 6)])
    import torch

    masks = {"body": torch.ones(4, 4, dtype=torch.bool), "head": torch.ones(6, 4, dtype=torch.bool)}
    counts = ledger.active_counts(1, masks, shapes)
    assert counts == {"body": 16, "head": 12}
    entry = ledger.add_inference(1, counts)
    assert entry["flops"] == 2 * (16 * 10 + 12) and entry["dense_flops"] == 2 * (16 * 10 + 24)
    assert ledger.active_counts(0, None, shapes) == {"body": 16, "head": 12}  # dense: every weight, own rows


def test_a_run_reports_inference_and_training_flops(tmp_path):
    cfg = resolve({"epochs": 2, "update_frequency": 3, "growth": "gradient", "threads": 1, "progress": False})
    result = run_experiment(cfg, run_dir=tmp_path / "run", echo=lambda line: None)
    compute = result.metrics["compute"]
    assert len(compute["inference_flops_per_task"]) == 5
    assert all(0 < f < compute["dense_inference_flops"] for f in compute["inference_flops_per_task"])
    capacity = json.loads((tmp_path / "run" / "capacity.json").read_text())
    assert capacity[0]["inference"]["flops"] == compute["inference_flops_per_task"][0]
    per_example = compute["inference_flops_per_task"][0]
    # 2 epochs of ~286 images per task, 3 FLOP-forwards each, plus the dense gradient at update steps
    assert compute["training_flops"] > 5 * 2 * 280 * 3 * per_example
    assert "MFLOPs per example" in (tmp_path / "run" / "summary.md").read_text()
    static = run_experiment(resolve({"epochs": 2, "method": "static", "threads": 1, "progress": False}),
                            run_dir=tmp_path / "static", echo=lambda line: None).metrics["compute"]
    assert static["training_flops"] < compute["training_flops"]  # no dense gradients at update steps
