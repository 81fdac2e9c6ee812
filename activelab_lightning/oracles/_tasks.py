"""What the human-facing oracles share: Label Studio tasks, display fields, PNG thumbnails, problems.

:class:`~activelab_lightning.oracles.file.FileOracle` writes requests as Label Studio task files and
:class:`~activelab_lightning.oracles.label_studio.LabelStudioOracle` imports the same tasks into a
server; both build them here (:func:`task_for_request`, :func:`display_fields`,
:func:`label_config`), render image tensors with :func:`png_bytes` (Pillow), report unusable answers
as :class:`AnswerProblem` and look up what the store already holds with :func:`stored_labels`.
"""

from __future__ import annotations

import io
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple
from xml.sax.saxutils import quoteattr

import numpy as np

from activelab_lightning._files import atomic_write
from activelab_lightning.records import LabelRequest

__all__ = [
    "FROM_NAME",
    "AnswerProblem",
    "choice_of",
    "config_choices",
    "display_fields",
    "example_value",
    "is_image",
    "label_config",
    "png_bytes",
    "stored_labels",
    "task_for_request",
    "write_png",
]

#: ``name`` of the ``<Choices>`` block in the labeling config (``from_name`` of its results).
FROM_NAME = "label"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
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


def label_config(class_names: Sequence[str], data_type: Literal["text", "image"] = "text") -> str:
    """Label Studio labeling config for single-choice classification over ``class_names``.

    Args:
        class_names: The ``K`` class names (the choices, in order).
        data_type: ``"text"`` shows the task's ``$text``; ``"image"`` shows ``$image``.

    Example::

        >>> print(label_config(["cat", "dog"]))  # doctest: +NORMALIZE_WHITESPACE
        <View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="single"
        showInline="true"><Choice value="cat"/><Choice value="dog"/></Choices></View>
    """
    if data_type not in ("text", "image"):
        raise ValueError(f"data_type must be 'text' or 'image', got {data_type!r}")
    tag = "Text" if data_type == "text" else "Image"
    choices = "".join(f"<Choice value={quoteattr(str(c))}/>" for c in class_names)
    return (
        f'<View><{tag} name="{data_type}" value="${data_type}"/>'
        f'<Choices name="{FROM_NAME}" toName="{data_type}" choice="single" showInline="true">'
        f"{choices}</Choices></View>"
    )


def config_choices(config: str) -> list[str] | None:
    """Choice values of the ``Choices name="label"`` block of a labeling config (None if absent)."""
    try:
        root = ET.fromstring(config)
    except ET.ParseError:
        return None
    for node in root.iter("Choices"):
        if node.get("name") == FROM_NAME:
            return [c.get("value", "") for c in node.iter("Choice")]
    return None


def png_bytes(image: Any, *, min_side: int = _THUMBNAIL_MIN_SIDE) -> bytes:
    """Encode an image array as PNG bytes (with Pillow).

    Float images with values in ``[0, 1]`` are scaled by 255, other floats are min-max scaled;
    small images are enlarged (nearest neighbour) so their short side is at least ``min_side``.

    Args:
        image: ``(H, W)`` grayscale, ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4 (alpha is
            dropped); a tensor or an array.
        min_side: Enlarge until the shorter side is at least this many pixels (0: keep the size).

    Raises:
        ValueError: ``image`` does not have one of the shapes above.
        ImportError: Pillow is not installed (``pip install pillow``).

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
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            "png_bytes renders images as PNG with Pillow, which is not installed: pip install pillow"
        ) from err
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")  # (H, W) -> grayscale "L", (H, W, 3) -> "RGB"
    return buffer.getvalue()


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
    return atomic_write(path, data)


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


def choice_of(annotation: Mapping[str, Any]) -> str | None:
    """The class a Label Studio annotation chose in the ``Choices name="label"`` block.

    Several choices come back joined by ``"|"`` (not a class, so the caller reports it); None when
    the annotation chose nothing there.

    Example::

        >>> choice_of({"result": [{"type": "choices", "from_name": "label", "value": {"choices": ["dog"]}}]})
        'dog'
    """
    for item in annotation.get("result") or []:
        if item.get("type") == "choices" and item.get("from_name", FROM_NAME) == FROM_NAME:
            choices = (item.get("value") or {}).get("choices") or []
            if len(choices) == 1:
                return str(choices[0])
            return None if not choices else "|".join(map(str, choices))
    return None


def example_value(show_fn: Callable[[int], Any] | None, dataset: Any, example_id: int) -> Any:
    """What to show for one example: ``show_fn(example_id)``, else the dataset's input, else None.

    The dataset's input is ``dataset[example_id][0]`` for datasets of ``(input, ...)`` tuples.

    Example::

        >>> example_value(None, [("x0", 0), ("x1", 1)], 1), example_value(str, None, 7)
        ('x1', '7')
    """
    if show_fn is not None:
        return show_fn(example_id)
    if dataset is not None:
        item = dataset[example_id]
        return item[0] if isinstance(item, (tuple, list)) else item
    return None


def stored_labels(
    store: Any, given: Mapping[tuple[int, str], int], example_ids: Iterable[int]
) -> dict[tuple[int, str], int]:
    """``(example, annotator) -> label`` already stored (``store``) or already returned (``given``).

    Args:
        store: The bound :class:`~activelab_lightning.store.AnnotationStore`, or None.
        given: What this oracle returned so far in this process.
        example_ids: The examples to look up.
    """
    ids = set(example_ids)
    out = {k: v for k, v in given.items() if k[0] in ids}
    if store is not None and ids:
        rows_ids = sorted(ids)
        matrix, annotators = store.label_matrix(rows_ids)
        values = matrix.numpy() if hasattr(matrix, "numpy") else np.asarray(matrix)
        rows, cols = np.nonzero(~np.isnan(values))
        for i, j in zip(rows.tolist(), cols.tolist()):
            out[(rows_ids[i], annotators[j])] = int(values[i, j])
    return out
