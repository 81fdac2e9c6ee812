"""Human annotators through plain files: requests out, answers in.

Each round, :class:`FileOracle` writes the round's label requests to
``<directory>/requests/round_NNN.jsonl`` (one Label Studio task per line, so the same file can be
imported into Label Studio with the labeling config in ``requests/label_studio_config.xml``) and
``round_NNN.csv`` (for spreadsheets). Humans write their answers
to an answers file (CSV or JSONL with the columns ``example_id, annotator_id, label``; labels by
class name or index; read by the rules of :mod:`activelab_lightning.tables`). Every call imports
what is there:

* answers to pending requests become :class:`~activelab_lightning.records.Annotation`\\ s;
* requests without an answer stay pending, and the loop stops with
  :class:`~activelab_lightning.errors.WaitingForLabels` ("waiting for N labels", exit code 75);
  re-running the same command imports the new answers and goes on;
* bad lines (unknown example id, example not requested, label not in the class list, missing
  annotator, ...) are reported with file name and line number in :attr:`FileOracle.problems`, in
  the log and in ``requests/round_NNN.errors.txt``; the good lines are still imported;
* lines that are already stored are skipped, so importing the same file twice changes nothing,
  and a line never changes a stored label.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from activelab_lightning._distributed import is_rank_zero
from activelab_lightning._files import atomic_write
from activelab_lightning.oracles._tasks import (
    AnswerProblem,
    display_fields,
    example_value,
    label_config,
    stored_labels,
    task_for_request,
)
from activelab_lightning.oracles.base import BaseOracle, class_name_tuple
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse
from activelab_lightning.tables import ClassNames, parse_int, parse_label, read_table

__all__ = ["AnswerProblem", "FileOracle"]

log = logging.getLogger(__name__)

#: Columns every answers file must have.
ANSWER_COLUMNS = ("example_id", "annotator_id", "label")
_ANSWER_SUFFIXES = (".csv", ".jsonl", ".ndjson")
_REQUEST_CSV_COLUMNS = (
    "request_id",
    "example_id",
    "round",
    "kind",
    "score",
    "existing_annotators",
    "text",
    "image",
    "path",
    "classes",
)


# --------------------------------------------------------------------------------- oracle


class FileOracle(BaseOracle):
    """Ask humans through files: one requests file per round, answers read from a CSV / JSONL file.

    Args:
        directory: Working folder; request files go to ``directory/requests``.
        class_names: The ``K`` class names (answers may give a name or an index).
        answers: The answers file(s), relative to ``directory`` unless absolute; ``.csv`` (header
            ``example_id,annotator_id,label``) or ``.jsonl`` (one object per line with those keys).
            Files that do not exist yet simply hold no answers.
        show_fn: ``show_fn(example_id) -> value`` giving what a human should see (see
            :func:`~activelab_lightning.oracles._tasks.display_fields`); default: the bound
            dataset's input ``dataset[example_id][0]``, else nothing but the ids.
        store: The :class:`~activelab_lightning.store.AnnotationStore`; with it, lines that are
            already stored are recognised on every import (idempotence across restarts). Can be
            given later through :meth:`bind`.
        num_examples: Size of the example id space, if no store is bound.

    Attributes:
        problems: The bad lines of the latest import, as :class:`AnswerProblem` tuples.

    Example::

        >>> import tempfile
        >>> from pathlib import Path
        >>> d = Path(tempfile.mkdtemp())
        >>> oracle = FileOracle(d, ["cat", "dog"])
        >>> req = LabelRequest(example_id=4, score=0.1, kind="new", round=0)
        >>> len(oracle.request([req]).pending)          # nobody answered yet
        1
        >>> _ = (d / "answers.csv").write_text("example_id,annotator_id,label\\n4,alice,dog\\n")
        >>> oracle.request([req]).annotations[0].label
        1
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        class_names: Sequence[str],
        *,
        answers: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = "answers.csv",
        show_fn: Callable[[int], Any] | None = None,
        store: Any = None,
        num_examples: int | None = None,
    ) -> None:
        names = class_name_tuple(class_names)
        super().__init__("file", num_examples=num_examples, num_classes=len(names))
        self.directory = Path(directory)
        self.class_names = names
        self._classes = ClassNames(names)
        paths = [answers] if isinstance(answers, (str, os.PathLike)) else list(answers)
        if not paths:
            raise ValueError("answers must name at least one file, got an empty list")
        self.answer_paths: tuple[Path, ...] = tuple(
            p if p.is_absolute() else self.directory / p for p in (Path(a) for a in paths)
        )
        for p in self.answer_paths:
            if p.suffix.lower() not in _ANSWER_SUFFIXES:
                raise ValueError(
                    f"answers file {str(p)!r} has suffix {p.suffix!r}; use one of {list(_ANSWER_SUFFIXES)} "
                    "(CSV with header example_id,annotator_id,label or JSONL with those keys)"
                )
        if show_fn is not None and not callable(show_fn):
            raise TypeError(f"show_fn must be callable(example_id) -> value, got {type(show_fn).__name__}")
        self.show_fn = show_fn
        self.store: Any = None
        self.dataset: Any = None
        self.problems: list[AnswerProblem] = []
        self._given: dict[tuple[int, str], int] = {}
        if store is not None:
            self.bind(store=store)

    # ------------------------------------------------------------------ wiring
    def bind(self, *, store: Any = None, datamodule: Any = None) -> None:
        """Give the oracle the run's store and data (called by the loop / callback before a round).

        Args:
            store: The :class:`~activelab_lightning.store.AnnotationStore` (sets ``num_examples``).
            datamodule: An object with a ``dataset`` attribute (the base dataset), used by the
                default ``show_fn``.
        """
        if store is not None:
            self.store = store
            self.num_examples = int(store.num_examples)
            stored = tuple(str(c) for c in getattr(store, "class_names", self.class_names))
            if stored != self.class_names:
                raise ValueError(
                    f"class_names {list(self.class_names)} differ from the store's {list(stored)}; "
                    "give the oracle the same class list as the store"
                )
        if datamodule is not None:
            dataset = getattr(datamodule, "dataset", None)
            if dataset is not None:
                self.dataset = dataset
                if self.num_examples is None and hasattr(dataset, "__len__"):
                    self.num_examples = len(dataset)

    @property
    def requests_dir(self) -> Path:
        """Folder holding ``round_NNN.jsonl`` / ``.csv`` / ``.errors.txt`` and ``images/``."""
        return self.directory / "requests"

    @property
    def where(self) -> str:
        """Where answers are expected (for :class:`~activelab_lightning.errors.WaitingForLabels`)."""
        return ", ".join(str(p) for p in self.answer_paths)

    def round_path(self, round: int, suffix: str = ".jsonl") -> Path:
        """``requests/round_NNN<suffix>``."""
        return self.requests_dir / f"round_{int(round):03d}{suffix}"

    def __repr__(self) -> str:
        return f"FileOracle(directory={str(self.directory)!r}, answers={self.where!r}, classes={list(self.class_names)})"

    # ------------------------------------------------------------------ requests
    def _answer(self, requests: tuple[LabelRequest, ...]) -> OracleResponse:
        rounds = sorted({int(r.round) for r in requests})
        if is_rank_zero():
            for rnd in rounds:
                self.write_requests([r for r in requests if r.round == rnd])
        annotations, problems = self.read_answers(requests)
        self.problems = problems
        if is_rank_zero():
            self._report(problems, rounds[-1])
        answered = {a.request_id for a in annotations}
        pending = tuple(r for r in requests if r.request_id not in answered)
        for a in annotations:
            self._given[(a.example_id, a.annotator_id)] = a.label
        return OracleResponse(annotations=tuple(annotations), pending=pending)

    def _show(self, example_id: int) -> Any:
        return example_value(self.show_fn, self.dataset, example_id)

    def write_requests(self, requests: Sequence[LabelRequest]) -> Path:
        """Write (or extend) one round's ``round_NNN.jsonl`` and ``.csv``.

        A round file that already lists every request is left untouched (re-asking pending
        requests rewrites nothing); otherwise the round's requests (all of them when a store is
        bound) are merged with those in the file and both files are rewritten atomically.

        Returns:
            The JSONL path.
        """
        rnd = int(requests[0].round)
        jsonl = self.round_path(rnd)
        existing: dict[str, dict[str, Any]] = {}
        if jsonl.exists():
            for line in jsonl.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    task = json.loads(line)
                    existing[task["data"]["request_id"]] = task
        if all(r.request_id in existing for r in requests):
            return jsonl
        full: list[LabelRequest] = list(self.store.requests(rnd)) if self.store is not None else []
        known = {r.request_id for r in full}
        full += [r for r in requests if r.request_id not in known]
        tasks = dict(existing)
        for r in full:
            if r.request_id not in tasks:
                display = display_fields(
                    self._show(int(r.example_id)),
                    images_dir=self.requests_dir / "images",
                    name=f"r{rnd:03d}_e{int(r.example_id)}",
                )
                if "image" in display and not display.get("path"):
                    display["image"] = os.path.relpath(display["image"], self.requests_dir)
                if "text" not in display and "image" not in display:
                    display["text"] = (
                        display.get("path") or f"example {int(r.example_id)}"
                    )  # importable as is
                tasks[r.request_id] = task_for_request(r, self.class_names, display)
        ordered = sorted(tasks.values(), key=lambda t: (t["data"]["score"], t["data"]["example_id"]))
        atomic_write(jsonl, "".join(json.dumps(t, sort_keys=True) + "\n" for t in ordered))
        rows = []
        for t in ordered:
            d = t["data"]
            rows.append(
                {
                    "request_id": d["request_id"],
                    "example_id": d["example_id"],
                    "round": d["round"],
                    "kind": d["kind"],
                    "score": repr(float(d["score"])),
                    "existing_annotators": ";".join(d["existing_annotators"]),
                    "text": d.get("text", ""),
                    "image": d.get("image", ""),
                    "path": d.get("path", ""),
                    "classes": "|".join(d["classes"]),
                }
            )
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_REQUEST_CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.round_path(rnd, ".csv"), buf.getvalue())
        config = self.requests_dir / "label_studio_config.xml"
        if not config.exists():  # to label the JSONL in Label Studio: Settings > Labeling Interface > Code
            kind: Literal["text", "image"] = (
                "image" if all("image" in t["data"] and "text" not in t["data"] for t in ordered) else "text"
            )
            atomic_write(config, label_config(self.class_names, kind) + "\n")
        return jsonl

    # ------------------------------------------------------------------ answers
    def read_answers(self, requests: Sequence[LabelRequest]) -> tuple[list[Annotation], list[AnswerProblem]]:
        """Import the answers files against ``requests`` (the pending ones).

        Returns:
            ``(annotations, problems)``: the new answers to pending requests, and the bad lines.
        """
        pending: dict[int, LabelRequest] = {}
        for r in sorted(requests, key=lambda r: r.round):
            pending.setdefault(int(r.example_id), r)
        parsed: list[tuple[str, int, int, str, int]] = []  # (file, line, example, annotator, label)
        problems: list[AnswerProblem] = []
        for path in self.answer_paths:
            if not path.exists():
                continue
            name = str(path)
            for line_no, row, problem in read_table(path, required=ANSWER_COLUMNS).rows():
                if row is None:
                    problems.append(AnswerProblem(name, line_no, problem))
                    continue
                try:
                    parsed.append((name, line_no, *self._parse_row(row)))
                except ValueError as err:
                    problems.append(AnswerProblem(name, line_no, str(err)))
        stored = self._stored_labels({p[2] for p in parsed})
        asked_before = self._requested_before()
        first: dict[tuple[int, str], tuple[str, int, int]] = {}
        annotations: list[Annotation] = []
        for name, line_no, eid, annotator, label in parsed:
            key = (eid, annotator)
            if key in first:
                f_name, f_line, f_label = first[key]
                if f_label != label:
                    problems.append(
                        AnswerProblem(
                            name,
                            line_no,
                            (
                                f"annotator {annotator!r} already answered example {eid} as {self.class_names[f_label]!r} "
                                f"at {f_name}:{f_line}; one label per annotator and example, the first one counts"
                            ),
                        )
                    )
                continue
            first[key] = (name, line_no, label)
            if key in stored:
                if stored[key] != label:
                    problems.append(
                        AnswerProblem(
                            name,
                            line_no,
                            (
                                f"annotator {annotator!r} already labeled example {eid} as "
                                f"{self.class_names[stored[key]]!r}; the stored label is kept (stored labels never change "
                                "through this file; use the store's corrections instead)"
                            ),
                        )
                    )
                continue
            request = pending.get(eid)
            if request is None:
                if self.store is None and eid in asked_before:
                    continue  # answered in an earlier run; without a store we cannot tell more
                problems.append(AnswerProblem(name, line_no, self._not_requested_reason(eid)))
                continue
            if annotator in request.existing_annotators:
                if self.store is None:
                    continue  # their earlier label is stored by the loop
                problems.append(
                    AnswerProblem(
                        name,
                        line_no,
                        (
                            f"annotator {annotator!r} already labeled example {eid}; request {request.request_id} needs "
                            f"a label from someone else (not {list(request.existing_annotators)})"
                        ),
                    )
                )
                continue
            annotations.append(
                Annotation(
                    example_id=eid,
                    annotator_id=annotator,
                    label=label,
                    round=int(request.round),
                    source=self.source,
                    request_id=request.request_id,
                )
            )
        problems.sort(key=lambda p: (p.file, p.line))
        return annotations, problems

    def _parse_row(self, row: Mapping[str, Any]) -> tuple[int, str, int]:
        raw_id = row.get("example_id")
        eid = parse_int(raw_id)
        if eid is None:
            raise ValueError(f"example_id {raw_id!r} is not an integer example id")
        if eid < 0 or (self.num_examples is not None and eid >= self.num_examples):
            valid = f"0..{self.num_examples - 1}" if self.num_examples is not None else ">= 0"
            raise ValueError(f"unknown example id {eid} (valid ids are {valid})")
        annotator = row.get("annotator_id")
        annotator = "" if annotator is None else str(annotator).strip()
        if not annotator:
            raise ValueError(f"missing annotator_id for example {eid}; every answer needs who gave it")
        raw_label = row.get("label")
        if raw_label is None or (isinstance(raw_label, str) and not raw_label.strip()):
            raise ValueError(
                f"missing label for example {eid}; give a class name {list(self.class_names)} or an index"
            )
        return eid, annotator, parse_label(raw_label, self._classes)

    def _stored_labels(self, example_ids: set[int]) -> dict[tuple[int, str], int]:
        """``(example, annotator) -> label`` already stored (store) or already returned (this process)."""
        return stored_labels(self.store, self._given, example_ids)

    def _requested_before(self) -> set[int]:
        """Example ids listed in the round files written so far."""
        out: set[int] = set()
        if not self.requests_dir.exists():
            return out
        for path in sorted(self.requests_dir.glob("round_*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    out.add(int(json.loads(line)["data"]["example_id"]))
        return out

    def _not_requested_reason(self, eid: int) -> str:
        if self.store is not None:
            status = self.store.request_status() if hasattr(self.store, "request_status") else {}
            done = [rid for rid, s in status.items() if rid.endswith(f":e{eid}") and s != "pending"]
            if done:
                return (
                    f"example {eid} was not requested now: request {done[-1]} is already "
                    f"{status[done[-1]]}; answers are imported only for pending requests"
                )
        return f"example {eid} was not requested (id not requested); answer only the examples in {self.requests_dir}"

    def _report(self, problems: list[AnswerProblem], round: int) -> None:
        path = self.round_path(round, ".errors.txt")
        if not problems:
            path.unlink(missing_ok=True)
            return
        atomic_write(path, "".join(f"{p}\n" for p in problems))
        log.warning(
            "%d bad line(s) in the answers were not imported (listed in %s); first: %s",
            len(problems),
            path,
            problems[0],
        )
