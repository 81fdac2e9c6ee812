"""The oracle contract, and a base class with the checks every oracle shares.

An oracle receives one round's :class:`~activelab_lightning.records.LabelRequest`\\ s and returns an
:class:`~activelab_lightning.records.OracleResponse`: the annotations it has (each with the id of
the annotator who gave it), the requests still waiting for a human, and the requests no annotator
can answer any more.

Answers must be a deterministic function of ``(seed, request)``, not of call order or batching, so
a resumed run that re-asks the same request gets the same answer. The built-in oracles get their
randomness from :func:`stable_uniform`, a counter-based hash of ``(seed, keys...)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from activelab_lightning.errors import OracleAnswerError
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse

__all__ = [
    "BaseOracle",
    "Oracle",
    "check_response",
    "class_name_tuple",
    "stable_uniform",
    "string_keys",
]


@runtime_checkable
class Oracle(Protocol):
    """Anything that answers label requests.

    Attributes:
        name: Short name, used in ``Annotation.source = f"oracle:{name}"`` and in logs.

    Example::

        >>> from activelab_lightning.records import Annotation
        >>> class AlwaysZero:
        ...     name = "zero"
        ...     def request(self, requests):
        ...         return OracleResponse(tuple(Annotation(r.example_id, "bot", 0, r.round, "oracle:zero",
        ...                                                r.request_id) for r in requests))
        >>> isinstance(AlwaysZero(), Oracle)
        True
    """

    name: str

    def request(self, requests: Sequence[LabelRequest]) -> OracleResponse:
        """Answer (some of) ``requests``; see :class:`~activelab_lightning.records.OracleResponse`."""
        ...


class BaseOracle(ABC):
    """Shared request/response validation; subclasses implement :meth:`_answer`.

    :meth:`request` checks the requests (type, example id range when ``num_examples`` is known,
    one request per ``request_id``), calls :meth:`_answer`, then checks that every annotation
    answers a request of this call, does not come from an annotator who already labeled the
    example, and holds a class index in range when ``num_classes`` is known.

    Args:
        name: The oracle's name.
        num_examples: Size of the example id space, if known (ids ``0 .. num_examples-1``).
        num_classes: Number of classes, if known.
    """

    def __init__(self, name: str, *, num_examples: int | None = None, num_classes: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self.num_examples = num_examples
        self.num_classes = num_classes

    @property
    def source(self) -> str:
        """The ``Annotation.source`` of this oracle's answers: ``"oracle:<name>"``."""
        return f"oracle:{self.name}"

    def request(self, requests: Sequence[LabelRequest]) -> OracleResponse:
        """Answer ``requests`` (see :class:`Oracle`).

        Args:
            requests: The round's label requests (any order; at most one per example and round).

        Returns:
            The annotations, plus requests still pending or exhausted.

        Raises:
            TypeError: an element is not a ``LabelRequest``.
            ValueError: an unknown example id, or two requests with the same ``request_id``.
        """
        reqs = self._check_requests(requests)
        if not reqs:
            return OracleResponse(annotations=())
        response = self._answer(reqs)
        check_response(reqs, response, oracle_name=self.name, num_classes=self.num_classes)
        return response

    @abstractmethod
    def _answer(self, requests: tuple[LabelRequest, ...]) -> OracleResponse:
        """Answer validated, non-empty ``requests``."""

    def _check_requests(self, requests: Sequence[LabelRequest]) -> tuple[LabelRequest, ...]:
        if isinstance(requests, LabelRequest):
            raise TypeError(
                "requests must be a sequence of LabelRequest, got a single LabelRequest; wrap it in a list"
            )
        reqs = tuple(requests)
        seen: set[str] = set()
        for r in reqs:
            if not isinstance(r, LabelRequest):
                raise TypeError(f"requests must hold LabelRequest objects, got {type(r).__name__}: {r!r}")
            eid = r.example_id
            if (
                isinstance(eid, bool)
                or not isinstance(eid, (int, np.integer))
                or eid < 0
                or (self.num_examples is not None and eid >= self.num_examples)
            ):
                valid = f"0 .. {self.num_examples - 1}" if self.num_examples is not None else ">= 0"
                raise ValueError(
                    f"unknown example id {eid!r} in request {r.request_id}: "
                    f"{self.name!r} knows example ids {valid}"
                )
            if r.request_id in seen:
                raise ValueError(
                    f"request {r.request_id} appears twice in one call; send one request per example "
                    "and round"
                )
            seen.add(r.request_id)
        return reqs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_response(
    asked: Sequence[LabelRequest],
    response: OracleResponse,
    *,
    oracle_name: str,
    num_classes: int | None = None,
) -> OracleResponse:
    """Check an oracle's answer against what was asked; fill in missing round / request ids.

    The one check of oracle responses: :class:`BaseOracle` runs it on its own answers, and the
    callback on every oracle's (any object with ``request()``) before anything is stored.

    Args:
        asked: The requests of this call.
        response: The oracle's :class:`~activelab_lightning.records.OracleResponse`.
        oracle_name: Named in the messages; annotations with the default ``source="import"`` get
            ``source=f"oracle:{oracle_name}"``.
        num_classes: ``K``; labels must lie in ``0 .. K-1`` (not checked when None).

    Returns:
        The response with every annotation's ``round`` and ``request_id`` set from its request.

    Raises:
        OracleAnswerError: An annotation that is not an ``Annotation``, answers an example or request
            that was not asked, pairs a request with another example, repeats an annotator who
            already labeled the example, or holds a label out of range; or a pending / exhausted
            request that was not asked. Nothing of the response should be stored then.

    Example::

        >>> q = LabelRequest(example_id=3, score=0.1, kind="new", round=0)
        >>> out = check_response([q], OracleResponse(annotations=(Annotation(3, "ann-1", 2),)), oracle_name="demo")
        >>> out.annotations[0].request_id, out.annotations[0].source
        ('r0:e3', 'oracle:demo')
    """
    by_example = {q.example_id: q for q in asked}
    by_request = {q.request_id: q for q in asked}
    name = oracle_name
    fixed = []
    for i, ann in enumerate(response.annotations):
        if not isinstance(ann, Annotation):
            raise OracleAnswerError(
                f"Oracle {name!r} returned annotations[{i}] of type {type(ann).__name__}; expected Annotation. "
                f"Nothing was stored."
            )
        request = by_example.get(int(ann.example_id))
        if request is None or (ann.request_id is not None and ann.request_id not in by_request):
            more = "..." if len(by_example) > 10 else ""
            raise OracleAnswerError(
                f"Oracle {name!r} answered example {ann.example_id} (request_id={ann.request_id!r}), which was "
                f"not requested; requested: {sorted(by_example)[:10]}{more}. Nothing was stored."
            )
        if ann.request_id is not None and by_request[ann.request_id].example_id != ann.example_id:
            raise OracleAnswerError(
                f"Oracle {name!r} answered request {ann.request_id!r} with example {ann.example_id}, but that "
                f"request asked for example {by_request[ann.request_id].example_id}. Nothing was stored."
            )
        if ann.request_id is not None:
            request = by_request[ann.request_id]
        if ann.annotator_id in request.existing_annotators:
            raise OracleAnswerError(
                f"Oracle {name!r} asked annotator {ann.annotator_id!r} twice for example {ann.example_id} "
                f"(the request lists the annotators who already labeled it). Nothing was stored."
            )
        if num_classes is not None and not 0 <= int(ann.label) < num_classes:
            raise OracleAnswerError(
                f"Oracle {name!r} returned label {ann.label} for example {ann.example_id}; labels must be in "
                f"0 .. {num_classes - 1}. Nothing was stored."
            )
        if ann.round is None or ann.request_id is None:
            ann = dataclasses.replace(
                ann,
                round=request.round if ann.round is None else ann.round,
                request_id=request.request_id if ann.request_id is None else ann.request_id,
                source=ann.source if ann.source != "import" else f"oracle:{name}",
            )
        fixed.append(ann)
    for what, items in (("pending", response.pending), ("exhausted", response.exhausted)):
        for q in items:
            if q.request_id not in by_request:
                raise OracleAnswerError(
                    f"Oracle {name!r} reported request {q.request_id!r} as {what}, but it was not asked. "
                    f"Nothing was stored."
                )
    return OracleResponse(annotations=tuple(fixed), pending=response.pending, exhausted=response.exhausted)


# --- deterministic randomness -------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def class_name_tuple(class_names: Sequence[str]) -> tuple[str, ...]:
    """Check the class list a human-facing oracle shows its annotators.

    Args:
        class_names: The ``K`` class names, in class-index order.

    Returns:
        The names as a tuple of strings.

    Raises:
        ValueError: Fewer than 2 names, repeated names, or a single string instead of a list.

    Example::

        >>> class_name_tuple(["cat", "dog"])
        ('cat', 'dog')
    """
    names = [str(c) for c in class_names] if not isinstance(class_names, str) else []
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"class_names must hold at least 2 distinct names, got {class_names!r}")
    return tuple(names)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _to_u64(x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == np.uint64:
        return arr
    return np.asarray(arr, dtype=np.int64).astype(np.uint64)


def stable_uniform(seed: int, *keys: object) -> np.ndarray:
    """Uniform numbers in ``[0, 1)`` that depend only on ``(seed, keys)``.

    A counter-based generator (SplitMix64 mixing): the same seed and keys give the same numbers on
    every platform and call order. Keys are integer arrays (broadcast together) or ints.

    Args:
        seed: Any int.
        *keys: Integer scalars or arrays, e.g. ``(purpose, example_ids[:, None], annotator_idx[None, :])``.

    Returns:
        float64 array with the broadcast shape of the keys.

    Example::

        >>> a = stable_uniform(0, 7, np.arange(3))
        >>> bool((a == stable_uniform(0, 7, np.arange(3))).all()), a.shape
        (True, (3,))
    """
    with np.errstate(over="ignore"):
        h = _mix(_to_u64(seed) + _GOLDEN)
        for k in keys:
            h = _mix(h ^ (_to_u64(k) + _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def string_keys(strings: Sequence[str]) -> np.ndarray:
    """Stable 63-bit integer keys of strings (BLAKE2b), for use with :func:`stable_uniform`.

    Example::

        >>> int(string_keys(["ann-1"])[0]) == int(string_keys(["ann-1"])[0])
        True
    """
    out = np.empty(len(strings), dtype=np.int64)
    for i, s in enumerate(strings):
        out[i] = (
            int.from_bytes(hashlib.blake2b(str(s).encode("utf-8"), digest_size=8).digest(), "little") >> 1
        )
    return out
