"""The scoring benchmark runs end to end in quick mode and ours agrees with cleanlab 2.9.0 to 1e-9."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scoring.py"
ROW = re.compile(
    r"^\s*(?P<n>\S+)\s+(?P<m>\S+)\s+(?P<k>\d+)\s+(?P<u>\d+)\s+(?P<theirs>[\d.]+)\s+(?P<ours>[\d.]+)\s+"
    r"(?P<ratio>[\d.]+|inf)x\s+(?P<diff>\S+)\s*$"
)


@pytest.mark.slow
def test_quick_benchmark_runs_and_matches_cleanlab() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--unlabeled-only", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("# python") and "cleanlab 2.9.0" in line for line in lines), proc.stdout
    rows = [match for line in lines if (match := ROW.match(line))]
    grid_rows = [r for r in rows if r["n"] != "stream"]
    stream_rows = [r for r in rows if r["n"] == "stream"]
    assert len(grid_rows) == 8, proc.stdout  # quick grid: 2 N x 2 M x 2 K
    assert len(stream_rows) == 2, proc.stdout  # one per K
    for row in rows:
        assert float(row["diff"]) <= 1e-9, row.group(0)
        assert float(row["ours"]) > 0, row.group(0)
    assert re.match(r"min ratio at N = 1e3: [\d.]+x \(M = \d+, K = \d+\); (meets|MISSES)", lines[-1]), lines[
        -1
    ]
