"""Unlabeled scores are row-wise: scoring in batches of any size equals one call, in bounded memory."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from activelab_lightning.scoring import ActiveLabEnsembleScorer, ActiveLabScorer, activelab_scores

NAN = float("nan")


def problem(seed: int = 0, n: int = 200, m: int = 5, k: int = 7, u: int = 1000):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, k, (n,), generator=g)
    labels = torch.where(
        torch.rand(n, m, generator=g) < 0.7, truth[:, None], torch.randint(0, k, (n, m), generator=g)
    )
    labels = labels.to(torch.float64).masked_fill(torch.rand(n, m, generator=g) < 0.5, NAN)
    labels[:, 0] = truth.to(torch.float64)
    logits = torch.randn(n + u, k, generator=g, dtype=torch.float64)
    probs = torch.softmax(logits, 1)
    return labels, probs[:n], probs[n:]


LABELS, PROBS, POOL = problem()
SCORER = ActiveLabScorer().fit(LABELS, PROBS)
ONE_CALL = SCORER.score_unlabeled(POOL)


def test_fitted_scorer_equals_the_one_shot_function() -> None:
    labeled, unlabeled = activelab_scores(LABELS, PROBS, POOL)
    assert torch.equal(SCORER.labeled_scores_, labeled)
    assert torch.equal(ONE_CALL, unlabeled)


@pytest.mark.parametrize("batch", [1, 7, 64, 999, 1000, 4096])
def test_fixed_batch_sizes_are_identical(batch: int) -> None:
    parts = [SCORER.score_unlabeled(POOL[i : i + batch]) for i in range(0, len(POOL), batch)]
    assert torch.equal(torch.cat(parts), ONE_CALL)


@given(st.lists(st.integers(1, 300), min_size=1, max_size=12))
@settings(max_examples=40, deadline=None)
def test_random_batch_boundaries_are_identical(sizes: list[int]) -> None:
    cuts = np.cumsum([0, *sizes])
    cuts = [int(c) for c in cuts if c < len(POOL)] + [len(POOL)]
    parts = [SCORER.score_unlabeled(POOL[a:b].numpy()) for a, b in itertools.pairwise(cuts)]
    assert torch.equal(torch.cat(parts), ONE_CALL)


def test_empty_batch() -> None:
    assert SCORER.score_unlabeled(POOL[:0]).shape == (0,)


def test_without_labeled_data() -> None:
    scorer = ActiveLabScorer().fit(None, None)
    assert scorer.labeled_scores_.shape == (0,) and scorer.temperature_ == 1.0
    expected = activelab_scores(None, None, POOL)[1]
    assert torch.equal(
        torch.cat([scorer.score_unlabeled(POOL[:3]), scorer.score_unlabeled(POOL[3:])]), expected
    )
    k = POOL.shape[1]
    assert torch.allclose(expected, (POOL.max(1).values + 1 / k) / 2)


def test_ensemble_scorer_batches_match_one_call_for_continuous_probabilities() -> None:
    members = torch.stack([PROBS, torch.softmax(torch.log(PROBS) * 1.3, 1)])
    pool = torch.stack([POOL, torch.softmax(torch.log(POOL) * 0.7, 1)])
    scorer = ActiveLabEnsembleScorer().fit(LABELS, members)
    once = scorer.score_unlabeled(pool)
    assert torch.equal(
        torch.cat([scorer.score_unlabeled(pool[:, i : i + 33]) for i in range(0, pool.shape[1], 33)]), once
    )
    assert len(scorer.temperature_) == 2 and len(scorer.model_weight_) == 2


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys, time, torch
    torch.set_num_threads(1)
    from activelab_lightning.scoring import ActiveLabScorer
    rows, k, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    g = torch.Generator().manual_seed(0)
    nan = float("nan")
    labels = torch.randint(0, k, (2000, 3), generator=g).double()
    labels[::2, 2] = nan
    scorer = ActiveLabScorer().fit(labels, torch.softmax(torch.randn(2000, k, generator=g, dtype=torch.float64), 1))
    def make_batch(i):
        x = torch.rand(batch, k, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        return x.div_(x.sum(1, keepdim=True))
    first = make_batch(0)  # baseline: the process holding one input batch, nothing scored yet
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del first
    t0, total, lowest = time.perf_counter(), 0, 2.0
    for i in range(rows // batch):
        scores = scorer.score_unlabeled(make_batch(i))
        total += scores.numel()
        lowest = min(lowest, float(scores.min()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows={total} extra_peak_mb={peak - base:.1f} seconds={time.perf_counter() - t0:.1f} min={lowest:.4f}")
    """
)


@pytest.mark.slow
def test_streaming_1e7_rows_in_bounded_memory(tmp_path) -> None:
    """1e7 x 100 unlabeled rows, 1e5 per batch: peak RSS grows < 300 MB above one batch."""
    script = tmp_path / "stream.py"
    script.write_text(MEMORY_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(script), "10000000", "100", "100000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    fields = dict(item.split("=") for item in out.stdout.split())
    assert int(fields["rows"]) == 10_000_000
    assert float(fields["extra_peak_mb"]) < 300, out.stdout
