"""Rounds, label requests and external ids: what was asked, and what became of each request.

A round is begun once with its requests (all pending) and completed once; a request becomes
answered when an annotation names it (:mod:`activelab_lightning.store._annotations`) or exhausted
when no annotator is left. ``external_ids`` remembers the ids an outside system (e.g. Label
Studio) gave to requests, so a restarted run finds its tasks again.
"""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from activelab_lightning.records import LabelRequest, RoundRecord
from activelab_lightning.store._db import StoreBase, int_arg, utc_now

__all__ = ["RoundsMixin", "request_ids", "set_exhausted"]

_REQUEST_KINDS = ("new", "relabel")


def request_ids(requests: Iterable[LabelRequest | str], name: str) -> list[str]:
    """The request ids of ``requests`` (requests or id strings); ``name`` is used in errors."""
    ids: list[str] = []
    for i, req in enumerate(requests):
        if isinstance(req, LabelRequest):
            ids.append(req.request_id)
        elif isinstance(req, str) and req:
            ids.append(req)
        else:
            raise TypeError(f"{name}[{i}] must be a LabelRequest or a request id string, got {req!r}.")
    return ids


def set_exhausted(conn: sqlite3.Connection, request_ids: Sequence[str]) -> int:
    """Mark pending requests exhausted (inside a transaction); returns how many changed."""
    now = utc_now()
    before = conn.total_changes
    conn.executemany(
        "UPDATE requests SET status = 'exhausted', updated_at = ? "
        "WHERE request_id = ? AND status = 'pending'",
        [(now, r) for r in request_ids],
    )
    return conn.total_changes - before


class RoundsMixin(StoreBase):
    """Rounds (begin / complete / records), requests and their status, external ids."""

    def begin_round(self, round: int, seed: int, requests: Sequence[LabelRequest]) -> None:
        """Record a round and its label requests (all pending) in one transaction.

        Re-calling it for a round that is already stored is a no-op (a resumed run re-enters the
        round it crashed in); if the seed or the selected ids differ from the stored ones a
        ``UserWarning`` says so and the stored round is kept.

        Args:
            round: Round index ``>= 0``.
            seed: The seed the round's selection used.
            requests: The round's requests, in selection order; each must have ``.round == round``
                and a distinct example id in ``0..N-1``.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import LabelRequest
            >>> store = AnnotationStore(num_examples=5, class_names=["a", "b"])
            >>> store.begin_round(0, seed=7, requests=[LabelRequest(3, 0.2, "new", 0)])
            >>> store.round_record(0)
            RoundRecord(round=0, seed=7, selected_ids=(3,), status='requested')
        """
        round_ = int_arg(round, "round")
        if round_ < 0:
            raise ValueError(f"round must be >= 0, got {round_}.")
        seed_ = int_arg(seed, "seed")
        if isinstance(requests, LabelRequest) or not isinstance(requests, Iterable):
            raise TypeError(f"requests must be a sequence of LabelRequest, got {requests!r}.")
        rows = self._request_rows(round_, list(requests), "begin_round")
        selected = [r[3] for r in rows]
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT seed, selected_ids FROM rounds WHERE round = ?", (round_,)
            ).fetchone()
            if found is not None:
                if found[0] != seed_ or json.loads(found[1]) != selected:
                    warnings.warn(
                        f"begin_round({round_}): the store already holds round {round_} with seed={found[0]} "
                        f"and {len(json.loads(found[1]))} selected ids; the new call (seed={seed_}, "
                        f"{len(selected)} ids) differs and is ignored. Resume from store.requests({round_}).",
                        UserWarning,
                        stacklevel=2,
                    )
                return
            conn.execute(
                "INSERT INTO rounds (round, seed, selected_ids, status, created_at) "
                "VALUES (?, ?, ?, 'requested', ?)",
                (round_, seed_, json.dumps(selected), rows[0][7] if rows else utc_now()),
            )
            conn.executemany(
                "INSERT INTO requests (request_id, round, position, example_id, score, kind, "
                "existing_annotators, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _request_rows(
        self, round_: int, requests: list[LabelRequest], caller: str, start: int = 0
    ) -> list[tuple[str, int, int, int, float, str, str, str]]:
        """Validated ``requests`` table rows (positions from ``start``); one request per example."""
        rows: list[tuple[str, int, int, int, float, str, str, str]] = []
        seen: set[int] = set()
        now = utc_now()
        for i, req in enumerate(requests):
            where = f"requests[{i}]"
            if not isinstance(req, LabelRequest):
                raise TypeError(f"{where} must be a LabelRequest, got {type(req).__name__}: {req!r}.")
            if int_arg(req.round, f"{where} round") != round_:
                raise ValueError(
                    f"{where}.round is {req.round}, but {caller} was called with round={round_}."
                )
            e = self._check_example_id(req.example_id, where)
            if e in seen:
                raise ValueError(
                    f"{where}: example_id {e} is requested twice in round {round_}; one request per example."
                )
            seen.add(e)
            if req.kind not in _REQUEST_KINDS:
                raise ValueError(f"{where}.kind must be one of {_REQUEST_KINDS}, got {req.kind!r}.")
            score = float(req.score)  # NaN (no score) is stored as NULL
            existing = tuple(req.existing_annotators)
            for a in existing:
                self._check_text(a, "existing_annotators item", where)
            rows.append(
                (req.request_id, round_, start + i, e, score, req.kind, json.dumps(list(existing)), now)
            )
        return rows

    def add_requests(self, round: int, requests: Sequence[LabelRequest]) -> int:
        """Add requests to a begun, not yet completed round (replacements for exhausted ones).

        The requests are appended after the round's existing ones, and their example ids to the
        round's selected ids, in one transaction. Requests already in the store (same request id,
        e.g. a resumed run adding the same replacements) are skipped.

        Args:
            round: The in-flight round.
            requests: New requests of that round, for examples it has not requested yet.

        Returns:
            The number of requests added.

        Raises:
            ValueError: The round was never begun or is completed.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> from activelab_lightning.records import LabelRequest
            >>> store = AnnotationStore(num_examples=5, class_names=["a", "b"])
            >>> store.begin_round(0, seed=7, requests=[LabelRequest(3, 0.2, "new", 0)])
            >>> store.add_requests(0, [LabelRequest(1, 0.3, "new", 0)])
            1
            >>> store.round_record(0).selected_ids
            (3, 1)
        """
        round_ = int_arg(round, "round")
        if isinstance(requests, LabelRequest) or not isinstance(requests, Iterable):
            raise TypeError(f"requests must be a sequence of LabelRequest, got {requests!r}.")
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT selected_ids, status FROM rounds WHERE round = ?", (round_,)
            ).fetchone()
            if found is None or found[1] == "completed":
                state = "was never begun" if found is None else "is completed"
                raise ValueError(
                    f"add_requests({round_}, ...): round {round_} {state}; requests can only be added to the "
                    f"round in flight (begin_round first)."
                )
            stored = dict(
                conn.execute(
                    "SELECT request_id, example_id FROM requests WHERE round = ?", (round_,)
                ).fetchall()
            )
            # a request id names (round, example): one already stored is this very request again
            fresh = [q for q in requests if not (isinstance(q, LabelRequest) and q.request_id in stored)]
            rows = self._request_rows(round_, fresh, "add_requests", start=len(stored))
            if not rows:
                return 0
            selected = json.loads(found[0]) + [r[3] for r in rows]
            conn.execute("UPDATE rounds SET selected_ids = ? WHERE round = ?", (json.dumps(selected), round_))
            conn.executemany(
                "INSERT INTO requests (request_id, round, position, example_id, score, kind, "
                "existing_annotators, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def exhausted_example_ids(self) -> list[int]:
        """Sorted ids of the examples an oracle reported exhausted (no annotator left) in any round.

        Selection skips them, so a round does not spend its requests on examples that cannot get
        another label.
        """
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT DISTINCT example_id FROM requests WHERE status = 'exhausted' ORDER BY example_id"
            ).fetchall()
        return [int(r[0]) for r in rows]

    def complete_round(self, round: int) -> None:
        """Mark a round completed (idempotent). Its unanswered requests stay pending.

        Raises:
            ValueError: The round was never begun.
        """
        round_ = int_arg(round, "round")
        with self._transaction() as conn:
            found = conn.execute("SELECT status FROM rounds WHERE round = ?", (round_,)).fetchone()
            if found is None:
                raise ValueError(
                    f"complete_round({round_}): round {round_} was never begun; call begin_round first "
                    f"(stored rounds: {[r.round for r in self.rounds()]})."
                )
            if found[0] != "completed":
                conn.execute(
                    "UPDATE rounds SET status = 'completed', completed_at = ? WHERE round = ?",
                    (utc_now(), round_),
                )

    @staticmethod
    def _round_record(row: tuple[Any, ...]) -> RoundRecord:
        return RoundRecord(round=row[0], seed=row[1], selected_ids=tuple(json.loads(row[2])), status=row[3])

    def round_record(self, round: int) -> RoundRecord | None:
        """The record of one round, or None if it was never begun."""
        round_ = int_arg(round, "round")
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT round, seed, selected_ids, status FROM rounds WHERE round = ?", (round_,))
                .fetchone()
            )
        return None if row is None else self._round_record(row)

    def rounds(self) -> list[RoundRecord]:
        """All round records, by round index."""
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT round, seed, selected_ids, status FROM rounds ORDER BY round")
                .fetchall()
            )
        return [self._round_record(r) for r in rows]

    def last_completed_round(self) -> int:
        """The highest completed round index, ``-1`` if none."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT MAX(round) FROM rounds WHERE status = 'completed'")
                .fetchone()
            )
        return -1 if row[0] is None else int(row[0])

    def _select_requests(self, where: str, params: Sequence[int]) -> list[LabelRequest]:
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT example_id, score, kind, round, existing_annotators FROM requests "
                    f"WHERE {where} ORDER BY round, position",
                    params,
                )
                .fetchall()
            )
        return [
            LabelRequest(
                example_id=e,
                score=math.nan if s is None else s,
                kind=k,
                round=r,
                existing_annotators=tuple(json.loads(x)),
            )
            for e, s, k, r, x in rows
        ]

    def requests(self, round: int) -> list[LabelRequest]:
        """The requests of one round, in selection order (empty if the round is unknown)."""
        return self._select_requests("round = ?", (int_arg(round, "round"),))

    def pending_requests(self, round: int | None = None) -> list[LabelRequest]:
        """Requests not answered and not exhausted yet, of one round or of all rounds."""
        if round is None:
            return self._select_requests("status = 'pending'", ())
        return self._select_requests("status = 'pending' AND round = ?", (int_arg(round, "round"),))

    def request_status(self, round: int | None = None) -> dict[str, str]:
        """``request_id -> "pending" | "answered" | "exhausted"`` for one round or all rounds."""
        sql = "SELECT request_id, status FROM requests"
        params: tuple[int, ...] = ()
        if round is not None:
            sql += " WHERE round = ?"
            params = (int_arg(round, "round"),)
        with self._lock:
            return dict(self._connection().execute(sql + " ORDER BY round, position", params).fetchall())

    def mark_exhausted(self, requests: Iterable[LabelRequest | str]) -> int:
        """Mark pending requests as exhausted (no annotator left). Returns how many changed."""
        ids = request_ids(requests, "requests")
        with self._transaction() as conn:
            return set_exhausted(conn, ids)

    # ------------------------------------------------------------------ external ids
    def set_external_id(
        self, request_id: str, system: str, external_id: str, *, replace: bool = False
    ) -> None:
        """Remember the id an outside system (e.g. ``"label-studio"``) gave to a request.

        Setting the same id again is a no-op; a different one is an error unless ``replace=True``.

        Example::

            >>> from activelab_lightning.store import AnnotationStore
            >>> store = AnnotationStore(num_examples=3, class_names=["a", "b"])
            >>> store.set_external_id("r0:e1", "label-studio", "4711")
            >>> store.external_ids("label-studio")
            {'r0:e1': '4711'}
        """
        self._check_text(request_id, "request_id", "set_external_id")
        self._check_text(system, "system", "set_external_id")
        if not isinstance(external_id, str):
            external_id = str(int_arg(external_id, "external_id"))
        self._check_text(external_id, "external_id", "set_external_id")
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT external_id FROM external_ids WHERE system = ? AND request_id = ?",
                (system, request_id),
            ).fetchone()
            if found is not None and found[0] == external_id:
                return
            if found is not None and not replace:
                raise ValueError(
                    f"request {request_id!r} already has {system} id {found[0]!r}, got {external_id!r}; "
                    "pass replace=True to overwrite it."
                )
            conn.execute(
                "INSERT INTO external_ids (request_id, system, external_id, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (system, request_id) DO UPDATE SET external_id = excluded.external_id, "
                "created_at = excluded.created_at",
                (request_id, system, external_id, utc_now()),
            )

    def external_ids(self, system: str) -> dict[str, str]:
        """``request_id -> external id`` for one outside system."""
        with self._lock:
            return dict(
                self._connection()
                .execute(
                    "SELECT request_id, external_id FROM external_ids WHERE system = ? ORDER BY rowid",
                    (system,),
                )
                .fetchall()
            )
