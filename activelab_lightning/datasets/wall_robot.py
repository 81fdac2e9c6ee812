"""The UCI Wall-Following Robot Navigation data (bundled): loader, class names, citation.

Data: Freire, Barreto, Veloso & Varela (2009), "Wall-Following Robot Navigation Data", UCI Machine
Learning Repository, https://doi.org/10.24432/C57C8W, licensed CC BY 4.0 (see
``datasets/data/README.md``). 5,456 time steps of a SCITOS G5 robot following a wall; 4 classes
of movement. Two versions ship with the package: 4 "simplified distances" (front, left, right,
back; the version the paper used) and the 24 raw ultrasound readings.

The paper's setup on this data lives in :mod:`activelab_lightning.datasets.wall_robot_paper`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from importlib import resources

import torch

__all__ = ["CITATION", "CLASS_NAMES", "load_wall_robot", "wall_robot_feature_names"]

#: Class index -> name (the UCI / OpenML 1526 order, ``Class - 1``).
CLASS_NAMES: tuple[str, ...] = ("Move-Forward", "Sharp-Right-Turn", "Slight-Left-Turn", "Slight-Right-Turn")
#: How to cite the data (CC BY 4.0 requires attribution).
CITATION = (
    "Freire, A., Veloso, M., & Barreto, G. (2010). Wall-Following Robot Navigation Data [Dataset]. "
    "UCI Machine Learning Repository. https://doi.org/10.24432/C57C8W"
)

_FEATURES = {
    4: ("sd_front", "sd_left", "sd_right", "sd_back"),
    24: tuple(f"us{i}" for i in range(1, 25)),
}
_NUM_ROWS = 5456


def wall_robot_feature_names(sensors: int = 4) -> tuple[str, ...]:
    """Column names of the ``sensors``-feature version (4 or 24).

    Example::

        >>> wall_robot_feature_names(4)
        ('sd_front', 'sd_left', 'sd_right', 'sd_back')
    """
    if sensors not in _FEATURES:
        raise ValueError(f"sensors must be 4 or 24 (the two bundled versions), got {sensors!r}")
    return _FEATURES[sensors]


@functools.lru_cache(maxsize=2)
def _read(sensors: int) -> tuple[torch.Tensor, torch.Tensor]:
    names = wall_robot_feature_names(sensors)
    raw = (
        resources.files("activelab_lightning.datasets")
        .joinpath(f"data/wall_robot_{sensors}.csv.gz")
        .read_bytes()
    )
    reader = csv.reader(io.StringIO(gzip.decompress(raw).decode("utf-8")))
    header = next(reader)
    expected = ["row", *names, "label_name", "label"]
    if header != expected:
        raise RuntimeError(
            f"bundled wall_robot_{sensors}.csv.gz has columns {header}, expected {expected}; "
            "the package data is damaged, reinstall activelab-lightning"
        )
    rows = list(reader)
    x = torch.tensor([[float(v) for v in r[1:-2]] for r in rows], dtype=torch.float32)
    y = torch.tensor([int(r[-1]) for r in rows], dtype=torch.int64)
    bad = [r for r in rows if CLASS_NAMES[int(r[-1])] != r[-2]]
    if x.shape != (_NUM_ROWS, sensors) or bad:
        raise RuntimeError(
            f"bundled wall_robot_{sensors}.csv.gz is damaged (shape {tuple(x.shape)}); reinstall"
        )
    return x, y


def load_wall_robot(sensors: int = 4) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Load the full bundled Wall Robot data.

    Args:
        sensors: 4 (simplified distances, the paper's version) or 24 (raw ultrasound readings).

    Returns:
        ``(features, labels, class_names)``: float32 ``(5456, sensors)`` in the UCI row order,
        int64 ``(5456,)`` class indices (counts 2205 / 2097 / 328 / 826), and :data:`CLASS_NAMES`.

    Example::

        >>> x, y, names = load_wall_robot(4)
        >>> tuple(x.shape), int(y[0]), names[3]
        ((5456, 4), 3, 'Slight-Right-Turn')
    """
    x, y = _read(int(sensors) if not isinstance(sensors, bool) else sensors)
    return x.clone(), y.clone(), CLASS_NAMES
