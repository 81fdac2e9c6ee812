"""Human annotators through plain files: requests out, answers in.

Each round, :class:`FileOracle` writes the round's label requests to
``<directory>/requests/round_NNN.jsonl`` (one Label Studio task per line, so the same file can be
imported into Label Studio with the labeling config in ``requests/label_studio_config.xml``) and
``round_NNN.csv`` (for spreadsheets). Humans write their answers
to an answers file (CSV or JSONL with the columns ``example_id, annotator_id, label``; labels by
class name or index). Every call imports what is there:

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
import math
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from activelab_lightning.oracles.base import BaseOracle, class_name_tuple
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse

__all__ = [
    "AnswerProblem",
    "FileOracle",
    "display_fields",
    "is_image",
    "parse_label",
    "png_bytes",
    "task_for_request",
    "write_png",
]

log = logging.getLogger(__name__)

#: Columns every answers file must have.
ANSWER_COLUMNS = ("example_id", "annotator_id", "label")
_ANSWER_SUFFIXES = (".csv", ".jsonl", ".ndjson")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
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
_THUMBNAIL_MIN_SIDE = 96


class AnswerProblem(NamedTuple):
    """One answers-file line that was not imported.

    Attributes:
        file: The answers file.
        line: 1-based line number in that file (the header is line 1 of a CSV file).
        reason: What is wrong and what to do instead.
    """

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def _is_rank_zero() -> bool:
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(var)
        if value not in (None, ""):
            try:
                return int(value) == 0
            except ValueError:
                return True
    return True


# --------------------------------------------------------------------------------- labels


def parse_label(value: Any, class_names: Sequence[str]) -> int:
    """Turn a human's label (a class name or a class index) into a class index.

    A class name wins over an index (so class names that look like numbers work); names are
    matched exactly first, then ignoring case and surrounding spaces.

    Args:
        value: A class name (``"cat"``), an index (``2`` or ``"2"``).
        class_names: The ``K`` class names.

    Returns:
        The class index in ``0 .. K-1``.

    Raises:
        ValueError: ``value`` is empty, or neither a class name nor an index in range.

    Example::

        >>> parse_label("dog", ["cat", "dog"]), parse_label(" DOG ", ["cat", "dog"]), parse_label("0", ["cat", "dog"])
        (1, 1, 0)
    """
    names = [str(c) for c in class_names]
    if isinstance(value, bool) or value is None:
        raise ValueError(
            f"label {value!r} is not a class name or index; use one of {names} or 0..{len(names) - 1}"
        )
    if isinstance(value, (int, np.integer)):
        index = int(value)
        if 0 <= index < len(names):
            return index
        raise ValueError(f"label index {index} is outside 0..{len(names) - 1} (classes {names})")
    if isinstance(value, float) and value.is_integer() and 0 <= value < len(names):
        return int(value)
    text = str(value)
    if text in names:
        return names.index(text)
    folded = text.strip().casefold()
    if not folded:
        raise ValueError("missing label; give a class name or a class index")
    matches = [i for i, n in enumerate(names) if n.strip().casefold() == folded]
    if len(matches) == 1:
        return matches[0]
    if folded.lstrip("+").isdigit():
        index = int(folded)
        if 0 <= index < len(names):
            return index
    raise ValueError(
        f"label {text!r} is not in the class list {names}; give a class name or an index 0..{len(names) - 1}"
    )


# --------------------------------------------------------------------------------- display


def png_bytes(image: Any, *, min_side: int = _THUMBNAIL_MIN_SIDE) -> bytes:
    """Encode an image array as PNG bytes (no imaging library needed).

    Float images with values in ``[0, 1]`` are scaled by 255, other floats are min-max scaled;
    small images are enlarged (nearest neighbour) so their short side is at least ``min_side``.

    Args:
        image: ``(H, W)`` grayscale, ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4 (alpha is
            dropped); a tensor or an array.
        min_side: Enlarge until the shorter side is at least this many pixels (0: keep the size).

    Raises:
        ValueError: ``image`` does not have one of the shapes above.

    Example::

        >>> png_bytes(np.eye(4))[:4]
        b'\\x89PNG'
    """
    arr = _image_array(image)
    if arr is None:
        raise ValueError(
            f"image must be (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4; got shape {np.shape(_to_numpy(image))}"
        )
    if min_side and min(arr.shape[:2]) < min_side:
        factor = math.ceil(min_side / max(1, min(arr.shape[:2])))
        arr = np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)
    height, width = arr.shape[:2]
    color_type = 0 if arr.ndim == 2 else 2
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), arr.reshape(height, -1)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], image: Any, *, min_side: int = _THUMBNAIL_MIN_SIDE) -> Path:
    """Write an image array as a PNG file (see :func:`png_bytes` for the accepted shapes).

    Returns:
        The path written.

    Example::

        >>> import tempfile, os
        >>> write_png(os.path.join(tempfile.mkdtemp(), "x.png"), np.eye(4)).read_bytes()[:4]
        b'\\x89PNG'
    """
    data = png_bytes(image, min_side=min_side)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if getattr(value, "dtype", None) is not None and str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _image_array(value: Any) -> np.ndarray | None:
    """``(H, W)`` or ``(H, W, 3)`` uint8, or None when ``value`` is not image-shaped."""
    arr = _to_numpy(value)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[-1] == 3):
        return None
    if min(arr.shape[:2]) < 2:
        return None
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    arr = np.where(finite, arr, 0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if finite.any() else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif hi > lo:
        scaled = (arr - lo) / (hi - lo) * 255.0
    else:
        scaled = np.zeros_like(arr)
    return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def is_image(value: Any) -> bool:
    """Whether ``value`` is an image-shaped tensor / array that :func:`png_bytes` can render."""
    if isinstance(value, (str, bytes, os.PathLike, Mapping)) or value is None:
        return False
    try:
        return _to_numpy(value).ndim >= 2 and _image_array(value) is not None
    except (TypeError, ValueError):
        return False


def _format_vector(arr: np.ndarray, limit: int = 64) -> str:
    flat = arr.reshape(-1)
    shown = ", ".join(
        f"{float(v):.4g}" if np.issubdtype(flat.dtype, np.floating) else str(v) for v in flat[:limit]
    )
    return shown + (f", ... ({flat.size} values)" if flat.size > limit else "")


def display_fields(value: Any, *, images_dir: str | os.PathLike[str] | None, name: str) -> dict[str, Any]:
    """What to show a human for one example, as Label Studio task data fields.

    Args:
        value: What ``show_fn(example_id)`` (or the dataset) returned: a file path (``"path"``, plus
            ``"image"`` for image files), a string (``"text"``), an image-shaped tensor or array
            (rendered to ``images_dir/<name>.png`` → ``"image"``), a 1-D tensor / array / number
            (formatted as ``"text"``), a mapping (its items are used as they are), or None.
        images_dir: Where rendered images go; image tensors are shown as text when None.
        name: File stem for a rendered image.

    Returns:
        A dict with some of ``"text"``, ``"image"``, ``"path"`` (and a mapping's own keys).

    Example::

        >>> display_fields("a photo of a cat", images_dir=None, name="e1")
        {'text': 'a photo of a cat'}
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {
            str(k): (v if isinstance(v, (str, int, float, bool, type(None), list)) else str(v))
            for k, v in value.items()
        }
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and Path(value).suffix and len(value) < 4096 and Path(value).exists()
    ):
        path = os.fspath(value)
        out: dict[str, Any] = {"path": path}
        if Path(path).suffix.lower() in _IMAGE_SUFFIXES:
            out["image"] = path
        return out
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, (int, float, np.number)):
        return {"text": str(value)}
    arr = _to_numpy(value)
    if arr.ndim >= 2 and images_dir is not None and _image_array(arr) is not None:
        png = write_png(Path(images_dir) / f"{name}.png", arr)
        return {"image": png.as_posix()}
    return {"text": _format_vector(arr)}


def task_for_request(
    request: LabelRequest, class_names: Sequence[str], display: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One request in Label Studio's task import shape.

    ``data`` carries our ids (``example_id``, ``request_id``), the round, the request kind, the
    ActiveLab score, the annotators who must not answer again, the class list and the display
    fields; the score is also the ``predictions[0].score`` that Label Studio's uncertainty sampling
    serves lowest-first.

    Example::

        >>> task = task_for_request(LabelRequest(3, 0.25, "new", 0), ["a", "b"], {"text": "x"})
        >>> task["data"]["request_id"], task["predictions"][0]["score"]
        ('r0:e3', 0.25)
    """
    data: dict[str, Any] = dict(display or {})
    data.update(
        example_id=int(request.example_id),
        request_id=request.request_id,
        round=int(request.round),
        kind=request.kind,
        score=float(request.score),
        existing_annotators=list(request.existing_annotators),
        classes=[str(c) for c in class_names],
    )
    return {
        "data": data,
        "predictions": [
            {"model_version": f"activelab-r{int(request.round)}", "score": float(request.score), "result": []}
        ],
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            :func:`display_fields`); default: the bound dataset's input ``dataset[example_id][0]``,
            else nothing but the ids.
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
        self.store = None
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
        if _is_rank_zero():
            for rnd in rounds:
                self.write_requests([r for r in requests if r.round == rnd])
        annotations, problems = self.read_answers(requests)
        self.problems = problems
        if _is_rank_zero():
            self._report(problems, rounds[-1])
        answered = {a.request_id for a in annotations}
        pending = tuple(r for r in requests if r.request_id not in answered)
        for a in annotations:
            self._given[(a.example_id, a.annotator_id)] = a.label
        return OracleResponse(annotations=tuple(annotations), pending=pending)

    def _show(self, example_id: int) -> Any:
        if self.show_fn is not None:
            return self.show_fn(example_id)
        if self.dataset is not None:
            item = self.dataset[example_id]
            return item[0] if isinstance(item, (tuple, list)) else item
        return None

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
        full = list(self.store.requests(rnd)) if self.store is not None else []
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
        _atomic_write(jsonl, "".join(json.dumps(t, sort_keys=True) + "\n" for t in ordered))
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
        _atomic_write(self.round_path(rnd, ".csv"), buf.getvalue())
        config = self.requests_dir / "label_studio_config.xml"
        if not config.exists():  # to label the JSONL in Label Studio: Settings > Labeling Interface > Code
            from activelab_lightning.oracles.label_studio import label_config

            kind = (
                "image" if all("image" in t["data"] and "text" not in t["data"] for t in ordered) else "text"
            )
            _atomic_write(config, label_config(self.class_names, kind) + "\n")
        return jsonl

    # ------------------------------------------------------------------ answers
    def _rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
        """``(line_no, row or None, problem)`` for each non-blank line of one answers file."""
        if path.suffix.lower() == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is None:
                    return
                columns = [h.strip().lower() for h in header]
                missing = [c for c in ANSWER_COLUMNS if c not in columns]
                if missing:
                    yield (
                        1,
                        None,
                        (
                            f"header {header} lacks column(s) {missing}; the header must name "
                            f"{', '.join(ANSWER_COLUMNS)}; no line of this file was imported"
                        ),
                    )
                    return
                for values in reader:
                    if not any(v.strip() for v in values):
                        continue
                    yield reader.line_num, dict(zip(columns, values)), ""
        else:
            with path.open(encoding="utf-8") as f:
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        yield line_no, None, f"not valid JSON ({err.msg}); write one object per line"
                        continue
                    if not isinstance(row, dict):
                        yield (
                            line_no,
                            None,
                            f"expected a JSON object with keys {list(ANSWER_COLUMNS)}, got {row!r}",
                        )
                        continue
                    yield line_no, {str(k).strip().lower(): v for k, v in row.items()}, ""

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
            for line_no, row, problem in self._rows(path):
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
        bad_id = ValueError(f"example_id {raw_id!r} is not an integer example id")
        if isinstance(raw_id, (bool, float)) or raw_id is None:
            raise bad_id
        try:
            eid = int(raw_id) if isinstance(raw_id, (int, np.integer)) else int(str(raw_id).strip())
        except ValueError:
            raise bad_id from None
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
        return eid, annotator, parse_label(raw_label, self.class_names)

    def _stored_labels(self, example_ids: set[int]) -> dict[tuple[int, str], int]:
        """``(example, annotator) -> label`` already stored (store) or already returned (this process)."""
        out = {k: v for k, v in self._given.items() if k[0] in example_ids}
        if self.store is not None and example_ids:
            ids = sorted(example_ids)
            matrix, annotators = self.store.label_matrix(ids)
            values = matrix.numpy() if hasattr(matrix, "numpy") else np.asarray(matrix)
            rows, cols = np.nonzero(~np.isnan(values))
            for i, j in zip(rows.tolist(), cols.tolist()):
                out[(ids[i], annotators[j])] = int(values[i, j])
        return out

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
        _atomic_write(path, "".join(f"{p}\n" for p in problems))
        log.warning(
            "%d bad line(s) in the answers were not imported (listed in %s); first: %s",
            len(problems),
            path,
            problems[0],
        )
