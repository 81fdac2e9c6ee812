"""The durable home of the labels: an append-only SQLite log of annotations, rounds and requests.

Labels are the most expensive thing an active-learning user has, so :class:`AnnotationStore`
keeps them in SQLite (standard library) in WAL mode with ``synchronous=FULL``, and every write is
one ``BEGIN IMMEDIATE`` transaction: a crash (even ``SIGKILL`` or a power loss) leaves either the
whole batch or nothing, and a batch whose ``add_annotations`` call returned is on disk.

What is stored (one table each):

* ``annotations``: the append-only log ``(example_id, annotator_id, label, round, source,
  request_id, created_at, is_correction)``. An exact repeat (same example, annotator, request and
  label) is a no-op; a second label by the same annotator for the same example is only kept as an
  explicit correction (``correction=True``), and the latest correction wins in the label matrix.
* ``annotators``: annotator ids (strings; humans have names) in first-seen order, which is the
  column order of :meth:`AnnotationStore.label_matrix`.
* ``rounds``: one record per acquisition round (seed, selected ids, status).
* ``requests``: the label requests of every round with their status (pending, answered, exhausted).
* ``external_ids``: ids given to a request by an outside system (e.g. Label Studio task ids).
* ``meta``: schema version, ``num_examples`` and the class names, checked on every reopen.

Derived views (the dense ``(n, M)`` label matrix with NaN for missing, label counts, the
labeled / unlabeled id sets, per-annotator counts) are computed with vectorized torch ops from a
single ``SELECT`` and cached until the database changes.

``torch`` is imported lazily, inside the derived views only, so that writers and the ``activelab``
command line (export / import / status) open a store without paying for the torch import.

The package splits the class by concern; :class:`AnnotationStore` composes the parts:

* ``_schema.py``: the tables and the schema version (:data:`SCHEMA_VERSION`);
* ``_db.py``: opening / creating, pragmas, transactions, fork and pickle handling, shared checks;
* ``_annotations.py``: validating annotations and appending them (``add_annotations``,
  ``record_response``);
* ``_rounds.py``: rounds, requests and their status, external ids;
* ``_views.py``: the derived views (label matrix, counts, labeled ids, annotators);
* ``_io.py``: export / import of the log as CSV or JSONL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from activelab_lightning.store._db import MEMORY
from activelab_lightning.store._io import IOMixin
from activelab_lightning.store._rounds import RoundsMixin
from activelab_lightning.store._schema import SCHEMA_VERSION
from activelab_lightning.store._views import ViewsMixin

__all__ = ["SCHEMA_VERSION", "AnnotationStore"]


class AnnotationStore(IOMixin, RoundsMixin, ViewsMixin):
    """Append-only, crash-safe store of multi-annotator labels, rounds and label requests.

    Args:
        path: SQLite file (created with its parent folder if missing) or ``":memory:"`` for a quick
            experiment that is lost when the store is closed.
        num_examples: Size ``N`` of the base dataset; example ids are ``0 .. N-1``. Required to
            create a store; when reopening, ``None`` reads it from the file and any other value must
            match the stored one.
        class_names: The ``K >= 2`` class names; labels are indices ``0 .. K-1``. Same rules as
            ``num_examples``.

    Raises:
        ValueError: ``path`` is not a SQLite database or not an AnnotationStore, the stored
            ``num_examples`` / ``class_names`` differ from the given ones (the message names both),
            ``num_examples < 1``, fewer than 2 or duplicate class names. Nothing is written then.

    Example::

        >>> from activelab_lightning.store import AnnotationStore
        >>> from activelab_lightning.records import Annotation
        >>> from activelab_lightning.records import Annotation
        >>> with AnnotationStore(num_examples=4, class_names=["cat", "dog"]) as store:
        ...     store.add_annotations([Annotation(0, "alice", 1), Annotation(0, "bob", 0),
        ...                            Annotation(2, "bob", 1)])
        ...     labels, annotators = store.label_matrix()
        3
        >>> labels.shape, annotators
        (torch.Size([2, 2]), ['alice', 'bob'])
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = MEMORY,
        *,
        num_examples: int | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self._open(path, num_examples, class_names)

    def __repr__(self) -> str:
        if self._conn is None:
            return f"AnnotationStore(path={self._path!r}, closed)"
        d = self._derived()
        labeled = int((d.counts > 0).sum())
        return (
            f"AnnotationStore(path={self._path!r}, annotations={len(self)}, "
            f"annotators={len(d.annotators)}, labeled={labeled}/{self.num_examples}, "
            f"classes={self.num_classes})"
        )
