"""AnnotationStore: label matrix, idempotency, corrections, rounds, external ids, export/import, bad input."""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from activelab_lightning.records import Annotation, LabelRequest, OracleResponse, RoundRecord
from activelab_lightning.store import SCHEMA_VERSION, AnnotationStore

NAN = math.nan
CLASSES = ("cat", "dog", "bird")


@pytest.fixture
def store() -> AnnotationStore:
    with AnnotationStore(num_examples=6, class_names=CLASSES) as s:
        yield s


def A(e: int, a: str, label: int, **kw) -> Annotation:
    return Annotation(example_id=e, annotator_id=a, label=label, **kw)


def fill(store: AnnotationStore) -> None:
    """Examples 0, 2, 3, 5 labeled; 'carol' labels only example 5; 'dan' only example 3."""
    store.add_annotations(
        [A(2, "bob", 1), A(0, "alice", 0), A(2, "alice", 2), A(5, "carol", 1), A(3, "dan", 0), A(0, "bob", 0)]
    )


def assert_same(actual: torch.Tensor, expected: list[list[float]]) -> None:
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), equal_nan=True)


def snapshot(store: AnnotationStore) -> tuple:
    """Everything observable, to check a failed call left the store untouched."""
    matrix, names = store.label_matrix()
    return (
        len(store),
        matrix.tolist().__repr__(),
        names,
        store.rounds(),
        store.request_status(),
        store.external_ids("ls"),
    )


# ----------------------------------------------------------------------------- derived views
def test_label_matrix_matches_hand_computed(store: AnnotationStore) -> None:
    fill(store)
    matrix, names = store.label_matrix()
    # rows = labeled ids sorted (0, 2, 3, 5); columns = first-seen order bob, alice, carol, dan
    assert names == ["bob", "alice", "carol", "dan"]
    assert_same(
        matrix,
        [
            [0, 0, NAN, NAN],
            [1, 2, NAN, NAN],
            [NAN, NAN, NAN, 0],
            [NAN, NAN, 1, NAN],
        ],
    )


def test_label_matrix_rows_in_given_order_and_empty_annotators_dropped(store: AnnotationStore) -> None:
    fill(store)
    matrix, names = store.label_matrix([2, 1, 0])
    assert names == ["bob", "alice"]  # carol and dan labeled none of these rows
    assert_same(matrix, [[1, 2], [NAN, NAN], [0, 0]])
    for ids in (np.array([2, 1, 0]), torch.tensor([2, 1, 0], dtype=torch.int32), (2, 1, 0)):
        assert torch.equal(store.label_matrix(ids)[0].nan_to_num(-1), matrix.nan_to_num(-1))


def test_label_matrix_of_unlabeled_or_no_rows(store: AnnotationStore) -> None:
    fill(store)
    matrix, names = store.label_matrix([4, 1])
    assert matrix.shape == (2, 0) and names == []
    matrix, names = store.label_matrix([])
    assert matrix.shape == (0, 0) and names == []
    empty = AnnotationStore(num_examples=3, class_names=CLASSES)
    assert empty.label_matrix()[0].shape == (0, 0)
    assert empty.labeled_ids().tolist() == [] and empty.unlabeled_ids().tolist() == [0, 1, 2]


def test_counts_id_sets_and_annotators(store: AnnotationStore) -> None:
    fill(store)
    assert store.label_counts().tolist() == [2, 0, 2, 1, 0, 1]
    assert store.label_counts().dtype == torch.int64
    assert store.labeled_ids().tolist() == [0, 2, 3, 5]
    assert store.unlabeled_ids().tolist() == [1, 4]
    assert store.labeled_ids().dtype == torch.int64
    assert store.annotator_counts() == {"bob": 2, "alice": 2, "carol": 1, "dan": 1}
    assert store.annotators == ("bob", "alice", "carol", "dan")
    assert store.annotators_of([2, 1, 0]) == [("bob", "alice"), (), ("alice", "bob")]
    assert len(store) == 6


def test_views_are_refreshed_after_each_write(store: AnnotationStore) -> None:
    fill(store)
    assert store.label_counts()[1] == 0
    store.add_annotations([A(1, "erin", 2)])
    assert store.label_counts()[1] == 1
    assert store.labeled_ids().tolist() == [0, 1, 2, 3, 5]
    assert store.label_matrix([1])[1] == ["erin"]


def test_label_matrix_rejects_bad_example_ids(store: AnnotationStore) -> None:
    fill(store)
    with pytest.raises(ValueError, match=r"example_ids must be distinct, got repeated ids \[2\]"):
        store.label_matrix([2, 0, 2])
    with pytest.raises(ValueError, match=r"example_ids contains 6, outside 0..5"):
        store.label_matrix([0, 6])
    with pytest.raises(TypeError, match="example_ids must hold integer example ids"):
        store.label_matrix([0.5])


# ----------------------------------------------------------------------------- idempotency / corrections
def test_exact_repeats_are_no_ops(store: AnnotationStore) -> None:
    ann = A(1, "alice", 2, round=0, source="oracle:sim", request_id="r0:e1")
    assert store.add_annotations([ann]) == 1
    assert store.add_annotations([ann]) == 0
    assert store.add_annotations([ann, ann]) == 0
    assert len(store) == 1
    fresh = AnnotationStore(num_examples=6, class_names=CLASSES)
    assert fresh.add_annotations([ann, ann]) == 1  # a repeat inside one batch too


def test_second_label_by_same_annotator_needs_correction(store: AnnotationStore) -> None:
    store.add_annotations([A(1, "alice", 2)])
    before = snapshot(store)
    with pytest.raises(
        ValueError, match=r"annotator 'alice' already labeled example 1 as 2 .*pass correction=True"
    ):
        store.add_annotations([A(3, "bob", 0), A(1, "alice", 0)])
    with pytest.raises(ValueError, match="already labeled example 1"):  # same label, other request
        store.add_annotations([A(1, "alice", 2, round=4, request_id="r4:e1")])
    assert snapshot(store) == before


def test_corrections_latest_wins_and_log_keeps_all(store: AnnotationStore) -> None:
    store.add_annotations([A(1, "alice", 2), A(1, "bob", 0)])
    assert store.add_annotations([A(1, "alice", 0)], correction=True) == 1
    assert store.add_annotations([A(1, "alice", 0)], correction=True) == 0  # already its label
    assert store.add_annotations([A(1, "alice", 2)]) == 0  # repeat of the original: no-op
    assert_same(store.label_matrix()[0], [[0, 0]])
    assert store.add_annotations([A(1, "alice", 1), A(1, "alice", 2)], correction=True) == 2
    assert_same(store.label_matrix()[0], [[2, 0]])
    assert len(store) == 5
    assert [r["is_correction"] for r in store.iter_annotations()] == [0, 0, 1, 1, 1]
    assert store.label_counts()[1] == 2  # corrections do not count as more labels
    assert store.annotator_counts() == {"alice": 1, "bob": 1}
    # correction=True on a never-labeled pair stores a plain label
    assert store.add_annotations([A(4, "carol", 1)], correction=True) == 1
    assert [r["is_correction"] for r in store.iter_annotations()][-1] == 0


def test_bad_batches_are_all_or_nothing(store: AnnotationStore) -> None:
    fill(store)
    before = snapshot(store)
    bad_batches = [
        ([A(1, "x", 0), A(6, "x", 0)], ValueError, r"annotations\[1\]: example_id 6 is outside 0..5"),
        ([A(1, "x", 0), A(-1, "x", 0)], ValueError, r"example_id -1 is outside 0..5"),
        (
            [A(1, "x", 3)],
            ValueError,
            r"label 3 is outside the class set 0..2 \(class_names=\['cat', 'dog', 'bird'\]\)",
        ),
        ([A(1, "x", -1)], ValueError, r"label -1 is outside the class set"),
        ([A(1, "", 0)], TypeError, r"annotator_id must be a non-empty string, got ''"),
        ([A(1, 7, 0)], TypeError, r"annotator_id must be a non-empty string, got 7"),  # type: ignore[arg-type]
        ([A(1, "x", 1.0)], TypeError, r"label must be an integer, got 1.0"),  # type: ignore[arg-type]
        ([A(True, "x", 1)], TypeError, r"example_id must be an integer, got True"),  # type: ignore[arg-type]
        ([A(1, "x", 0), (1, "x", 0)], TypeError, r"annotations\[1\] must be an Annotation, got tuple"),
        ([A(1, "x", 0, source="")], TypeError, r"source must be a non-empty string"),
    ]
    for batch, error, match in bad_batches:
        with pytest.raises(error, match=match):
            store.add_annotations(batch)
        assert snapshot(store) == before


def test_numpy_and_torch_integer_fields_are_accepted(store: AnnotationStore) -> None:
    assert (
        store.add_annotations([A(np.int64(1), "x", torch.tensor(2)), A(torch.tensor(3), "x", np.int32(0))])
        == 2
    )
    assert store.label_counts().tolist() == [0, 1, 0, 1, 0, 0]


def test_empty_batch_is_a_no_op(store: AnnotationStore) -> None:
    assert store.add_annotations([]) == 0
    assert store.add_annotations(iter(())) == 0


# ----------------------------------------------------------------------------- rounds and requests
def reqs(round_: int, ids: list[int]) -> list[LabelRequest]:
    return [
        LabelRequest(
            example_id=e,
            score=0.1 * i,
            kind="relabel" if e == 0 else "new",
            round=round_,
            existing_annotators=("alice",) if e == 0 else (),
        )
        for i, e in enumerate(ids)
    ]


def test_round_and_request_lifecycle(store: AnnotationStore) -> None:
    store.add_annotations([A(0, "alice", 1, source="initial")])
    assert store.rounds() == [] and store.last_completed_round() == -1 and store.round_record(0) is None
    store.begin_round(0, seed=11, requests=reqs(0, [4, 0, 2]))
    assert store.round_record(0) == RoundRecord(round=0, seed=11, selected_ids=(4, 0, 2), status="requested")
    assert store.requests(0) == reqs(0, [4, 0, 2])
    assert store.pending_requests() == reqs(0, [4, 0, 2])
    assert store.last_completed_round() == -1

    answered = store.record_response(
        OracleResponse(
            annotations=(A(4, "bob", 2, round=0, source="oracle:sim", request_id="r0:e4"),),
            pending=(reqs(0, [4, 0, 2])[1],),
            exhausted=(reqs(0, [4, 0, 2])[2],),
        )
    )
    assert answered == 1
    assert store.request_status(0) == {"r0:e4": "answered", "r0:e0": "pending", "r0:e2": "exhausted"}
    assert store.pending_requests(0) == [reqs(0, [4, 0, 2])[1]]
    store.complete_round(0)
    store.complete_round(0)  # idempotent
    assert store.round_record(0).status == "completed"
    assert store.last_completed_round() == 0

    store.begin_round(1, seed=12, requests=reqs(1, [5]))
    store.add_annotations([A(0, "carol", 1, round=1, request_id="r0:e0")])  # a late answer
    assert store.pending_requests() == reqs(1, [5])
    assert store.mark_exhausted(["r1:e5"]) == 1
    assert store.mark_exhausted(["r1:e5"]) == 0
    assert store.pending_requests() == []
    assert [r.round for r in store.rounds()] == [0, 1] and store.last_completed_round() == 0
    assert store.requests(7) == []


def test_begin_round_again_is_a_no_op_and_warns_when_different(store: AnnotationStore) -> None:
    store.begin_round(0, seed=1, requests=reqs(0, [1, 2]))
    store.begin_round(0, seed=1, requests=reqs(0, [1, 2]))
    with pytest.warns(UserWarning, match=r"already holds round 0 with seed=1 and 2 selected ids.*ignored"):
        store.begin_round(0, seed=2, requests=reqs(0, [3]))
    assert store.round_record(0).selected_ids == (1, 2) and store.requests(0) == reqs(0, [1, 2])


def test_begin_round_with_no_requests(store: AnnotationStore) -> None:
    store.begin_round(0, seed=3, requests=[])
    assert store.round_record(0) == RoundRecord(0, 3, (), "requested")


def test_requests_keep_infinite_and_missing_scores(store: AnnotationStore) -> None:
    store.begin_round(
        0, seed=3, requests=[LabelRequest(1, math.nan, "new", 0), LabelRequest(2, -math.inf, "new", 0)]
    )
    first, second = store.requests(0)
    assert math.isnan(first.score) and second.score == -math.inf


def test_bad_rounds_and_requests_leave_store_untouched(store: AnnotationStore) -> None:
    store.begin_round(0, seed=1, requests=reqs(0, [1]))
    before = snapshot(store)
    cases = [
        (
            lambda: store.begin_round(1, seed=1, requests=reqs(2, [1])),
            ValueError,
            r"requests\[0\].round is 2, but begin_round was called with round=1",
        ),
        (
            lambda: store.begin_round(1, seed=1, requests=reqs(1, [1, 1])),
            ValueError,
            r"example_id 1 is requested twice",
        ),
        (
            lambda: store.begin_round(1, seed=1, requests=reqs(1, [9])),
            ValueError,
            r"requests\[0\]: example_id 9 is outside 0..5",
        ),
        (
            lambda: store.begin_round(1, seed=1, requests=[LabelRequest(1, 0.0, "more", 1)]),
            ValueError,
            r"kind must be one of \('new', 'relabel'\), got 'more'",
        ),
        (lambda: store.begin_round(-1, seed=1, requests=[]), ValueError, "round must be >= 0, got -1"),
        (lambda: store.begin_round(1, seed=1.5, requests=[]), TypeError, "seed must be an integer, got 1.5"),
        (
            lambda: store.begin_round(1, seed=1, requests=reqs(1, [1])[0]),
            TypeError,
            "requests must be a sequence of LabelRequest",
        ),
        (
            lambda: store.complete_round(3),
            ValueError,
            r"round 3 was never begun; call begin_round first \(stored rounds: \[0\]\)",
        ),
        (
            lambda: store.mark_exhausted([3]),
            TypeError,
            r"requests\[0\] must be a LabelRequest or a request id string, got 3",
        ),
        (lambda: store.record_response([]), TypeError, "response must be an OracleResponse"),
        (
            lambda: store.record_response(
                OracleResponse(annotations=(A(1, "x", 5),), exhausted=(reqs(0, [1])[0],))
            ),
            ValueError,
            "label 5 is outside",
        ),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
        assert snapshot(store) == before


# ----------------------------------------------------------------------------- external ids
def test_external_ids(store: AnnotationStore) -> None:
    store.set_external_id("r0:e1", "ls", "101")
    store.set_external_id("r0:e2", "ls", 102)
    store.set_external_id("r0:e1", "other", "x")
    store.set_external_id("r0:e1", "ls", "101")  # same again: no-op
    assert store.external_ids("ls") == {"r0:e1": "101", "r0:e2": "102"}
    assert store.external_ids("other") == {"r0:e1": "x"} and store.external_ids("none") == {}
    before = snapshot(store)
    with pytest.raises(
        ValueError, match=r"request 'r0:e1' already has ls id '101', got '999'; pass replace=True"
    ):
        store.set_external_id("r0:e1", "ls", "999")
    with pytest.raises(TypeError, match="system must be a non-empty string"):
        store.set_external_id("r0:e1", "", "999")
    assert snapshot(store) == before
    store.set_external_id("r0:e1", "ls", "999", replace=True)
    assert store.external_ids("ls") == {"r0:e1": "999", "r0:e2": "102"}


# ------------------------------------------------------------------------- files: persistence, bad stores
def test_file_store_persists_and_reopens_without_arguments(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "labels.db"
    with AnnotationStore(path, num_examples=6, class_names=CLASSES) as s:
        fill(s)
        s.begin_round(0, seed=5, requests=reqs(0, [1]))
        expected = s.label_matrix()
    with AnnotationStore(path) as s:
        assert s.num_examples == 6 and s.class_names == CLASSES and s.num_classes == 3
        matrix, names = s.label_matrix()
        assert names == expected[1]
        torch.testing.assert_close(matrix, expected[0], equal_nan=True)
        assert s.requests(0) == reqs(0, [1])
        assert s.path == str(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    conn.close()


def test_two_store_objects_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    first = AnnotationStore(path, num_examples=6, class_names=CLASSES)
    second = AnnotationStore(path, num_examples=6, class_names=CLASSES)
    assert second.labeled_ids().tolist() == []  # cached
    first.add_annotations([A(3, "alice", 1)])
    assert second.labeled_ids().tolist() == [3]
    first.close()
    second.close()


def test_reopen_with_other_class_list_or_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    with AnnotationStore(path, num_examples=6, class_names=CLASSES) as s:
        fill(s)
    content = path.read_bytes()
    with pytest.raises(
        ValueError,
        match=r"created with class_names=\['cat', 'dog', 'bird'\], "
        r"but class_names=\['cat', 'bird', 'dog'\] was given",
    ):
        AnnotationStore(path, num_examples=6, class_names=["cat", "bird", "dog"])
    with pytest.raises(ValueError, match=r"created with num_examples=6, but num_examples=7 was given"):
        AnnotationStore(path, num_examples=7, class_names=CLASSES)
    assert path.read_bytes() == content
    with AnnotationStore(path, num_examples=6, class_names=CLASSES) as s:
        assert len(s) == 6


def test_file_that_is_not_a_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("example_id,annotator_id,label\n0,a,1\n")
    with pytest.raises(
        ValueError, match=r"is not a SQLite database \(its first bytes are b'example_id,annot'\)"
    ):
        AnnotationStore(path, num_examples=6, class_names=CLASSES)
    assert path.read_text() == "example_id,annotator_id,label\n0,a,1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_corrupt_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(ValueError, match=r"cannot be read as a SQLite database"):
        AnnotationStore(path, num_examples=6, class_names=CLASSES)
    assert path.read_bytes() == b"SQLite format 3\x00" + b"\xff" * 200


def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    content = path.read_bytes()
    with pytest.raises(
        ValueError, match=r"is a SQLite database but not an AnnotationStore \(its tables are \['users'\]\)"
    ):
        AnnotationStore(path, num_examples=6, class_names=CLASSES)
    assert path.read_bytes() == content


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    AnnotationStore(path, num_examples=6, class_names=CLASSES).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match=r"schema version '999', this library reads version 1"):
        AnnotationStore(path)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"num_examples": 0, "class_names": CLASSES},
            ValueError,
            r"num_examples must be >= 1 .* got 0: an empty dataset",
        ),
        ({"num_examples": -3, "class_names": CLASSES}, ValueError, r"num_examples must be >= 1"),
        (
            {"num_examples": 2.0, "class_names": CLASSES},
            TypeError,
            r"num_examples must be an integer, got 2.0",
        ),
        (
            {"num_examples": 5, "class_names": ["only"]},
            ValueError,
            r"class_names needs at least 2 classes, got \('only',\)",
        ),
        (
            {"num_examples": 5, "class_names": ["a", "b", "a"]},
            ValueError,
            r"class_names must be unique, got duplicates \['a'\]",
        ),
        (
            {"num_examples": 5, "class_names": [0, 1]},
            TypeError,
            r"class_names must be non-empty strings, got \[0, 1\]",
        ),
        (
            {"num_examples": 5, "class_names": "ab"},
            TypeError,
            r"class_names must be a sequence of strings, got 'ab'",
        ),
        (
            {"num_examples": 5},
            ValueError,
            r"does not exist yet: pass num_examples= and class_names= to create it",
        ),
        ({}, ValueError, r"does not exist yet"),
    ],
)
def test_bad_store_arguments_create_nothing(tmp_path: Path, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        AnnotationStore(tmp_path / "labels.db", **kwargs)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(error, match=match):
        AnnotationStore(":memory:", **kwargs)


def test_close_context_manager_and_repr(tmp_path: Path) -> None:
    path = tmp_path / "labels.db"
    s = AnnotationStore(path, num_examples=6, class_names=CLASSES)
    fill(s)
    assert repr(s) == (
        f"AnnotationStore(path={str(path)!r}, annotations=6, annotators=4, labeled=4/6, classes=3)"
    )
    s.close()
    s.close()
    assert repr(s) == f"AnnotationStore(path={str(path)!r}, closed)"
    with pytest.raises(RuntimeError, match="is closed; open a new one"):
        s.add_annotations([A(1, "x", 0)])
    with pytest.raises(RuntimeError, match="is closed"):
        s.label_matrix()
    with AnnotationStore(num_examples=2, class_names=CLASSES) as m:
        assert (
            repr(m) == "AnnotationStore(path=':memory:', annotations=0, annotators=0, labeled=0/2, classes=3)"
        )
    with pytest.raises(RuntimeError, match="is closed"):
        len(m)


def test_pickle_reopens_file_store_and_refuses_memory(tmp_path: Path) -> None:
    s = AnnotationStore(tmp_path / "labels.db", num_examples=6, class_names=CLASSES)
    fill(s)
    clone = pickle.loads(pickle.dumps(s))
    assert clone.labeled_ids().tolist() == [0, 2, 3, 5] and clone.class_names == CLASSES
    with pytest.raises(TypeError, match="in-memory AnnotationStore cannot be pickled"):
        pickle.dumps(AnnotationStore(num_examples=2, class_names=CLASSES))


def test_concurrent_threads_lose_nothing(tmp_path: Path) -> None:
    s = AnnotationStore(tmp_path / "labels.db", num_examples=200, class_names=CLASSES)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for e in range(50):
                s.add_annotations([A(e, f"thread-{t}", (e + t) % 3)])
                s.label_counts()
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(s) == 200 and s.label_counts()[:50].tolist() == [4] * 50


# ----------------------------------------------------------------------------- export / import
@pytest.mark.parametrize("name", ["labels.csv", "labels.jsonl", "labels.csv.gz", "labels.jsonl.gz"])
def test_export_import_round_trip(tmp_path: Path, store: AnnotationStore, name: str) -> None:
    fill(store)
    store.add_annotations([A(2, "bob", 2), A(0, "alice", 1)], correction=True)
    store.add_annotations([A(1, "erin", 1, round=3, source="oracle:sim", request_id="r3:e1")])
    path = tmp_path / name
    assert store.export_annotations(path) == 9
    other = AnnotationStore(num_examples=6, class_names=CLASSES)
    assert other.import_annotations(path) == 9
    assert other.import_annotations(path) == 0  # idempotent
    for ids in (None, [5, 4, 3, 2, 1, 0]):
        m1, n1 = store.label_matrix(ids)
        m2, n2 = other.label_matrix(ids)
        assert n1 == n2
        torch.testing.assert_close(m1, m2, equal_nan=True)
    assert list(other.iter_annotations()) == list(store.iter_annotations())
    assert [r["is_correction"] for r in other.iter_annotations()].count(1) == 2


def test_export_columns(tmp_path: Path, store: AnnotationStore) -> None:
    store.add_annotations([A(2, "bob", 1, round=0, source="oracle:sim", request_id="r0:e2")])
    store.export_annotations(tmp_path / "a.csv")
    header, row = (tmp_path / "a.csv").read_text().splitlines()
    assert (
        header == "example_id,annotator_id,label,class_name,round,source,request_id,created_at,is_correction"
    )
    assert row.startswith("2,bob,1,dog,0,oracle:sim,r0:e2,") and row.endswith(",0")
    store.export_annotations(tmp_path / "a.txt", format="jsonl")
    record = json.loads((tmp_path / "a.txt").read_text())
    assert record["class_name"] == "dog" and record["round"] == 0
    with pytest.raises(ValueError, match=r"cannot tell the format of .*a.txt.* use .csv, .jsonl"):
        store.export_annotations(tmp_path / "a.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.txt"]  # no temp files left


def test_import_crowd_dataset_long_format_with_column_mapping(tmp_path: Path) -> None:
    # the columns of the Snow et al. / truth-inference files: item_index, orig_id, annotator_id, label, ...
    path = tmp_path / "rte_annotations.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("item_index,orig_id,annotator_id,label,true_label\n29,266,0,1,1\n29,266,1,0,1\n3,12,1,1,0\n")
    s = AnnotationStore(num_examples=30, class_names=["0", "1"])
    assert s.import_annotations(path, example_col="item_index") == 3
    matrix, names = s.label_matrix()
    assert names == ["0", "1"]
    assert_same(matrix, [[NAN, 1], [1, 0]])
    assert {r["source"] for r in s.iter_annotations()} == {"import"}
    assert s.import_annotations(path, example_col="item_index") == 0


def test_import_class_names_and_jsonl_values(tmp_path: Path, store: AnnotationStore) -> None:
    path = tmp_path / "named.jsonl"
    rows = [
        {"example_id": 0, "annotator_id": "ann", "label": "bird"},
        {"example_id": 1, "annotator_id": 12, "label": 1},
        {"example_id": 2, "annotator_id": "ann", "label": "0", "source": "initial"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert store.import_annotations(path, source="legacy") == 3
    assert [(r["label"], r["annotator_id"], r["source"]) for r in store.iter_annotations()] == [
        (2, "ann", "legacy"),
        (1, "12", "legacy"),
        (0, "ann", "initial"),
    ]


def test_import_ambiguous_numeric_class_names(tmp_path: Path) -> None:
    s = AnnotationStore(num_examples=3, class_names=["1", "2", "3"])
    path = tmp_path / "x.csv"
    path.write_text("example_id,annotator_id,label\n0,a,1\n")
    with pytest.raises(
        ValueError,
        match=r"x.csv:2: label '1' is ambiguous: it is class name '1' \(index 0\) and also class index 1",
    ):
        s.import_annotations(path)
    assert s.import_annotations(path, label_format="name") == 1
    assert s.label_matrix()[0].tolist() == [[0.0]]
    path.write_text("example_id,annotator_id,label\n1,a,2\n")
    assert s.import_annotations(path, label_format="index") == 1
    assert s.label_matrix([1])[0].tolist() == [[2.0]]


def test_bad_import_files_leave_store_untouched(tmp_path: Path, store: AnnotationStore) -> None:
    fill(store)
    before = snapshot(store)
    good = "0,zed,1\n"
    cases = [
        (
            "example_id,annotator_id,label\n" + good + "9,zed,1\n",
            {},
            ValueError,
            r"bad.csv:3: example_id 9 is outside 0..5",
        ),
        (
            "example_id,annotator_id,label\n" + good + "1,zed,fish\n",
            {},
            ValueError,
            r"bad.csv:3: label 'fish' is not one of the class names \['cat', 'dog', 'bird'\]",
        ),
        (
            "example_id,annotator_id,label\n" + good + "1,zed,7\n",
            {},
            ValueError,
            r"bad.csv:3: label 7 is outside the class set",
        ),
        (
            "example_id,annotator_id,label\n" + good + "x,zed,1\n",
            {},
            ValueError,
            r"bad.csv:3: example id 'x' is not an integer",
        ),
        (
            "example_id,annotator_id,label\n" + good + "1,,1\n",
            {},
            ValueError,
            r"bad.csv:3: no value for column\(s\) \['annotator_id'\]",
        ),
        (
            "item,annotator_id,label\n" + good,
            {},
            ValueError,
            r"no value for column\(s\) \['example_id'\] "
            r"\(columns present: \['annotator_id', 'item', 'label'\]\); "
            r"name the right ones with example_col=",
        ),
        (
            "example_id,annotator_id,label\n" + good + "0,alice,2\n",
            {},
            ValueError,
            r"bad.csv:3: annotator 'alice' already labeled example 0 as 0",
        ),
        (
            "example_id,annotator_id,label,round\n" + "0,zed,1,one\n",
            {},
            ValueError,
            r"bad.csv:2: round 'one' is not an integer",
        ),
        (
            "example_id,annotator_id,label\n" + good,
            {"label_format": "words"},
            ValueError,
            r"label_format must be 'auto', 'index' or 'name', got 'words'",
        ),
        (
            "example_id,annotator_id,label\n" + "0,zed,1\n",
            {"label_format": "name"},
            ValueError,
            r"label '1' is not one of the class names",
        ),
    ]
    path = tmp_path / "bad.csv"
    for text, kwargs, error, match in cases:
        path.write_text(text)
        with pytest.raises(error, match=match):
            store.import_annotations(path, **kwargs)
        assert snapshot(store) == before
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"example_id": 0, "annotator_id": "zed", "label": 1}\n{"example_id": 1,\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        store.import_annotations(jsonl)
    jsonl.write_text('[0, "zed", 1]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: expected a JSON object per line"):
        store.import_annotations(jsonl)
    with pytest.raises(FileNotFoundError, match=r"path='.*missing.csv' is not a file"):
        store.import_annotations(tmp_path / "missing.csv")
    assert snapshot(store) == before


def test_import_with_correction_flag(tmp_path: Path, store: AnnotationStore) -> None:
    store.add_annotations([A(0, "alice", 0)])
    path = tmp_path / "fix.csv"
    path.write_text("example_id,annotator_id,label\n0,alice,2\n")
    assert store.import_annotations(path, correction=True) == 1
    assert store.import_annotations(path, correction=True) == 0
    assert store.label_matrix()[0].tolist() == [[2.0]]


# ----------------------------------------------------------------------------- reference model
@st.composite
def operations(draw):
    n = draw(st.integers(1, 6))
    ops = draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1), st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2), st.booleans()
            ),
            max_size=25,
        )
    )
    return n, ops


@settings(max_examples=60, deadline=None)
@given(operations())
def test_label_matrix_matches_a_reference_dictionary(case) -> None:
    n, ops = case
    store = AnnotationStore(num_examples=n, class_names=CLASSES)
    reference: dict[tuple[int, str], int] = {}
    history: dict[tuple[int, str], set[int]] = {}
    first_seen: list[str] = []
    for e, a, label, correction in ops:
        known = (e, a) in reference
        if known and not correction:
            if label in history[(e, a)]:  # repeat of a stored label (same empty request): no-op
                assert store.add_annotations([A(e, a, label)]) == 0
            else:
                with pytest.raises(ValueError, match="already labeled"):
                    store.add_annotations([A(e, a, label)])
            continue
        added = store.add_annotations([A(e, a, label)], correction=correction)
        assert added == int(reference.get((e, a)) != label)
        reference[(e, a)] = label
        history.setdefault((e, a), set()).add(label)
        if a not in first_seen:
            first_seen.append(a)
    matrix, names = store.label_matrix(list(range(n)))
    assert names == first_seen
    expected = torch.full((n, len(names)), NAN, dtype=torch.float64)
    for (e, a), label in reference.items():
        expected[e, names.index(a)] = label
    torch.testing.assert_close(matrix, expected, equal_nan=True)
    counts = torch.zeros(n, dtype=torch.int64)
    for e, _ in reference:
        counts[e] += 1
    assert torch.equal(store.label_counts(), counts)


def test_export_import_between_stores_checks_the_class_list(tmp_path: Path) -> None:
    numeric = AnnotationStore(num_examples=3, class_names=["1", "2", "3"])
    numeric.add_annotations([A(0, "a", 0), A(1, "a", 2)])
    path = tmp_path / "numeric.csv"
    numeric.export_annotations(path)
    again = AnnotationStore(num_examples=3, class_names=["1", "2", "3"])
    assert again.import_annotations(path) == 2  # `label` is the index: no ambiguity with the names
    assert again.label_matrix()[0].tolist() == [[0.0], [2.0]]
    reordered = AnnotationStore(num_examples=3, class_names=["3", "2", "1"])
    with pytest.raises(
        ValueError,
        match=r"numeric.csv:2: the row says label '0' is class '1', but class 0 of this store is '3' "
        r"\(class_names=\['3', '2', '1'\]\); the file comes from a store with another class list",
    ):
        reordered.import_annotations(path)
    assert len(reordered) == 0
    assert reordered.import_annotations(path, label_format="name", label_col="class_name") == 2
    assert reordered.label_matrix()[0].tolist() == [[2.0], [0.0]]


def test_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"is a directory; give a file path such as .*/labels.db"):
        AnnotationStore(tmp_path, num_examples=3, class_names=CLASSES)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_gets_its_own_connection(tmp_path: Path) -> None:
    s = AnnotationStore(tmp_path / "labels.db", num_examples=6, class_names=CLASSES)
    fill(s)
    pid = os.fork()
    if pid == 0:  # child: write through the inherited store object, then leave without cleanup
        code = 1
        try:
            s.add_annotations([A(1, "child", 2)])
            s.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s.label_matrix([1])[1] == ["child"]  # the parent's connection still works
    s.add_annotations([A(4, "parent", 0)])
    assert len(s) == 8
    memory = AnnotationStore(num_examples=2, class_names=CLASSES)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            memory.add_annotations([A(1, "child", 2)])
        except RuntimeError as err:
            code = 0 if "cannot be used in a forked child process" in str(err) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_request_is_answered_even_by_a_label_already_stored(store: AnnotationStore) -> None:
    store.add_annotations([A(1, "alice", 2)])
    store.begin_round(0, seed=0, requests=reqs(0, [1]))
    # alice confirms her own label for the re-label request: nothing new to store, request answered
    assert store.add_annotations([A(1, "alice", 2, round=0, request_id="r0:e1")], correction=True) == 0
    assert store.request_status(0) == {"r0:e1": "answered"}
    assert len(store) == 1
