"""``dstcl similarity`` on every built-in data set (small data in the real formats), and runs on its orders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import datagen
from dstcl.cli.main import main
from dstcl.data import load_dataset, make_tasks
from dstcl.data.hierarchy import superclasses_of
from dstcl.data.similarity import parse_similarity, read_similarity
from dstcl.train.similarity import SimilaritySettings, centred_cosine, measure_similarity, split_per_class

REAL_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "miniimagenet"
SMALL = ["--epochs", "1", "--threads", "1", "--device", "cpu"]


def similarity(capsys, *args: str) -> dict:
    code = main(["similarity", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(Path(args[args.index("-o") + 1]).read_text())


def test_digits_file_plot_determinism_and_a_clustered_run(tmp_path, capsys):
    first = tmp_path / "a.json"
    doc = similarity(capsys, "digits", *SMALL, "--tasks", "5", "-o", str(first), "--plot", str(tmp_path / "a.png"))
    assert (tmp_path / "a.png").stat().st_size > 1000
    similarity(capsys, "digits", *SMALL, "--tasks", "5", "-o", str(tmp_path / "b.json"))
    assert first.read_bytes() == (tmp_path / "b.json").read_bytes()  # deterministic for a seed
    similarity(capsys, "digits", *SMALL, "--seed", "1", "-o", str(tmp_path / "c.json"))
    assert read_similarity(tmp_path / "c.json").digest != read_similarity(first).digest
    m = np.asarray(doc["matrix"])
    assert m.shape == (10, 10) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert doc["class_names"] == [str(i) for i in range(10)] and doc["digest"] == read_similarity(first).digest
    assert doc["settings"]["backbone"] == "cnn" and doc["settings"]["epochs"] == 1 and "held out" in doc["method"]["images"]
    orders = doc["tasks"]["orders"]
    assert set(orders) == {"sequential", "random", "clustered", "interleaved"}
    assert orders["clustered"]["within"] >= max(o["within"] for o in orders.values())
    assert orders["interleaved"]["within"] <= min(o["within"] for o in orders.values())
    assert "no class hierarchy" in doc["hierarchy"]["none"] and len(doc["most_similar_pairs"]) == 10
    out = tmp_path / "runs"
    code = main(["run", "--class-order", "clustered", "--similarity", str(first), "--epochs", "2", "--threads", "1",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    (run,) = sorted(out.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["similarity_digest"] == doc["digest"]
    assert config["resolved"]["task_classes"] == orders["clustered"]["task_classes"]  # the same seed: the same split
    assert config["resolved"]["similarity"]["within"] == orders["clustered"]["within"]
    assert "Class order: clustered: task 0:" in (run / "summary.md").read_text()
    assert json.loads((run / "metrics.json").read_text())["bwt"] == 0.0


def test_the_held_out_split_and_the_measure():
    y = torch.arange(3).repeat_interleave(10)
    fit, held = split_per_class(y, 0.2, None, seed=0)
    assert len(held) == 6 and len(fit) == 24 and not set(fit.tolist()) & set(held.tolist())
    assert torch.equal(split_per_class(y, 0.2, None, seed=0)[1], held)
    fit, held = split_per_class(y, 0.5, 4, seed=0)
    assert len(fit) == len(held) == 6
    means = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]) + 5.0  # a large common component
    sim = centred_cosine(means)
    assert sim[0, 1] > 0.9 and sim[0, 2] < -0.9 and np.allclose(np.diag(sim), 1.0)


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_similarity_and_orders(kind, tmp_path, capsys):
    datagen.write_cifar(tmp_path, kind=kind, train_per_class=6, test_per_class=2, as_tar=kind == "cifar100")
    file = tmp_path / "sim.json"
    doc = similarity(capsys, kind, "--data-dir", str(tmp_path), "--no-download", "--backbone", "cnn", "--width", "4",
                     *SMALL, "--tasks", "10", "--batch-size", "32", "-o", str(file))
    classes = 10 if kind == "cifar10" else 100
    assert len(doc["class_names"]) == classes and len(doc["tasks"]["orders"]["clustered"]["task_classes"]) == 10
    if kind == "cifar10":
        assert "none" in doc["hierarchy"]
    else:  # the second, independent measure: the 20 superclasses of the pickles' coarse_labels
        h = doc["hierarchy"]
        assert h["superclasses"] == 20 and h["superclass_of_class"][:6] == [0, 0, 0, 0, 0, 1]
        assert h["pairs_within"] == 20 * 10 and 0.0 <= h["auc"] <= 1.0 and -1.0 <= h["grouping_adjusted_rand"] <= 1.0
        assert 0.0 <= h["neighbour_precision"] <= 1.0 and h["neighbour_precision_chance"] == pytest.approx(4 / 99, abs=1e-6)
    for order in ("clustered", "interleaved"):
        code = main(["run", "--dataset", kind, "--data-dir", str(tmp_path), "--no-download", "--backbone", "cnn",
                     "--tasks", "10", "--class-order", order, "--similarity", str(file), "--check"])
        printed = capsys.readouterr().out
        assert code == 0
        resolved = json.loads(printed[printed.index("{"): printed.rindex("}") + 1])["resolved"]
        assert resolved["task_classes"] == doc["tasks"]["orders"][order]["task_classes"]


def test_cifar100_superclasses_follow_the_first_classes(tmp_path):
    datagen.write_cifar(tmp_path, kind="cifar100", train_per_class=2, test_per_class=1)
    ds = load_dataset("cifar100", tmp_path, download=False, progress=False, num_classes=12)
    h = superclasses_of(ds)
    assert h.of_class == [0] * 5 + [1] * 5 + [2] * 2 and h.names[0] == "super_00"


def test_miniimagenet_similarity_and_orders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = datagen.write_miniimagenet(tmp_path, 6, 10, size=32, as_archive="tar", shards=2)
    settings = SimilaritySettings(backbone="cnn", model_options={"width": 4}, epochs=1, batch_size=16, tasks=3,
                                  data_options={"train_per_class": 8, "test_per_class": 2})
    doc = measure_similarity("miniimagenet", str(folder), settings, device=torch.device("cpu"), echo=lambda _: None)
    sim = parse_similarity(json.loads(json.dumps(doc)))
    assert sim.class_names == datagen.wnids(6) and sim.dataset == "miniimagenet"
    ds = load_dataset("miniimagenet", folder, progress=False, train_per_class=8, test_per_class=2)
    for order in ("clustered", "interleaved"):
        tasks = make_tasks(ds, 3, order, 0, sim)
        assert [t.classes for t in tasks] == doc["tasks"]["orders"][order]["task_classes"]
        assert sorted(c for t in tasks for c in t.classes) == list(range(6))


@pytest.mark.skipif(not REAL_MINI.is_dir(), reason="the real miniImageNet copy is not on this machine")
def test_real_miniimagenet_interleaved_run_from_the_documented_file(tmp_path, monkeypatch):
    documented = Path(__file__).resolve().parents[1] / "docs" / "similarity" / "miniimagenet.json"
    if not documented.is_file():
        pytest.skip("docs/similarity/miniimagenet.json is not written yet")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(["run", "--dataset", "miniimagenet", "--data-dir", str(REAL_MINI), "--num-classes", "4",
                 "--tasks", "2", "--class-order", "interleaved", "--similarity", str(documented), "--epochs", "1",
                 "--backbone", "resnet18", "--width", "8", "--batch-size", "64", "--update-frequency", "5",
                 "--no-progress", "--out", str(tmp_path / "runs")])
    assert code == 0
    (run,) = sorted((tmp_path / "runs").iterdir())
    assert json.loads((run / "metrics.json").read_text())["bwt"] == 0.0


def test_similarity_mistakes_are_one_paragraph(tmp_path, capsys):
    for args, words in ((["nosuch"], "unknown dataset"), (["digits", "--holdout", "1.5"], "--holdout"),
                        (["digits", "--epochs", "0"], "--epochs"), (["digits", "--split", "random"], "--split"),
                        (["digits", "--backbone", "resnet99"], "unknown backbone")):
        assert main(["similarity", *args, "-o", str(tmp_path / "x.json")]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
