"""Bundled Wall Robot data and the ActiveLab paper's setup on it (simulated annotator statistics)."""

from __future__ import annotations

from importlib import resources

import pytest
import torch

from activelab_lightning.datasets import (
    CITATION,
    CLASS_NAMES,
    load_wall_robot,
    make_paper_setup,
    thin_label_mask,
    wall_robot_feature_names,
)
from activelab_lightning.datasets.noise import noise_matrix_is_valid
from activelab_lightning.datasets.wall_robot_paper import PAPER_CLASS_COUNTS, PAPER_NOISE_MATRIX
from activelab_lightning.oracles import SimulatedOracle
from activelab_lightning.records import LabelRequest


@pytest.fixture(scope="module")
def setup():
    return make_paper_setup()


def test_package_data_is_installed_with_license():
    data = resources.files("activelab_lightning.datasets").joinpath("data")
    names = {p.name for p in data.iterdir()}
    assert {"wall_robot_4.csv.gz", "wall_robot_24.csv.gz", "README.md", "LICENSE-DATA"} <= names
    license_text = data.joinpath("LICENSE-DATA").read_text()
    assert "CC BY 4.0" in license_text and "10.24432/C57C8W" in license_text
    assert "10.24432/C57C8W" in CITATION


@pytest.mark.parametrize("sensors", [4, 24])
def test_load_wall_robot(sensors):
    x, y, names = load_wall_robot(sensors)
    assert x.shape == (5456, sensors) and x.dtype == torch.float32
    assert y.shape == (5456,) and y.dtype == torch.int64
    assert names == CLASS_NAMES and len(wall_robot_feature_names(sensors)) == sensors
    assert torch.bincount(y).tolist() == [2205, 2097, 328, 826]
    assert int(y[0]) == 3 and torch.isfinite(x).all() and (x >= 0).all()
    x[0, 0] = -1.0  # callers get their own copy
    assert float(load_wall_robot(sensors)[0][0, 0]) >= 0


def test_both_versions_are_the_same_time_steps():
    x4, y4, _ = load_wall_robot(4)
    _, y24, _ = load_wall_robot(24)
    assert torch.equal(y4, y24)
    assert torch.allclose(x4[0], torch.tensor([1.687, 0.445, 2.332, 0.429]))


def test_load_wall_robot_rejects_other_versions():
    with pytest.raises(ValueError, match="sensors must be 4 or 24"):
        load_wall_robot(2)


def test_paper_setup_sizes_and_splits(setup):
    assert len(setup.dataset) == 2000 and len(setup.test_dataset) == 1000
    assert setup.labeled_ids.numel() == 1000 and setup.unlabeled_ids.numel() == 1000
    ids = torch.cat([setup.labeled_ids, setup.unlabeled_ids])
    assert torch.equal(ids.sort().values, torch.arange(2000))
    rows = torch.cat([setup.train_rows, setup.test_rows])
    assert rows.unique().numel() == 3000
    _, y_all, _ = load_wall_robot(4)
    assert torch.bincount(y_all[rows]).tolist() == list(PAPER_CLASS_COUNTS)  # stratified subset
    assert torch.equal(setup.true_labels, y_all[setup.train_rows])
    assert torch.equal(setup.test_labels, y_all[setup.test_rows])
    x, y = setup.dataset[5]
    assert torch.equal(x, load_wall_robot(4)[0][setup.train_rows[5]]) and int(y) == int(setup.true_labels[5])
    assert setup.feature_mean is None and setup.num_classes == 4


def test_paper_setup_uses_the_paper_noise_matrix_and_30_annotators(setup):
    assert torch.equal(setup.noise_matrix, torch.tensor(PAPER_NOISE_MATRIX, dtype=torch.float64))
    assert float(setup.noise_matrix.trace()) == pytest.approx(3.4)
    prior = torch.bincount(setup.true_labels, minlength=4).double() / 2000
    assert noise_matrix_is_valid(setup.noise_matrix, prior)
    assert setup.annotator_ids == tuple(f"sim-{a:02d}" for a in range(30))
    assert setup.label_pool.shape == (2000, 30)
    assert 0.82 < float((setup.label_pool == setup.true_labels[:, None]).double().mean()) < 0.85


def test_paper_annotator_statistics_default_seed(setup):
    """The paper printed: min 0.714, max 0.939, mean 0.833, majority vote 0.828, 898 single labels."""
    s = setup.summary()
    per_example = s["labels_per_example"]
    assert sum(per_example.values()) == 1000 and max(per_example) <= 5 and min(per_example) >= 1
    assert 860 <= per_example[1] <= 910
    assert 0.65 <= s["annotator_accuracy_min"] <= 0.76
    assert 0.91 <= s["annotator_accuracy_max"] <= 0.98
    assert 0.80 <= s["annotator_accuracy_mean"] <= 0.86
    assert 0.80 <= s["consensus_accuracy"] <= 0.86
    assert s["num_annotations"] == len(setup.initial_annotations)


def test_paper_annotator_statistics_over_seeds():
    stats = [make_paper_setup(seed=seed).summary() for seed in (123, 0, 1, 2)]

    def mean(key):
        return sum(s[key] for s in stats) / len(stats)

    assert 0.82 <= mean("annotator_accuracy_mean") <= 0.85
    assert 0.815 <= mean("consensus_accuracy") <= 0.85
    assert 0.66 <= mean("annotator_accuracy_min") <= 0.75
    assert 0.92 <= mean("annotator_accuracy_max") <= 0.97
    assert all(860 <= s["labels_per_example"][1] <= 910 for s in stats)


def test_paper_setup_is_deterministic():
    a, b = make_paper_setup(seed=7), make_paper_setup(seed=7)
    assert a.initial_annotations == b.initial_annotations
    assert torch.equal(a.labeled_ids, b.labeled_ids) and torch.equal(a.train_rows, b.train_rows)
    assert torch.equal(a.label_pool, b.label_pool)
    requests = [LabelRequest(int(i), 0.0, "new", 1) for i in a.unlabeled_ids[:50]]
    assert a.oracle.request(requests) == b.oracle.request(requests)
    c = make_paper_setup(seed=8)
    assert not torch.equal(a.train_rows, c.train_rows)
    assert a.initial_annotations != c.initial_annotations


def test_initial_annotations_are_consistent_with_the_oracle(setup):
    by_example: dict[int, tuple[str, ...]] = {}
    for ann in setup.initial_annotations:
        assert ann.source == "initial" and ann.round is None
        assert int(setup.oracle.label_of([ann.example_id], [ann.annotator_id])[0]) == ann.label
        by_example[ann.example_id] = by_example.get(ann.example_id, ()) + (ann.annotator_id,)
    assert set(by_example) == set(setup.labeled_ids.tolist())
    relabel = [LabelRequest(e, 0.0, "relabel", 1, anns) for e, anns in list(by_example.items())[:100]]
    new = [LabelRequest(int(e), 0.0, "new", 1) for e in setup.unlabeled_ids[:100]]
    response = setup.oracle.request(relabel + new)
    assert len(response.annotations) == 200 and not response.exhausted
    for ann in response.annotations:
        assert ann.annotator_id not in by_example.get(ann.example_id, ())
        a = setup.annotator_ids.index(ann.annotator_id)
        assert ann.label == int(setup.label_pool[ann.example_id, a])
    reseeded = setup.make_oracle(seed=1)
    again = reseeded.request(relabel + new)
    assert again != response and len(again.annotations) == 200
    for ann in again.annotations:  # another annotator may answer, but with that annotator's fixed label
        assert ann.label == int(setup.label_pool[ann.example_id, setup.annotator_ids.index(ann.annotator_id)])
    matrix = setup.initial_label_matrix()
    assert matrix.shape == (1000, 30) and int((~matrix.isnan()).sum()) == len(setup.initial_annotations)
    assert isinstance(setup.oracle, SimulatedOracle) and setup.oracle.num_examples == 2000


def test_completely_labeled_variant():
    full = make_paper_setup(completely_labeled=True)
    assert full.labeled_ids.numel() == 2000 and full.unlabeled_ids.numel() == 0
    assert float(full.noise_matrix.trace()) == pytest.approx(0.80 * 4)
    assert not torch.equal(full.oracle_pool, full.label_pool)  # a second, independent draw
    s = full.summary()
    assert 1720 <= s["labels_per_example"][1] <= 1830
    assert 0.74 <= s["consensus_accuracy"] <= 0.88
    for ann in full.oracle.request([LabelRequest(i, 0.0, "relabel", 1) for i in range(20)]).annotations:
        assert ann.label == int(full.oracle_pool[ann.example_id, full.annotator_ids.index(ann.annotator_id)])


def test_standardize_and_24_sensors():
    std = make_paper_setup(sensors=24, standardize=True, seed=1)
    assert std.features.shape == (2000, 24) and std.test_features.shape == (1000, 24)
    assert torch.allclose(std.features.mean(0), torch.zeros(24), atol=1e-4)
    assert torch.allclose(std.features.std(0, correction=0), torch.ones(24), atol=1e-4)
    raw = make_paper_setup(sensors=24, seed=1)
    assert torch.allclose(
        std.test_features * std.feature_std + std.feature_mean, raw.test_features, atol=1e-5
    )


def test_explicit_and_generated_noise_matrices():
    generated = make_paper_setup(noise_matrix="generate", trace_fraction=0.9, seed=2)
    assert float(generated.noise_matrix.trace()) == pytest.approx(3.6)
    identity = make_paper_setup(noise_matrix=torch.eye(4, dtype=torch.float64), num_annotators=5)
    assert identity.summary()["consensus_accuracy"] == 1.0 and identity.annotator_ids[-1] == "sim-04"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"class_counts": (10, 10)}, r"one count per class \(4\)"),
        ({"class_counts": (10, 10, 400, 10)}, "class 2 has only 328 rows"),
        ({"trace_fraction": 0.2}, r"trace_fraction must be in \(1/K, 1\]"),
        ({"noise_matrix": "random"}, "noise_matrix must be 'paper', 'generate'"),
        ({"noise_matrix": torch.eye(3)}, r"noise_matrix must have shape \(4, 4\)"),
        ({"num_annotators": 0}, "num_annotators must be a positive int"),
        ({"test_size": 3000}, "test_size must be in"),
        ({"num_labeled": 0}, "num_labeled must be in"),
    ],
)
def test_paper_setup_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_paper_setup(**kwargs)


def test_thin_label_mask():

    def g():
        return torch.Generator().manual_seed(4)

    mask = thin_label_mask(500, 30, generator=g())
    per_row = mask.sum(1)
    assert mask.shape == (500, 30) and int(per_row.min()) >= 1 and int(per_row.max()) <= 5
    assert int((per_row == 1).sum()) > 400
    assert torch.equal(mask, thin_label_mask(500, 30, generator=g()))
    keep_all = thin_label_mask(50, 30, keep_per_example=3, drop_prob=0.0, generator=g())
    assert (keep_all.sum(1) == 3).all()
    assert (thin_label_mask(10, 2, keep_per_example=5, drop_prob=0.0).sum(1) == 2).all()
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\]"):
        thin_label_mask(10, 3, drop_prob=1.5)
    with pytest.raises(ValueError, match="keep_per_example must be >= 1"):
        thin_label_mask(10, 3, keep_per_example=0)
