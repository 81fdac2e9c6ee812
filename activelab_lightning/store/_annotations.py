"""Writing annotations: validating them and appending them to the log, all or nothing.

:meth:`~AnnotationsMixin.add_annotations` and :meth:`~AnnotationsMixin.record_response` validate
every annotation before anything is written, then decide per row (in one ``BEGIN IMMEDIATE``
transaction) whether it is new, an exact repeat (skipped), an explicit correction, or a conflicting
second label (an error that writes nothing). Imports (:mod:`activelab_lightning.store._io`) go
through the same :meth:`~AnnotationsMixin._insert_rows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from activelab_lightning.records import Annotation, OracleResponse
from activelab_lightning.store._db import StoreBase, int_arg, utc_now
from activelab_lightning.store._rounds import request_ids, set_exhausted

__all__ = ["AnnotationsMixin"]

# Keep IN (...) lists well below SQLite's host-parameter limit (999 on old builds).
_CHUNK = 900


class _Row(NamedTuple):
    """One validated annotation about to be written (internal; a tuple: cheap for 1e5-row imports)."""

    example_id: int
    annotator_id: str
    label: int
    round: int | None
    source: str
    request_id: str  # '' when the annotation answers no request
    created_at: str | None  # None = now; given by imports to keep re-imports idempotent
    is_correction: bool


class _Stored(NamedTuple):
    """What the conflict check needs to know about one stored annotation (internal)."""

    label: int
    request_id: str
    created_at: str
    is_correction: bool


class AnnotationsMixin(StoreBase):
    """``add_annotations`` / ``record_response`` and the validation and insert they share."""

    def _row_from_annotation(
        self, ann: object, i: int, correction: bool, prefix: str = "annotations"
    ) -> _Row:
        # Fast path for the common case (plain ints and strings in range): no message formatting.
        if type(ann) is Annotation:
            e, a, label, round_, source, req = (
                ann.example_id,
                ann.annotator_id,
                ann.label,
                ann.round,
                ann.source,
                ann.request_id,
            )
            if (
                type(e) is int
                and 0 <= e < self.num_examples
                and type(label) is int
                and 0 <= label < self.num_classes
                and type(a) is str
                and a
                and type(source) is str
                and source
                and (round_ is None or type(round_) is int)
                and (req is None or type(req) is str)
            ):
                return _Row(e, a, label, round_, source, req or "", None, correction)
        where = f"{prefix}[{i}]"
        if not isinstance(ann, Annotation):
            raise TypeError(f"{where} must be an Annotation, got {type(ann).__name__}: {ann!r}.")
        round_ = None if ann.round is None else int_arg(ann.round, f"{where} round")
        return _Row(
            example_id=self._check_example_id(ann.example_id, where),
            annotator_id=self._check_text(ann.annotator_id, "annotator_id", where),
            label=self._check_label(ann.label, where),
            round=round_,
            source=self._check_text(ann.source, "source", where),
            request_id=""
            if ann.request_id is None
            else self._check_text(ann.request_id, "request_id", where, allow_empty=True),
            created_at=None,
            is_correction=correction,
        )

    # ------------------------------------------------------------------ annotations
    def add_annotations(self, annotations: Iterable[Annotation], *, correction: bool = False) -> int:
        """Append annotations in one all-or-nothing transaction.

        Everything is validated before anything is written, so a bad batch leaves the store as it
        was. Requests answered by an annotation (same ``request_id``) are marked answered in the
        same transaction.

        Args:
            annotations: The annotations to store.
            correction: If True, an annotation by an annotator who already labeled the example is
                stored as a correction (it replaces their label in :meth:`label_matrix`; the log
                keeps both). If False such an annotation is an error, unless it is an exact repeat.

        Returns:
            The number of annotations newly stored (exact repeats are no-ops and not counted).

        Raises:
            TypeError: An item is not an :class:`Annotation`, or a field has the wrong type.
            ValueError: An example id outside ``0..N-1``, a label outside ``0..K-1``, or a second,
                different label by the same annotator for the same example without ``correction``.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import Annotation
            >>> store = AnnotationStore(num_examples=3, class_names=["no", "yes"])
            >>> store.add_annotations([Annotation(1, "ann-1", 1, round=0, request_id="r0:e1")])
            1
            >>> store.add_annotations([Annotation(1, "ann-1", 1, round=0, request_id="r0:e1")])
            0
            >>> store.add_annotations([Annotation(1, "ann-1", 0)], correction=True)
            1
        """
        correction = bool(correction)
        rows = [self._row_from_annotation(a, i, correction) for i, a in enumerate(annotations)]
        with self._transaction() as conn:
            return self._insert_rows(conn, rows, describe=lambda i: f"annotations[{i}]")

    def _insert_rows(
        self, conn: sqlite3.Connection, rows: Sequence[_Row], describe: Callable[[int], str]
    ) -> int:
        """Decide, for each row in order, skip / insert / conflict, then write (inside a transaction)."""
        if not rows:
            return 0
        stored: dict[tuple[int, str], list[_Stored]] = {}
        examples = sorted({r.example_id for r in rows})
        for start in range(0, len(examples), _CHUNK):
            chunk = examples[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for e, a, label, req, created, corr in conn.execute(
                "SELECT example_id, annotator_id, label, request_id, created_at, is_correction "
                f"FROM annotations WHERE example_id IN ({marks}) ORDER BY id",
                chunk,
            ):
                stored.setdefault((e, a), []).append(_Stored(label, req, created, bool(corr)))

        now = utc_now()
        to_write: list[tuple[int, str, int, int | None, str, str, str, int]] = []
        for i, row in enumerate(rows):
            history = stored.get((row.example_id, row.annotator_id))
            created = row.created_at or now
            if not history:
                is_correction = False
            elif row.is_correction:
                repeat = row.created_at is not None and any(
                    s.label == row.label and s.request_id == row.request_id and s.created_at == row.created_at
                    for s in history
                )
                if repeat or history[-1].label == row.label:
                    continue
                is_correction = True
            else:
                if any(s.label == row.label and s.request_id == row.request_id for s in history):
                    continue  # exact repeat of a stored label (the original or a correction)
                original = next(s for s in history if not s.is_correction)
                raise ValueError(
                    f"{describe(i)}: annotator {row.annotator_id!r} already labeled example "
                    f"{row.example_id} as {original.label} ({self.class_names[original.label]!r}, "
                    f"request_id={original.request_id!r}); a second label {row.label} "
                    f"(request_id={row.request_id!r}) by the same annotator is only stored as a "
                    "correction: pass correction=True. Nothing was written."
                )
            stored.setdefault((row.example_id, row.annotator_id), []).append(
                _Stored(row.label, row.request_id, created, is_correction)
            )
            to_write.append(
                (
                    row.example_id,
                    row.annotator_id,
                    row.label,
                    row.round,
                    row.source,
                    row.request_id,
                    created,
                    int(is_correction),
                )
            )
        # A request is answered by any row naming it, also one equal to a label already stored.
        answered = sorted({r.request_id for r in rows if r.request_id})
        conn.executemany(
            "UPDATE requests SET status = 'answered', updated_at = ? WHERE request_id = ? "
            "AND status != 'answered'",
            [(now, req) for req in answered],
        )
        if not to_write:
            return 0
        conn.executemany(
            "INSERT OR IGNORE INTO annotators (annotator_id) VALUES (?)",
            [(a,) for a in dict.fromkeys(r[1] for r in to_write)],
        )
        conn.executemany(
            "INSERT INTO annotations (example_id, annotator_id, label, round, source, request_id, "
            "created_at, is_correction) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            to_write,
        )
        return len(to_write)

    def record_response(self, response: OracleResponse, *, correction: bool = False) -> int:
        """Store an oracle's answers and mark its exhausted requests, in one transaction.

        Args:
            response: What :meth:`Oracle.request` returned. Its ``pending`` requests stay pending.
            correction: As in :meth:`add_annotations`.

        Returns:
            The number of annotations newly stored.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import LabelRequest, OracleResponse
            >>> store = AnnotationStore(num_examples=3, class_names=["no", "yes"])
            >>> req = LabelRequest(example_id=2, score=0.1, kind="new", round=0)
            >>> store.begin_round(0, seed=0, requests=[req])
            >>> store.record_response(OracleResponse(annotations=(), exhausted=(req,)))
            0
            >>> store.request_status(0)
            {'r0:e2': 'exhausted'}
        """
        if not isinstance(response, OracleResponse):
            raise TypeError(
                f"response must be an OracleResponse, got {type(response).__name__}: {response!r}."
            )
        rows = [
            self._row_from_annotation(a, i, bool(correction), "response.annotations")
            for i, a in enumerate(response.annotations)
        ]
        exhausted = request_ids(response.exhausted, "response.exhausted")
        with self._transaction() as conn:
            added = self._insert_rows(conn, rows, describe=lambda i: f"response.annotations[{i}]")
            set_exhausted(conn, exhausted)
            return added
