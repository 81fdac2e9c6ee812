"""Subprocess for the crash-safety test: append annotation batches to a store until killed.

Usage: ``python tests/_store_writer.py DB_PATH FIRST_BATCH BATCH_SIZE NUM_EXAMPLES``

Batch ``b`` is ``BATCH_SIZE`` labels by annotator ``writer-<b>`` (one annotator per batch, so a
batch is whole exactly when that annotator has ``BATCH_SIZE`` labels). After each
``add_annotations`` call returns (= committed) the script prints ``ack <b>`` and flushes, so
the parent knows which batches were acknowledged before it sent SIGKILL.
"""

from __future__ import annotations

import sys

from activelab_lightning.records import Annotation
from activelab_lightning.store import AnnotationStore

CLASS_NAMES = ("a", "b", "c")


def batch(b: int, size: int, num_examples: int) -> list[Annotation]:
    """The annotations of batch ``b`` (a pure function of ``b``)."""
    return [
        Annotation(
            example_id=(b * 37 + j * 11) % num_examples,
            annotator_id=f"writer-{b}",
            label=(b + j) % len(CLASS_NAMES),
            round=b,
            source="crash-test",
            request_id=f"b{b}",
        )
        for j in range(size)
    ]


def main() -> None:
    path, first, size, num_examples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = AnnotationStore(path, num_examples=num_examples, class_names=CLASS_NAMES)
    print("open", flush=True)
    b = first
    while True:
        store.add_annotations(batch(b, size, num_examples))
        print(f"ack {b}", flush=True)
        b += 1


if __name__ == "__main__":
    main()
