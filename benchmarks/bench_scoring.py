"""Speed and parity of ActiveLab scoring: ``activelab_lightning`` vs cleanlab 2.9.0, same inputs.

Runs ``cleanlab.multiannotator.get_active_learning_scores`` and our drop-in
``activelab_lightning.scoring.compat.get_active_learning_scores(..., temperature_objective="cleanlab-2.9")``
on identical synthetic problems in one process and prints one row per configuration as soon as
it finishes::

    python benchmarks/bench_scoring.py                  # full grid: N in {1e3,1e4,1e5}, M in {3,50}, K in {10,100}, U = 1e6
    python benchmarks/bench_scoring.py --quick          # small sizes, well under a minute
    python benchmarks/bench_scoring.py --unlabeled-only # + U = 1e6 streaming unlabeled rows (ActiveLabScorer)
    python benchmarks/bench_scoring.py --u 0            # labeled scoring alone (no unlabeled rows)

Synthetic data (as in the project's cleanlab timing study): true class uniform over K; M
annotators with accuracy U(0.6, 0.95), wrong labels uniform over the other classes; each label
missing with probability 0.6, then one label per row and one per annotator forced present;
``pred_probs = softmax(N(0, 1) + 2 on the true class)``, unlabeled ``softmax(N(0, 1))``, float64.

Timing: ours is the median of ``--repeats`` calls (numpy in, numpy out, conversions included);
cleanlab is timed once, or the median of three calls when one call takes under 2 s (always
once with ``--quick``). The numpy
global RNG is re-seeded before every call of either library (cleanlab's majority-vote
tie-breaks draw from it).
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid (N<=1e3, U=1e4), < 1 minute")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of ours per row (median)")
    parser.add_argument("--n", type=float, nargs="+", help="override the labeled sizes N")
    parser.add_argument("--m", type=int, nargs="+", help="override the annotator counts M")
    parser.add_argument("--k", type=int, nargs="+", help="override the class counts K")
    parser.add_argument(
        "--u",
        type=float,
        help="unlabeled rows added to every grid call (default: 1e6, the issue grid; 1e4 with --quick)",
    )
    parser.add_argument("--u-stream", type=float, help="unlabeled rows of the --unlabeled-only rows")
    parser.add_argument(
        "--unlabeled-only",
        action="store_true",
        help="also time streaming unlabeled scoring (ActiveLabScorer.score_unlabeled) of U rows per K",
    )
    parser.add_argument("--batch-size", type=int, default=65_536, help="rows per unlabeled batch")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # thread counts must be fixed before numpy / torch load their BLAS
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: ``u``: unlabeled rows added to every grid call (the issue's grid: U = 1e6 in every call, so
#: each timing covers the labeled pass plus scoring 1e6 unlabeled rows; ``--u 0`` times the
#: labeled pass alone). ``u_stream``: unlabeled rows of the ``--unlabeled-only`` streaming rows.
FULL_GRID = {
    "n": [1_000, 10_000, 100_000],
    "m": [3, 50],
    "k": [10, 100],
    "u": 1_000_000,
    "u_stream": 1_000_000,
}
QUICK_GRID = {"n": [300, 1_000], "m": [3, 10], "k": [5, 10], "u": 10_000, "u_stream": 10_000}
#: N of the labeled problem the scorer is fitted on for the streaming unlabeled rows.
UNLABELED_FIT_N = 1_000
UNLABELED_FIT_M = 3
TARGET_RATIO = 50.0


# --------------------------------------------------------------------------- data
@dataclass
class Problem:
    labels: np.ndarray  # (N, M) float64, NaN = missing
    pred_probs: np.ndarray  # (N, K) float64


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def make_problem(n: int, m: int, k: int, seed: int) -> Problem:
    """Synthetic multi-annotator problem (see the module docstring)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(k, size=n)
    accuracy = rng.uniform(0.6, 0.95, size=m)
    correct = rng.random((n, m)) < accuracy
    wrong = (true[:, None] + rng.integers(1, k, size=(n, m))) % k
    labels = np.where(correct, true[:, None], wrong).astype(np.float64)
    missing = rng.random((n, m)) < 0.6
    missing[np.arange(n), rng.integers(m, size=n)] = False  # >= 1 label per example
    missing[rng.integers(n, size=m), np.arange(m)] = False  # >= 1 label per annotator
    labels[missing] = np.nan
    logits = rng.standard_normal((n, k))
    logits[np.arange(n), true] += 2.0
    return Problem(labels=labels, pred_probs=_softmax(logits))


def make_unlabeled(u: int, k: int, seed: int) -> np.ndarray:
    """``(U, K)`` float64 softmax(N(0, 1)) pred_probs (no signal), generated in chunks."""
    rng = np.random.default_rng(seed + 1_000_003)
    out = np.empty((u, k), dtype=np.float64)
    for start in range(0, u, 100_000):
        stop = min(start + 100_000, u)
        out[start:stop] = _softmax(rng.standard_normal((stop - start, k)))
    return out


# --------------------------------------------------------------------------- timing
def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _timed(fn: Callable[[], Any], seed: int) -> tuple[float, Any]:
    np.random.seed(seed)
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def time_ours(fn: Callable[[], Any], repeats: int, seed: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(max(1, repeats)):
        t, out = _timed(fn, seed)
        times.append(t)
    return statistics.median(times), out


def time_cleanlab(fn: Callable[[], Any], seed: int, *, single: bool = False) -> tuple[float, Any]:
    """One call; the median of three when a call is short enough for timer noise to matter."""
    t, out = _timed(fn, seed)
    if t < 2.0 and not single:
        t = statistics.median([t] + [_timed(fn, seed)[0] for _ in range(2)])
    return t, out


def _max_abs_diff(theirs: tuple[Any, Any], ours: tuple[Any, Any]) -> float:
    diff = 0.0
    for a, b in zip(theirs, ours):
        a, b = _to_numpy(a).astype(np.float64), _to_numpy(b).astype(np.float64)
        if a.shape != b.shape:
            raise AssertionError(f"score shapes differ: cleanlab {a.shape} vs ours {b.shape}")
        if a.size:
            diff = max(diff, float(np.max(np.abs(a - b))))
    return diff


# --------------------------------------------------------------------------- printing
HEADER = (
    f"{'N':>7} {'M':>3} {'K':>4} {'U':>8} {'cleanlab s':>11} {'ours s':>9} {'ratio':>8} {'max abs diff':>13}"
)


def _row(n: int | str, m: int | str, k: int, u: int, t_theirs: float, t_ours: float, diff: float) -> str:
    ratio = t_theirs / t_ours if t_ours > 0 else float("inf")
    return f"{n!s:>7} {m!s:>3} {k:>4} {u:>8} {t_theirs:>11.3f} {t_ours:>9.4f} {ratio:>7.1f}x {diff:>13.2e}"


def print_environment(args: argparse.Namespace) -> None:
    import cleanlab

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    print(
        f"# python {platform.python_version()} | torch {torch.__version__} | numpy {np.__version__} | "
        f"cleanlab {cleanlab.__version__}"
    )
    print(
        f"# torch threads {torch.get_num_threads()} | OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} | "
        f"CPU {cpu} ({os.cpu_count()} logical cores) | {platform.platform()}"
    )
    print(
        f"# ours: median of {args.repeats} calls; cleanlab: 1 call{'' if args.quick else ' (median of 3 if < 2 s)'}; "
        f"ours = compat.get_active_learning_scores(temperature_objective='cleanlab-2.9')",
        flush=True,
    )


# --------------------------------------------------------------------------- benchmark
def run_grid(args: argparse.Namespace) -> list[tuple[int, int, int, float]]:
    from cleanlab.multiannotator import get_active_learning_scores as cleanlab_scores

    from activelab_lightning.scoring.compat import get_active_learning_scores as our_scores

    grid = QUICK_GRID if args.quick else FULL_GRID
    ns = [int(n) for n in (args.n or grid["n"])]
    ms, ks = args.m or grid["m"], args.k or grid["k"]
    u = int(args.u if args.u is not None else grid["u"])

    # Warm-up (torch lazy init, first-call allocations), not timed.
    warm = make_problem(200, 3, 4, args.seed)
    our_scores(
        warm.labels, warm.pred_probs, make_unlabeled(10, 4, args.seed), temperature_objective="cleanlab-2.9"
    )

    unlabeled = {k: (make_unlabeled(u, k, args.seed) if u else None) for k in ks}
    results = []
    print(HEADER, flush=True)
    for n in ns:
        for m in ms:
            for k in ks:
                prob = make_problem(n, m, k, args.seed)
                pp_u = unlabeled[k]
                t_theirs, theirs = time_cleanlab(
                    lambda prob=prob, pp_u=pp_u: cleanlab_scores(prob.labels, prob.pred_probs, pp_u),
                    args.seed,
                    single=args.quick,
                )
                t_ours, ours = time_ours(
                    lambda prob=prob, pp_u=pp_u: our_scores(
                        prob.labels, prob.pred_probs, pp_u, temperature_objective="cleanlab-2.9"
                    ),
                    args.repeats,
                    args.seed,
                )
                diff = _max_abs_diff(theirs, ours)
                results.append((n, m, k, t_theirs / t_ours))
                print(_row(n, m, k, u, t_theirs, t_ours, diff), flush=True)
    return results


def run_unlabeled(args: argparse.Namespace) -> None:
    """Streaming unlabeled rows: a scorer fitted on a small labeled problem scores U rows in batches.

    cleanlab has no streaming path, so its time is the increase of one
    ``get_active_learning_scores`` call when the U unlabeled rows are added to the same labeled
    problem (median of 3 labeled-only calls subtracted).
    """
    from cleanlab.multiannotator import get_active_learning_scores as cleanlab_scores

    from activelab_lightning.scoring import ActiveLabScorer

    grid = QUICK_GRID if args.quick else FULL_GRID
    ks = args.k or grid["k"]
    u = int(args.u_stream if args.u_stream is not None else grid["u_stream"])
    print(
        f"# unlabeled only: scorer fitted on N={UNLABELED_FIT_N}, M={UNLABELED_FIT_M}; "
        f"ours streams batches of {args.batch_size}; cleanlab = (labeled + U) - labeled",
        flush=True,
    )
    print(HEADER, flush=True)
    for k in ks:
        prob = make_problem(UNLABELED_FIT_N, UNLABELED_FIT_M, k, args.seed)
        pp_u = make_unlabeled(u, k, args.seed)
        t_lab = statistics.median(
            _timed(lambda prob=prob: cleanlab_scores(prob.labels, prob.pred_probs), args.seed)[0]
            for _ in range(3)
        )
        t_all, (_, theirs_u) = _timed(
            lambda prob=prob, pp_u=pp_u: cleanlab_scores(prob.labels, prob.pred_probs, pp_u), args.seed
        )
        np.random.seed(args.seed)
        scorer = ActiveLabScorer(temperature_objective="cleanlab-2.9").fit(prob.labels, prob.pred_probs)
        pp_u_t = torch.from_numpy(pp_u)

        def stream(scorer: ActiveLabScorer = scorer, pp_u_t: torch.Tensor = pp_u_t) -> torch.Tensor:
            out = torch.empty(u, dtype=torch.float64)
            for start in range(0, u, args.batch_size):
                stop = min(start + args.batch_size, u)
                out[start:stop] = torch.as_tensor(scorer.score_unlabeled(pp_u_t[start:stop]))
            return out

        t_ours, ours_u = time_ours(stream, args.repeats, args.seed)
        diff = _max_abs_diff((theirs_u,), (ours_u,))
        print(_row("stream", "-", k, u, max(t_all - t_lab, 0.0), t_ours, diff), flush=True)


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    print_environment(args)
    results = run_grid(args)
    if args.unlabeled_only:
        run_unlabeled(args)
    largest = max(n for n, *_ in results)
    n_str = f"{largest:.0e}".replace("e+0", "e")
    worst = min((r for r in results if r[0] == largest), key=lambda r: r[3])
    verdict = "meets" if worst[3] >= TARGET_RATIO else "MISSES"
    print(
        f"min ratio at N = {n_str}: {worst[3]:.1f}x (M = {worst[1]}, K = {worst[2]}); "
        f"{verdict} the >= {TARGET_RATIO:.0f}x target",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
