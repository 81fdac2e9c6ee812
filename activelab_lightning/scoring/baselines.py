"""Baseline acquisition scores of the ActiveLab paper's comparison (Goh & Mueller, 2023).

Every function returns one float64 score per example on the same scale as ActiveLab:
**lower = label next**, so labeled and unlabeled examples can be ranked together and the
lowest-``k`` chosen. Inputs may be torch tensors (any device; the result stays there), numpy
arrays or nested lists (the result is a CPU tensor); they are checked by the package's shared
validation (:mod:`activelab_lightning.scoring._validation`), so bad input fails with the same
messages as the ActiveLab functions.

=====================================  =================================================  ==============
function                               score                                              range
=====================================  =================================================  ==============
:func:`random_scores`                  ``U(0, 1)``                                        ``[0, 1)``
:func:`good_random_scores`             ``U(0, 1) + number of labels``                     ``[0, inf)``
:func:`entropy_scores`                 ``-H(p) / ln K``                                   ``[-1, 0]``
:func:`least_confidence_scores`        ``-(1 - max_k p_k)``                               ``[-(1-1/K), 0]``
:func:`margin_scores`                  ``p_(1) - p_(2)``                                  ``[0, 1]``
:func:`disagreement_scores`            ``-mean_m CE(mean_p, p_m) / ln K`` (or KL)         ``<= 0``
=====================================  =================================================  ==============

None of these looks at the annotators' labels except :func:`good_random_scores` (through the
label counts); they are the "model-only" baselines that ActiveLab is compared against.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from ._validation import ArrayLike, as_probabilities, as_tensor, make_generator

__all__ = [
    "disagreement_scores",
    "entropy_scores",
    "good_random_scores",
    "least_confidence_scores",
    "margin_scores",
    "random_scores",
]

DisagreementMeasure = Literal["cross_entropy", "kl"]

#: Clip applied to each member's probabilities inside the paper's soft cross-entropy.
_PAPER_MIN_PROB = 1e-6
_DISAGREEMENT_MEASURES = ("cross_entropy", "kl")


# --------------------------------------------------------------------------- validation helpers
def _probabilities(x: ArrayLike, name: str, *, ndim: int) -> torch.Tensor:
    """Float64 probabilities of shape ``(N, K)`` / ``(P, N, K)`` via the package's shared checks."""
    t = as_tensor(x, name)
    if t.ndim != ndim:
        want = "(N, K)" if ndim == 2 else "(P, N, K)"
        if ndim == 2 and t.ndim == 3:
            hint = " For a (P, N, K) ensemble use `disagreement_scores`."
        elif ndim == 3 and t.ndim == 2:
            hint = " For a single model use `entropy_scores`, or add a leading axis: `pred_probs[None]`."
        else:
            hint = " Pass one row of class probabilities per example."
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(t.shape)}.{hint}")
    return as_probabilities(t, name, ndim=ndim, allow_empty=True, dtype=torch.float64)


def _check_generator(generator: object) -> torch.Generator:
    if isinstance(generator, bool) or not isinstance(generator, (torch.Generator, int)):
        raise TypeError(
            f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}. "
            f"Pass `torch.Generator().manual_seed(seed)` (or the seed); the global RNG is never used."
        )
    return make_generator(generator)


# --------------------------------------------------------------------------- random baselines
def random_scores(num_examples: int, *, generator: torch.Generator | int) -> torch.Tensor:
    """Uniform random scores: the ``random`` baseline (every example equally likely to be chosen).

    Args:
        num_examples: Number of examples ``N`` to score (labeled and unlabeled alike).
        generator: Seeded generator the draws come from, or an int seed for a fresh CPU one (never
            the global RNG); the scores are created on the generator's device.

    Returns:
        Tensor of shape ``(N,)``, float64, i.i.d. ``U(0, 1)``.

    Raises:
        TypeError: If ``num_examples`` is not an int or ``generator`` is neither a
            ``torch.Generator`` nor an int.
        ValueError: If ``num_examples`` is negative.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> random_scores(3, generator=g).shape
        torch.Size([3])
        >>> torch.equal(random_scores(3, generator=torch.Generator().manual_seed(0)),
        ...             random_scores(3, generator=torch.Generator().manual_seed(0)))
        True
    """
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
        raise TypeError(f"num_examples must be an int, got {type(num_examples).__name__}.")
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    generator = _check_generator(generator)
    return torch.rand(int(num_examples), generator=generator, dtype=torch.float64, device=generator.device)


def good_random_scores(num_annotations: ArrayLike, *, generator: torch.Generator | int) -> torch.Tensor:
    """Random scores that prefer examples with few labels: the paper's ``good_random`` baseline.

    ``score_i = U_i + num_annotations_i`` with ``U_i ~ U(0, 1)``: every unlabeled example
    (``0 + U``) comes before every example with one label, which come before those with two, and
    so on; ties within a count are broken at random.

    Args:
        num_annotations: Shape ``(N,)``: how many labels each example already has (0 for an
            unlabeled example). Integer or integral float values, numpy or torch.
        generator: Seeded generator the draws come from, or an int seed for a fresh CPU one (never
            the global RNG).

    Returns:
        Tensor of shape ``(N,)``, float64, on the device of ``num_annotations``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``num_annotations`` is not 1-D or holds negative, non-integral or
            non-finite values.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> scores = good_random_scores(torch.tensor([2, 0, 1]), generator=g)
        >>> scores.argsort().tolist()
        [1, 2, 0]
    """
    counts = as_tensor(num_annotations, "num_annotations").to(torch.float64)
    if counts.ndim != 1:
        raise ValueError(
            f"num_annotations must have shape (N,), got shape {tuple(counts.shape)}. For an (N, M) "
            f"label matrix with NaN for missing, pass `(~labels.isnan()).sum(dim=1)`."
        )
    valid = torch.isfinite(counts) & (counts >= 0) & (counts == counts.round())
    if not bool(valid.all()):
        raise ValueError(
            f"num_annotations must hold non-negative integer label counts, got values such as "
            f"{counts[~valid][:5].tolist()}. Pass the number of labels per example, not the labels."
        )
    generator = _check_generator(generator)
    noise = torch.rand(counts.shape[0], generator=generator, dtype=torch.float64, device=generator.device)
    return noise.to(counts.device) + counts


# --------------------------------------------------------------------------- single-model uncertainty
def entropy_scores(pred_probs: ArrayLike) -> torch.Tensor:
    """Negative normalized entropy of the model's predictions: the paper's ``entropy`` baseline.

    ``score_i = sum_k p_ik ln p_ik / ln K`` (with ``0 ln 0 = 0``), i.e. ``-H(p_i) / ln K``: a
    uniform prediction scores ``-1`` (label next), a one-hot prediction ``0``.

    Args:
        pred_probs: Shape ``(N, K)``, ``K >= 2``: predicted class probabilities (rows sum to 1).

    Returns:
        Tensor of shape ``(N,)``, float64, in ``[-1, 0]``.

    Raises:
        TypeError: If ``pred_probs`` is not numeric (tensor, array or nested list).
        ValueError: If it is not ``(N, K)`` with ``K >= 2``, or its rows are not distributions.

    Example::

        >>> entropy_scores(torch.tensor([[0.5, 0.5], [1.0, 0.0]])).tolist()
        [-1.0, 0.0]
    """
    probs = _probabilities(pred_probs, "pred_probs", ndim=2)
    scores: torch.Tensor = torch.special.xlogy(probs, probs).sum(dim=1) / math.log(probs.shape[1])
    return scores


def least_confidence_scores(pred_probs: ArrayLike) -> torch.Tensor:
    """Least-confidence score, the paper's ``uncertainty`` baseline: ``-(1 - max_k p_ik)``.

    Args:
        pred_probs: Shape ``(N, K)``: predicted class probabilities (rows sum to 1).

    Returns:
        Tensor of shape ``(N,)``, float64, in ``[-(1 - 1/K), 0]``; the least confident
        prediction scores lowest.

    Raises:
        TypeError: If ``pred_probs`` is not numeric (tensor, array or nested list).
        ValueError: If it is not ``(N, K)`` or its rows are not distributions.

    Example::

        >>> least_confidence_scores(torch.tensor([[0.5, 0.25, 0.25], [0.75, 0.25, 0.0]])).tolist()
        [-0.5, -0.25]
    """
    probs = _probabilities(pred_probs, "pred_probs", ndim=2)
    return probs.amax(dim=1) - 1.0


def margin_scores(pred_probs: ArrayLike) -> torch.Tensor:
    """Margin between the two most likely classes: ``p_(1) - p_(2)`` (margin sampling).

    Not one of the paper's baselines, but the third classic uncertainty-sampling score; a small
    margin means the model hesitates between two classes, so it is labeled next.

    Args:
        pred_probs: Shape ``(N, K)``, ``K >= 2``: predicted class probabilities (rows sum to 1).

    Returns:
        Tensor of shape ``(N,)``, float64, in ``[0, 1]``.

    Raises:
        TypeError: If ``pred_probs`` is not numeric (tensor, array or nested list).
        ValueError: If it is not ``(N, K)`` with ``K >= 2``, or its rows are not distributions.

    Example::

        >>> margin_scores(torch.tensor([[0.5, 0.25, 0.25], [0.75, 0.25, 0.0]])).tolist()
        [0.25, 0.5]
    """
    probs = _probabilities(pred_probs, "pred_probs", ndim=2)
    top2 = probs.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


# --------------------------------------------------------------------------- committee
def disagreement_scores(
    pred_probs_ensemble: ArrayLike,
    *,
    measure: DisagreementMeasure = "cross_entropy",
) -> torch.Tensor:
    """Query-by-committee score of an ensemble of ``P`` models: the paper's ``disagreement`` baseline.

    With ``pbar_i = mean_m p_mi`` the committee's mean prediction:

    * ``measure="cross_entropy"`` (default, as in the paper's benchmark code): the **negative mean
      soft cross-entropy of each member against the ensemble mean**, normalized by ``ln K``,

      ``score_i = -mean_m [ -sum_k pbar_ik ln max(p_mik, 1e-6) ] / ln K``

      (members' probabilities clipped at ``1e-6`` as in the paper). Since
      ``CE(pbar, p_m) = H(pbar) + KL(pbar || p_m)``, this ranks by the mean prediction's
      entropy *plus* the members' disagreement; ``score <= 0``.
    * ``measure="kl"``: the pure disagreement term of McCallum & Nigam's "KL divergence to the
      mean", ``score_i = -mean_m KL(p_mi || pbar_i) / ln K = -(H(pbar_i) - mean_m H(p_mi)) / ln K``
      (the committee's generalized Jensen-Shannon divergence; no clipping needed). It is ``0``
      when all members agree, whatever their confidence, and lies in ``[-1, 0]``.

    Args:
        pred_probs_ensemble: Shape ``(P, N, K)``, ``P >= 1``, ``K >= 2``: predicted class
            probabilities of each committee member (rows sum to 1).
        measure: ``"cross_entropy"`` (the paper) or ``"kl"`` (see above).

    Returns:
        Tensor of shape ``(N,)``, float64; lower = more committee uncertainty = label next.

    Raises:
        TypeError: If ``pred_probs_ensemble`` is not numeric (tensor, array or nested list).
        ValueError: If it is not ``(P, N, K)`` with ``K >= 2``, its rows are not distributions,
            or ``measure`` is unknown.

    Example::

        >>> agree = [[0.5, 0.5], [0.5, 0.5]]          # two members, two classes
        >>> split = [[1.0, 0.0], [0.0, 1.0]]
        >>> ens = torch.tensor([[agree[0], split[0]], [agree[1], split[1]]])   # (P=2, N=2, K=2)
        >>> disagreement_scores(ens, measure="kl").tolist()
        [0.0, -1.0]
    """
    if measure not in _DISAGREEMENT_MEASURES:
        raise ValueError(f"measure must be one of {_DISAGREEMENT_MEASURES!r}, got {measure!r}.")
    probs = _probabilities(pred_probs_ensemble, "pred_probs_ensemble", ndim=3)
    log_k = math.log(probs.shape[2])
    mean = probs.mean(dim=0)  # (N, K)
    if measure == "cross_entropy":
        log_members = probs.clamp_min(_PAPER_MIN_PROB).log()  # (P, N, K)
        mean_cross_entropy = -(mean.unsqueeze(0) * log_members).sum(dim=2).mean(dim=0)
        return -mean_cross_entropy / log_k
    neg_entropy_of_mean = torch.special.xlogy(mean, mean).sum(dim=1)
    mean_neg_entropy = torch.special.xlogy(probs, probs).sum(dim=2).mean(dim=0)
    # -(H(mean) - mean H(p_m)) = -H(mean) + mean H(p_m); clamp float round-off above 0.
    scores: torch.Tensor = (neg_entropy_of_mean - mean_neg_entropy).clamp_max(0.0) / log_k
    return scores
