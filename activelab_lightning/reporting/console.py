"""The console side of reporting: ``rich`` round tables and a progress bar for long pools."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["RoundConsole"]

#: (column title, record key, number format) of the round table.
_COLUMNS = (
    ("round", "round", ""),
    ("annot.", "num_annotations", ""),
    ("labeled", "num_labeled", ""),
    ("new", "num_new", ""),
    ("relabel", "num_relabel", ""),
    ("pending", "num_pending", ""),
    ("cons. acc", "consensus_accuracy", ".4f"),
    ("test acc", "test_accuracy", ".4f"),
    ("w model", "model_weight", ".3f"),
    ("w annot.", "mean_annotator_weight", ".3f"),
    ("sec", "seconds", ".2f"),
)
#: Keys a round record may lack (older round logs); the others must be there.
_OPTIONAL_KEYS = frozenset({"model_weight", "mean_annotator_weight"})


def _fmt(value: Any, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


class _Passthrough:
    """The iterable itself, unchanged (:meth:`RoundConsole.track` without a bar)."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self._iterable)


class RoundConsole:
    """Prints round tables and progress bars on one lazily created ``rich`` console."""

    def __init__(self) -> None:
        self._console: Any = None

    def get(self) -> Any:
        """The ``rich.console.Console`` (created on first use)."""
        if self._console is None:
            from rich.console import Console

            # a pipe or a CI log gets rich's 80 columns, which cuts the round table: give it room
            self._console = Console() if sys.stdout.isatty() else Console(width=132)
        return self._console

    def print_rows(self, rows: Sequence[Mapping[str, Any]], *, title: str) -> None:
        """Print one table row per round record."""
        from rich import box
        from rich.table import Table

        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column, _, _ in _COLUMNS:
            table.add_column(column, justify="right", min_width=len(column), no_wrap=True)
        for row in rows:
            table.add_row(
                *(
                    _fmt(row.get(key) if key in _OPTIONAL_KEYS else row[key], spec)
                    for _, key, spec in _COLUMNS
                )
            )
        self.get().print(table)

    def track(self, iterable: Iterable[Any], *, total: int, description: str, show: bool) -> Iterable[Any]:
        """``iterable`` wrapped in a progress bar when ``show``, else as is.

        The bar advances by the number of rows of each item: ``len(item[0])`` for tuples such as
        ``(ids, probs)``, else ``len(item)`` (1 for items without a length).
        """
        if not show:
            return _Passthrough(iterable)
        return self._progress(iterable, total, description)

    def _progress(self, iterable: Iterable[Any], total: int, description: str) -> Iterator[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.get(), transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in iterable:
                rows = item[0] if isinstance(item, tuple) and item else item
                try:
                    progress.advance(task, len(rows))
                except TypeError:
                    progress.advance(task, 1)
                yield item
