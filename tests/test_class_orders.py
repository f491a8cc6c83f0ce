"""Class orders built from a similarity (clustered, interleaved): the grouping, the file, the run id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dstcl.config import resolve
from dstcl.data import ImageDataset, make_tasks, split_classes
from dstcl.data.grouping import adjusted_rand, clustered_order, equal_groups, interleaved_order, within_score
from dstcl.data.similarity import ClassSimilarity, read_similarity, similarity_digest, similarity_json, split_summary
from dstcl.errors import ConfigError, DataError
from dstcl.run.hashing import config_hash


def planted(classes: int = 20, groups: int = 4, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A similarity with ``groups`` hidden blocks of equal size (shuffled class ids) and noise."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(groups), classes // groups))
    m = noise * rng.normal(size=(classes, classes))
    m = (m + m.T) / 2 + 0.8 * (labels[:, None] == labels[None, :])
    np.fill_diagonal(m, 1.0)
    return m, labels


def write_file(path: Path, matrix: np.ndarray, names: list[str], dataset: str | None = "digits") -> Path:
    doc = {"format": "dstcl-similarity/1", "class_names": names, "matrix": matrix.round(6).tolist()}
    if dataset is not None:
        doc["dataset"] = dataset
    path.write_text(similarity_json(doc))
    return path


def test_equal_groups_recover_planted_blocks_deterministically():
    m, labels = planted()
    groups = equal_groups(m, 4)
    assert groups == equal_groups(m.copy(), 4)
    assert sorted(groups) == sorted(sorted(np.flatnonzero(labels == g).tolist()) for g in range(4))
    assert all(len(g) == 5 for g in groups) and sorted(c for g in groups for c in g) == list(range(20))


def test_swaps_never_lower_the_greedy_objective():
    """Weak blocks: the local search starts from the greedy grouping and only raises the objective."""
    from dstcl.data import grouping

    for seed in range(5):
        m, _ = planted(24, 6, seed=seed, noise=0.6)
        sim = m.copy()
        np.fill_diagonal(sim, 0.0)
        greedy = grouping._greedy(sim, 4)
        before = [np.flatnonzero(greedy == g).tolist() for g in range(6)]
        assert within_score(m, equal_groups(m, 6)) >= within_score(m, before) - 1e-9


def test_clustered_and_interleaved_orders():
    m, labels = planted(20, 4)
    clustered = clustered_order(m, 4, seed=0)
    assert sorted(map(sorted, clustered)) == sorted(equal_groups(m, 4))  # each task one group
    assert [len(set(labels[t].tolist())) for t in clustered] == [1, 1, 1, 1]
    interleaved = interleaved_order(m, 5, seed=0)  # 5 tasks of 4 classes: groups of 5, one class of each per task
    groups = equal_groups(m, 4)
    assert all(sorted(len(set(t) & set(g)) for g in groups) == [1, 1, 1, 1] for t in interleaved)
    for order in (clustered, interleaved):
        assert sorted(c for t in order for c in t) == list(range(20))
    assert clustered_order(m, 4, seed=0) == clustered and clustered_order(m, 4, seed=1) != clustered  # seeded sequence
    assert interleaved_order(m, 5, seed=3) != interleaved
    summary = {o: split_summary(m, split_classes(20, 4, o, 0, m)) for o in ("sequential", "clustered", "interleaved")}
    assert summary["clustered"]["within"] > summary["sequential"]["within"] > summary["interleaved"]["within"]
    assert summary["clustered"]["between"] < summary["interleaved"]["between"]
    assert summary["clustered"]["to_earlier"][0] is None and len(summary["clustered"]["to_earlier"]) == 4


def test_existing_orders_unchanged_and_similarity_orders_need_a_matrix():
    assert split_classes(6, 3) == [[0, 1], [2, 3], [4, 5]]
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(4)).tolist()
    assert split_classes(10, 5, "random", 4) == [perm[i:i + 2] for i in range(0, 10, 2)]
    with pytest.raises(DataError, match="similarity"):
        split_classes(10, 5, "clustered")
    with pytest.raises(DataError, match="sequential, random, clustered, interleaved"):
        split_classes(10, 5, "alphabetical")


def test_adjusted_rand():
    assert adjusted_rand([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(1.0)
    assert adjusted_rand([0, 0, 1, 1], [0, 1, 0, 1]) < 0


def _toy(names: list[str]) -> ImageDataset:
    y = torch.arange(len(names)).repeat_interleave(2)
    x = y.to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    return ImageDataset("toy", x, y, x.clone(), y.clone(), names, (0.5,) * 3, (0.25,) * 3, 1, True)


def test_make_tasks_matches_the_file_by_class_name():
    m, labels = planted(8, 2)
    names = [f"c{i}" for i in range(8)]
    sim = ClassSimilarity(names, m)
    tasks = make_tasks(_toy(names), 2, "clustered", 0, sim)
    assert all(len(set(labels[t.classes].tolist())) == 1 for t in tasks)
    reversed_file = ClassSimilarity(names[::-1], m[::-1, ::-1].copy())  # another class order in the file: same tasks
    assert [t.classes for t in make_tasks(_toy(names), 2, "clustered", 0, reversed_file)] == [t.classes for t in tasks]
    first4 = make_tasks(_toy(names[:4]), 2, "interleaved", 0, sim)  # fewer classes: the sub-matrix
    assert sorted(c for t in first4 for c in t.classes) == [0, 1, 2, 3]
    with pytest.raises(DataError, match="no similarity for 1 class"):
        make_tasks(_toy(names[:3] + ["other"]), 2, "clustered", 0, ClassSimilarity(names[:4], m[:4, :4]))


def test_file_is_checked_and_its_digest_is_its_content(tmp_path):
    m, _ = planted(6, 2)
    names = [str(i) for i in range(6)]
    a = write_file(tmp_path / "a.json", m, names)
    b = tmp_path / "b.json"
    b.write_text(json.dumps(json.loads(a.read_text()), indent=7))  # other bytes, same content
    assert read_similarity(a).digest == read_similarity(b).digest == similarity_digest(names, m)
    c = write_file(tmp_path / "c.json", m + 0.01 * (1 - np.eye(6)), names)
    assert read_similarity(c).digest != read_similarity(a).digest
    bad = {"missing.json": None, "text.json": "not json", "shape.json": {"class_names": names, "matrix": [[1.0]]},
           "keys.json": {"matrix": [[1.0]]}, "format.json": {"format": "x/9", "class_names": ["a"], "matrix": [[1]]},
           "asym.json": {"class_names": ["a", "b"], "matrix": [[1, 0.5], [0.1, 1]]}}
    for name, content in bad.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(DataError):
            read_similarity(path)


def test_config_records_the_digest_and_the_run_id_holds_content_not_path(tmp_path, monkeypatch):
    m, _ = planted(10, 5)
    names = [str(i) for i in range(10)]
    a = write_file(tmp_path / "a.json", m, names)
    (tmp_path / "sub").mkdir()
    b = write_file(tmp_path / "sub" / "b.json", m, names)
    monkeypatch.chdir(tmp_path)
    cfg = resolve({"class_order": "clustered", "similarity": "a.json"})
    assert cfg.similarity == str(a.resolve()) and cfg.similarity_digest == read_similarity(a).digest
    assert config_hash(cfg) == config_hash(resolve({"class_order": "clustered", "similarity": str(b)}))
    other = write_file(tmp_path / "c.json", m + 0.05 * (1 - np.eye(10)), names)
    assert config_hash(cfg) != config_hash(resolve({"class_order": "clustered", "similarity": str(other)}))
    assert config_hash(cfg) != config_hash(resolve({"class_order": "interleaved", "similarity": "a.json"}))
    # orders that read no file: the similarity is not part of their id (a grid may set it for every point)
    plain = resolve({"class_order": "random"})
    with_file = resolve({"class_order": "random", "similarity": "a.json", "similarity_digest": "0" * 16})
    assert with_file.similarity_digest is None and config_hash(with_file) == config_hash(plain)
    assert config_hash(resolve({})) == config_hash({k: v for k, v in resolve({}).flat().items()
                                                      if k not in ("similarity", "similarity_digest")})
    # a recorded run: a changed file is refused, a missing one keeps the recorded id
    saved = cfg.flat()
    write_file(a, m * 0.5 + 0.5 * np.eye(10), names)
    with pytest.raises(ConfigError, match="has changed"):
        resolve(saved)
    with pytest.raises(ConfigError, match="has changed"):
        cfg.data.class_similarity()
    a.unlink()
    assert config_hash(resolve(saved)) == config_hash(cfg)
    with pytest.raises(DataError, match="does not exist"):
        resolve(saved).data.class_similarity()


def test_config_errors_say_what_to_do(tmp_path):
    m, _ = planted(10, 5)
    with pytest.raises(ConfigError, match="--similarity FILE"):
        resolve({"class_order": "clustered"})
    with pytest.raises(DataError, match="does not exist"):
        resolve({"class_order": "clustered", "similarity": str(tmp_path / "none.json")})
    cifar = write_file(tmp_path / "cifar.json", m, [str(i) for i in range(10)], dataset="cifar10")
    with pytest.raises(ConfigError, match="measured on cifar10"):
        resolve({"class_order": "clustered", "similarity": str(cifar)})
    small = write_file(tmp_path / "small.json", m[:4, :4], [str(i) for i in range(4)])
    with pytest.raises(ConfigError, match="covers 4 classes"):
        resolve({"class_order": "clustered", "similarity": str(small)})
    assert resolve({"class_order": "clustered", "similarity": str(small), "num_classes": 4, "tasks": 2}).tasks == 2


def test_a_grid_varies_orders_methods_and_reuse(tmp_path, monkeypatch):
    from dstcl.sweep import load_grid, plan_runs

    m, _ = planted(10, 5)
    write_file(tmp_path / "sim.json", m, [str(i) for i in range(10)])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.yaml").write_text(
        "base: {epochs: 1, sparsity: 0.8, init: uniform, similarity: sim.json}\n"
        "vary:\n  class_order: [random, clustered, interleaved]\n  method: [dst, separate]\n"
        "include:\n  - {class_order: clustered, reuse: \"off\"}\n")  # quoted: YAML reads a bare off as false
    specs = plan_runs(load_grid(tmp_path / "grid.yaml"))
    assert len(specs) == 7 and len({s.id for s in specs}) == 7
    digest = read_similarity(tmp_path / "sim.json").digest
    assert {s.config.similarity_digest for s in specs if s.config.class_order != "random"} == {digest}
    random_dst = next(s for s in specs if s.config.class_order == "random" and s.config.method == "dst")
    assert random_dst.id == config_hash(resolve({"epochs": 1, "sparsity": 0.8, "init": "uniform",
                                                 "class_order": "random"}))  # the file is not part of its id
