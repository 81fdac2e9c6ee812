"""Fitted ActiveLab scorers: fit once on the labeled set, then score unlabeled batches.

The unlabeled score of one example depends only on its own row of predicted probabilities and
on a few numbers fixed by the labeled pass (temperature, model weight, mean annotator weight,
``K``), so a pool of any size can be scored batch by batch -- e.g. inside a prediction loop --
with results identical to scoring it in one call and memory bounded by one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import ArrayLike, TemperatureObjective, as_probabilities, check_objective, make_generator
from .activelab import (
    _Fit,
    _fit,
    _no_labels_fit,
    _score_unlabeled,
    _score_unlabeled_ensemble,
    _unlabeled_probs,
)
from .crowdlab import CrowdlabResult

__all__ = ["ActiveLabEnsembleScorer", "ActiveLabScorer"]


class _FittedScorer:
    _ndim = 2

    def __init__(
        self,
        *,
        temperature_objective: TemperatureObjective = "class-position",
        generator: torch.Generator | int | None = None,
    ) -> None:
        self.temperature_objective = check_objective(temperature_objective)
        self.generator = make_generator(generator)
        self._fit: _Fit | None = None

    def _fitted(self) -> _Fit:
        if self._fit is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted; call .fit(labels, pred_probs) first "
                "(or .fit(None, None) to score without labeled data)."
            )
        return self._fit

    @property
    def labeled_scores_(self) -> Tensor:
        """``(N,)`` ActiveLab scores of the labeled examples (empty if fitted without labels)."""
        return self._fitted().labeled_scores

    @property
    def mean_annotator_weight_(self) -> float:
        """``w̄``, the mean annotator weight (1 in the single-label branch / without labels)."""
        return self._fitted().mean_annotator_weight

    @property
    def num_classes_(self) -> int | None:
        """``K`` of the labeled pred_probs (None if fitted without labels)."""
        return self._fitted().num_classes

    @property
    def crowdlab_(self) -> CrowdlabResult | None:
        """The CROWDLAB result of the labeled pass (None in the single-label branch)."""
        return self._fitted().crowdlab

    @property
    def single_label_(self) -> bool:
        """True if every labeled example had exactly one label (no temperature, unit weights)."""
        return self._fitted().single_label


class ActiveLabScorer(_FittedScorer):
    """ActiveLab for one model, fitted on the labeled set, scoring unlabeled data in batches.

    Args:
        temperature_objective: ``"class-position"`` (default) or ``"cleanlab-2.9"``.
        generator: Seed/generator for random majority-vote tie-breaks (default seed 0).

    Attributes (after :meth:`fit`): ``labeled_scores_`` ``(N,)``, ``temperature_``,
    ``model_weight_``, ``mean_annotator_weight_``, ``num_classes_``, ``crowdlab_``,
    ``single_label_``.

    Example::

        >>> import torch
        >>> nan = float("nan")
        >>> labels = torch.tensor([[0., 0., 1.], [1., nan, 1.], [0., 1., nan]])
        >>> probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
        >>> scorer = ActiveLabScorer().fit(labels, probs)
        >>> pool = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4]])
        >>> torch.equal(torch.cat([scorer.score_unlabeled(pool[:1]), scorer.score_unlabeled(pool[1:])]),
        ...             scorer.score_unlabeled(pool))
        True
    """

    def fit(self, labels: ArrayLike | None, pred_probs: ArrayLike | None) -> ActiveLabScorer:
        """Run the labeled pass: temperature search, CROWDLAB, labeled scores.

        Args:
            labels: ``(N, M)`` class indices, NaN for missing; None together with
                ``pred_probs=None`` means "no labeled data" (``T = w_M = w̄ = 1``).
            pred_probs: ``(N, K)`` out-of-sample predicted probabilities of the labeled examples.

        Returns:
            ``self``.
        """
        if labels is None and pred_probs is None:
            self._fit = _no_labels_fit(1)
            return self
        if pred_probs is None:
            raise ValueError(
                "pred_probs is None but labels were given; pass the labeled examples' (N, K) "
                "pred_probs (or labels=None and pred_probs=None to fit without labeled data)."
            )
        probs = as_probabilities(pred_probs, "pred_probs")
        self._fit = _fit(labels, probs[None], self.temperature_objective, self.generator)
        return self

    @property
    def temperature_(self) -> float:
        """The temperature ``T*`` chosen on the labeled set (1 in the single-label branch)."""
        return self._fitted().temperature[0]

    @property
    def model_weight_(self) -> float:
        """The model weight ``w_M`` (1 in the single-label branch / without labels)."""
        return self._fitted().model_weight[0]

    def score_unlabeled(self, pred_probs_unlabeled: ArrayLike) -> Tensor:
        """Scores of a batch of unlabeled examples (row-wise: batching never changes them).

        Args:
            pred_probs_unlabeled: ``(B, K)`` predicted probabilities (``B`` may be 0).

        Returns:
            ``(B,)`` scores, comparable with :attr:`labeled_scores_`.
        """
        fit = self._fitted()
        q = _unlabeled_probs(pred_probs_unlabeled, fit, 2, check_values=False)
        return _score_unlabeled(fit, q, validate_as="pred_probs_unlabeled")


class ActiveLabEnsembleScorer(_FittedScorer):
    """ActiveLab for an ensemble of ``P`` models, fitted on the labeled set.

    Batch behaviour: an unlabeled example is scored at the majority vote of the members'
    predicted classes. The vote is row-wise unless the members' votes are tied *and* their
    mean probabilities are exactly tied too; only such rows reach tie-breaks 2-4 of
    :func:`majority_vote`, which use statistics of the batch passed in (and the scorer's
    generator). For continuous probabilities this (almost) never happens, so batch scores equal
    one-call scores; with exact ties they can depend on the batch composition.

    Example::

        >>> import torch
        >>> labels = torch.tensor([[0., 0.], [1., 0.], [1., 1.]])
        >>> probs = torch.tensor([[[.8, .2], [.4, .6], [.3, .7]], [[.6, .4], [.5, .5], [.2, .8]]])
        >>> scorer = ActiveLabEnsembleScorer().fit(labels, probs)
        >>> scorer.score_unlabeled(probs[:, :2]).shape
        torch.Size([2])
    """

    def fit(self, labels: ArrayLike | None, pred_probs: ArrayLike | None) -> ActiveLabEnsembleScorer:
        """Labeled pass with ``(P, N, K)`` pred_probs (per-member temperatures and weights).

        ``fit(None, None)`` means "no labeled data" (``T = w_M = w̄ = 1``); ``P`` is then taken
        from the first unlabeled batch.
        """
        if labels is None and pred_probs is None:
            self._fit = _no_labels_fit(0)
            return self
        if pred_probs is None:
            raise ValueError(
                "pred_probs is None but labels were given; pass the labeled examples' (P, N, K) "
                "pred_probs (or labels=None and pred_probs=None to fit without labeled data)."
            )
        probs = as_probabilities(pred_probs, "pred_probs", ndim=3)
        self._fit = _fit(labels, probs, self.temperature_objective, self.generator)
        return self

    @property
    def temperature_(self) -> tuple[float, ...]:
        """Per-member temperatures ``(P,)``."""
        return self._fitted().temperature

    @property
    def model_weight_(self) -> tuple[float, ...]:
        """Per-member model weights ``(P,)``."""
        return self._fitted().model_weight

    def score_unlabeled(self, pred_probs_unlabeled: ArrayLike) -> Tensor:
        """Scores of a batch of unlabeled examples, ``(P, B, K)`` -> ``(B,)``."""
        fit = self._fitted()
        if not fit.model_weight:  # fitted without labeled data: P comes from the first batch
            q = as_probabilities(pred_probs_unlabeled, "pred_probs_unlabeled", ndim=3, allow_empty=True)
            self._fit = fit = _no_labels_fit(q.shape[0])
            return _score_unlabeled_ensemble(fit, q, self.generator)
        q = _unlabeled_probs(pred_probs_unlabeled, fit, 3, len(fit.model_weight))
        return _score_unlabeled_ensemble(fit, q, self.generator)
