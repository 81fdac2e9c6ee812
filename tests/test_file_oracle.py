"""FileOracle: request files out, answers in; partial answers, bad lines, idempotent re-imports."""

from __future__ import annotations

import csv
import json
import struct
from typing import ClassVar

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import TensorDataset

from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.data import ActiveDataModule
from activelab_lightning.errors import WaitingForLabels
from activelab_lightning.oracles import FileOracle, SimulatedOracle, get_oracle
from activelab_lightning.oracles._tasks import AnswerProblem, png_bytes, write_png
from activelab_lightning.records import LabelRequest
from activelab_lightning.selection import get_strategy
from activelab_lightning.store import AnnotationStore
from activelab_lightning.tables import parse_label
from tests._models import TinyMLP, fast_trainer, make_blobs

CLASSES = ["cat", "dog", "bird"]
HEADER = "example_id,annotator_id,label\n"


def read_tasks(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def ask_round(store, oracle, round, ids, *, kind="new"):
    """The callback's protocol by hand: begin the round, ask the pending requests, store the answers."""
    if store.round_record(round) is None:
        store.begin_round(
            round, seed=round, requests=[LabelRequest(e, 0.1 * i, kind, round) for i, e in enumerate(ids)]
        )
    response = oracle.request(store.pending_requests(round))
    store.record_response(response)
    return response


# ----------------------------------------------------------------------------- must-show 1
def test_two_rounds_through_the_callback_wait_resume_and_use_the_answers(tmp_path):
    n, k = 60, 3
    x, y = make_blobs(n, 4, k, seed=0, spread=1.5)
    store = AnnotationStore(tmp_path / "labels.db", num_examples=n, class_names=CLASSES)
    ctx_store[:] = [store]
    seeding = SimulatedOracle(y, [0.9, 0.8, 0.85], seed=0)
    dm = ActiveDataModule(
        TensorDataset(x),
        store,
        batch_size=16,
        inference_batch_size=32,
        initial_labeled=20,
        initial_labels=seeding,
        seed=0,
    )
    oracle = FileOracle(tmp_path, CLASSES, store=store)
    answers = tmp_path / "answers.csv"

    def run():
        pl.seed_everything(0, verbose=False)
        callback = ActiveLabCallback(
            oracle=oracle, query_size=6, strategy=RecordingActiveLab(), reporter=None
        )
        fast_trainer(callbacks=[callback], max_epochs=2).fit(TinyMLP(4, k), datamodule=dm)
        return callback

    before = len(store)
    with pytest.raises(
        WaitingForLabels, match=r"waiting for 6 labels \(round 0\): answers expected in .*answers.csv"
    ):
        run()
    tasks = read_tasks(tmp_path / "requests" / "round_000.jsonl")
    asked = [t["data"]["example_id"] for t in tasks]
    assert len(asked) == 6 and all(t["data"]["classes"] == CLASSES for t in tasks)
    not_asked = next(e for e in range(n) if e not in asked)

    # the human answers 4 of 6 (labels by name and by index) and makes 4 mistakes
    good = [(e, f"ann-{i % 2}", int(y[e])) for i, e in enumerate(asked[:4])]
    lines = [f"{e},{a},{CLASSES[lab] if i % 2 else lab}" for i, (e, a, lab) in enumerate(good)]
    lines[1:1] = ["999,ann-0,cat", f"{not_asked},ann-0,cat", f"{asked[4]},ann-1,zebra", f"{asked[5]},,dog"]
    answers.write_text(HEADER + "\n".join(lines) + "\n")
    with pytest.raises(WaitingForLabels, match="waiting for 2 labels"):
        run()
    assert len(store) == before + 4
    stored = {(a["example_id"], a["annotator_id"], a["label"]) for a in _oracle_rows(store)}
    assert set(good) <= stored
    problems = [(p.line, p.reason) for p in oracle.problems]
    assert [line for line, _ in problems] == [3, 4, 5, 6]
    assert "unknown example id 999" in problems[0][1] and "was not requested" in problems[1][1]
    assert "'zebra' is not in the class list" in problems[2][1] and "missing annotator_id" in problems[3][1]
    errors = (tmp_path / "requests" / "round_000.errors.txt").read_text().splitlines()
    assert len(errors) == 4 and errors[0].startswith(f"{answers}:3: unknown example id 999")

    # the same command again with nothing new: idempotent, still waiting, nothing changes
    with pytest.raises(WaitingForLabels, match="waiting for 2 labels"):
        run()
    assert len(store) == before + 4

    # the last answers arrive (the earlier lines stay in the file): round 0 completes
    with answers.open("a") as f:
        f.write(f"{asked[4]},ann-1,{int(y[asked[4]])}\n{asked[5]},ann-0,{CLASSES[int(y[asked[5]])]}\n")
    run()
    assert store.round_record(0).status == "completed" and len(store) == before + 6
    labeled_after_round_0 = store.labeled_ids().numel()

    # round 1 scores the labeled pool with the human answers in its label matrix
    RecordingActiveLab.seen.clear()
    with pytest.raises(WaitingForLabels, match=r"\(round 1\)"):
        run()
    (labeled_ids, labels, annotators) = RecordingActiveLab.seen[-1]
    assert labeled_ids.numel() == labeled_after_round_0 and set(asked) <= set(labeled_ids.tolist())
    row_of = {e: i for i, e in enumerate(labeled_ids.tolist())}
    final = good + [(asked[4], "ann-1", int(y[asked[4]])), (asked[5], "ann-0", int(y[asked[5]]))]
    for e, a, lab in final:  # every good answer (and nothing from the bad lines) is in the scored matrix
        assert labels[row_of[e], annotators.index(a)] == lab
    assert int((~torch.isnan(labels[:, [annotators.index("ann-0"), annotators.index("ann-1")]])).sum()) == 6
    assert len(read_tasks(tmp_path / "requests" / "round_001.jsonl")) == 6


class RecordingActiveLab(type(get_strategy("activelab"))):
    """The ActiveLab strategy, recording the labeled pool it scores."""

    seen: ClassVar[list] = []

    def fit(self, ctx):
        _, annotators = ctx_store[0].label_matrix(ctx.labeled_ids)
        RecordingActiveLab.seen.append((ctx.labeled_ids.clone(), ctx.labels.clone(), annotators))
        return super().fit(ctx)


ctx_store: list = []


def _oracle_rows(store):
    matrix, annotators = store.label_matrix()
    ids = store.labeled_ids().tolist()
    return [
        {"example_id": ids[i], "annotator_id": annotators[j], "label": int(matrix[i, j])}
        for i in range(len(ids))
        for j in range(len(annotators))
        if not torch.isnan(matrix[i, j])
    ]


# ----------------------------------------------------------------------------- answers
@pytest.fixture()
def store():
    return AnnotationStore(num_examples=20, class_names=CLASSES)


def test_jsonl_answers_labels_by_index_and_repeated_import_is_idempotent(tmp_path, store):
    oracle = FileOracle(tmp_path, CLASSES, answers="answers.jsonl", store=store)
    (tmp_path / "answers.jsonl").write_text(
        '{"example_id": 1, "annotator_id": "alice", "label": 2}\n\n'
        '{"example_id": 2, "annotator_id": "bob", "label": "Dog"}\n'
        "not json\n"
        '["a list"]\n'
    )
    response = ask_round(store, oracle, 0, [1, 2, 3])
    assert sorted(
        (a.example_id, a.annotator_id, a.label, a.source, a.request_id) for a in response.annotations
    ) == [(1, "alice", 2, "oracle:file", "r0:e1"), (2, "bob", 1, "oracle:file", "r0:e2")]
    assert [r.example_id for r in response.pending] == [3]
    assert [(p.line, p.reason.split(" (")[0]) for p in oracle.problems] == [
        (4, "not valid JSON"),
        (5, "expected a JSON object with keys ['example_id', 'annotator_id', 'label'], got ['a list']"),
    ]
    again = oracle.request(store.requests(0))  # everything, answered or not
    assert again.annotations == () and len(store) == 2


def test_a_line_never_changes_a_stored_label(tmp_path, store):
    oracle = FileOracle(tmp_path, CLASSES, store=store)
    (tmp_path / "answers.csv").write_text(HEADER + "1,alice,cat\n")
    ask_round(store, oracle, 0, [1, 2])
    (tmp_path / "answers.csv").write_text(HEADER + "1,alice,bird\n2,alice,dog\n")
    response = ask_round(store, oracle, 0, [1, 2])
    assert [(a.example_id, a.label) for a in response.annotations] == [(2, 1)]
    (problem,) = oracle.problems
    assert (
        problem.line == 2 and "already labeled example 1 as 'cat'; the stored label is kept" in problem.reason
    )
    assert store.label_matrix([1])[0].tolist() == [[0.0]]


def test_relabel_needs_someone_new_and_answers_of_closed_requests_are_reported(tmp_path, store):
    oracle = FileOracle(tmp_path, CLASSES, store=store)
    answers = tmp_path / "answers.csv"
    answers.write_text(HEADER + "4,alice,cat\n")
    ask_round(store, oracle, 0, [4])
    store.complete_round(0)
    store.begin_round(1, 1, [LabelRequest(4, 0.2, "relabel", 1, ("alice",))])
    answers.write_text(HEADER + "4,alice,cat\n4,bob,dog\n5,carol,dog\n")
    response = oracle.request(store.pending_requests(1))
    assert [(a.annotator_id, a.request_id) for a in response.annotations] == [("bob", "r1:e4")]
    (problem,) = oracle.problems  # alice's old line is silently recognised as stored
    assert problem.line == 4 and "example 5 was not requested" in problem.reason
    store.record_response(response)
    store.complete_round(1)
    store.begin_round(2, 2, [LabelRequest(6, 0.3, "new", 2)])
    answers.write_text(HEADER + "4,carol,cat\n")
    assert oracle.request(store.pending_requests()).annotations == ()
    (problem,) = oracle.problems
    assert "request r1:e4 is already answered" in problem.reason


def test_bad_header_and_conflicting_duplicate_lines(tmp_path, store):
    oracle = FileOracle(tmp_path, CLASSES, answers=["a.csv", "b.csv"], store=store)
    (tmp_path / "a.csv").write_text("id,who,label\n1,alice,cat\n")
    (tmp_path / "b.csv").write_text(HEADER + "1,alice,cat\n1,alice,dog\n1,alice,cat\nx,alice,cat\n")
    response = ask_round(store, oracle, 0, [1])
    assert [(a.annotator_id, a.label) for a in response.annotations] == [("alice", 0)]
    problems = [(p.file.rsplit("/", 1)[-1], p.line) for p in oracle.problems]
    assert problems == [("a.csv", 1), ("b.csv", 3), ("b.csv", 5)]
    assert "lacks column(s) ['example_id', 'annotator_id']" in oracle.problems[0].reason
    assert "the first one counts" in oracle.problems[1].reason
    assert "example_id 'x' is not an integer" in oracle.problems[2].reason
    assert str(oracle.problems[1]).endswith(":3: " + oracle.problems[1].reason)


def test_without_a_store_answers_from_earlier_runs_are_not_reported(tmp_path):
    oracle = FileOracle(tmp_path, CLASSES, num_examples=10)
    (tmp_path / "answers.csv").write_text(HEADER + "1,alice,cat\n")
    req1, req2 = LabelRequest(1, 0.1, "new", 0), LabelRequest(2, 0.2, "new", 0)
    assert len(oracle.request([req1, req2]).annotations) == 1
    fresh = FileOracle(tmp_path, CLASSES, num_examples=10)  # a new process; request 1 was answered
    response = fresh.request([req2])
    assert response.annotations == () and fresh.problems == []


# ----------------------------------------------------------------------------- request files
def test_request_files_are_label_studio_tasks_with_thumbnails(tmp_path, store):
    images = torch.rand(20, 1, 8, 8)
    oracle = FileOracle(tmp_path, CLASSES, store=store, show_fn=lambda e: images[e] if e % 2 else f"text {e}")
    store.begin_round(0, 0, [LabelRequest(3, 0.5, "new", 0), LabelRequest(4, -0.25, "relabel", 0, ("ann",))])
    oracle.request(store.pending_requests(0))
    tasks = read_tasks(tmp_path / "requests" / "round_000.jsonl")
    assert [t["data"]["example_id"] for t in tasks] == [4, 3]  # lowest score first
    first, second = tasks
    assert first["data"]["text"] == "text 4" and first["data"]["kind"] == "relabel"
    assert first["data"]["existing_annotators"] == ["ann"] and first["data"]["request_id"] == "r0:e4"
    assert first["predictions"] == [{"model_version": "activelab-r0", "result": [], "score": -0.25}]
    png = tmp_path / "requests" / second["data"]["image"]
    assert second["data"]["image"] == "images/r000_e3.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png.read_bytes()[16:24]) == (96, 96)  # 8x8 enlarged to a 96 px thumbnail
    config = (tmp_path / "requests" / "label_studio_config.xml").read_text()
    assert '<Text name="text" value="$text"/>' in config and '<Choice value="bird"/>' in config
    rows = list(csv.DictReader((tmp_path / "requests" / "round_000.csv").open()))
    assert [r["request_id"] for r in rows] == ["r0:e4", "r0:e3"] and rows[0]["classes"] == "cat|dog|bird"
    # re-asking the pending requests rewrites nothing
    stamp = (tmp_path / "requests" / "round_000.jsonl").stat().st_mtime_ns
    oracle.request(store.pending_requests(0))
    assert (tmp_path / "requests" / "round_000.jsonl").stat().st_mtime_ns == stamp


def test_bind_uses_the_datamodule_dataset_for_display(tmp_path, store):
    class DM:
        dataset = TensorDataset(torch.arange(40, dtype=torch.float32).reshape(20, 2))

    oracle = FileOracle(tmp_path, CLASSES)
    oracle.bind(store=store, datamodule=DM())
    assert oracle.num_examples == 20
    store.begin_round(0, 0, [LabelRequest(5, 0.1, "new", 0)])
    oracle.request(store.pending_requests(0))
    (task,) = read_tasks(tmp_path / "requests" / "round_000.jsonl")
    assert task["data"]["text"] == "10, 11"


def test_png_writer_shapes_and_errors(tmp_path):
    rgb = (torch.rand(3, 4, 5) * 255).to(torch.uint8)
    data = png_bytes(rgb, min_side=0)
    assert struct.unpack(">IIBB", data[16:26]) == (5, 4, 8, 2)  # width, height, depth, RGB
    assert write_png(tmp_path / "g.png", torch.zeros(2, 3), min_side=0).read_bytes()[25] == 0  # grayscale
    with pytest.raises(ValueError, match=r"image must be \(H, W\).*got shape \(7,\)"):
        png_bytes(torch.zeros(7))


def test_parse_label():
    assert (
        parse_label("bird", CLASSES) == 2
        and parse_label(1, CLASSES) == 1
        and parse_label(" CAT", CLASSES) == 0
    )
    assert parse_label("1", ["0", "1"]) == 1 and parse_label("0", ["1", "0"]) == 1  # names win over indices
    with pytest.raises(ValueError, match=r"label 'zebra' is not in the class list \['cat', 'dog', 'bird'\]"):
        parse_label("zebra", CLASSES)
    with pytest.raises(ValueError, match="label index 3 is outside 0..2"):
        parse_label(3, CLASSES)


def test_constructor_errors_and_registry(tmp_path, store):
    with pytest.raises(ValueError, match=r"answers file '.*answers.xlsx' has suffix '.xlsx'; use one of"):
        FileOracle(tmp_path, CLASSES, answers="answers.xlsx")
    with pytest.raises(ValueError, match="at least 2 distinct names"):
        FileOracle(tmp_path, ["cat"])
    with pytest.raises(ValueError, match=r"differ from the store's \['cat', 'dog', 'bird'\]"):
        FileOracle(tmp_path, ["a", "b", "c"], store=store)
    with pytest.raises(TypeError, match="show_fn must be callable"):
        FileOracle(tmp_path, CLASSES, show_fn="x")
    oracle = get_oracle("file", directory=tmp_path, class_names=CLASSES)
    assert isinstance(oracle, FileOracle) and oracle.where == str(tmp_path / "answers.csv")
    assert isinstance(AnswerProblem("f", 1, "r"), tuple)
