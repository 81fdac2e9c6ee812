"""The acquisition benchmark runs end to end in quick mode and ends with its ratio line."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_acquisition.py"
LAST_LINE = re.compile(r"^acquisition/bare_loop ratio: (?P<ratio>\d+\.\d+)$")


@pytest.mark.slow
def test_quick_acquisition_benchmark_prints_the_ratio_last() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    match = LAST_LINE.match(lines[-1])
    assert match, lines[-1]
    ratio = float(match["ratio"])
    assert math.isfinite(ratio) and ratio > 0
    # quick mode is dominated by fixed costs (labeled fit, store, refresh): only a loose bound here
    assert ratio < 20, proc.stdout
    assert any(line.startswith("requests answered and stored: 100") for line in lines), proc.stdout
    assert any(line.startswith("peak extra RSS during one acquisition") for line in lines), proc.stdout
