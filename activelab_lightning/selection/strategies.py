"""Acquisition strategies: how the labeled and unlabeled pools are scored (lower = label next).

A :class:`Strategy` is fitted on the labeled pool (:meth:`Strategy.fit` → labeled scores, i.e.
the value of one more label = a re-label) and then scores the unlabeled pool one batch at a time
(:meth:`Strategy.score_unlabeled`), so the unlabeled pool never has to be held in memory. The
registry (:func:`register_strategy`, :func:`get_strategy`, :func:`available_strategies`) maps the
names the callback and the configs accept to classes.

Example::

    >>> import torch
    >>> from activelab_lightning.selection import LowestK
    >>> ctx = ScoringContext(labels=torch.tensor([[0.0, float("nan")], [1.0, 1.0]]),
    ...                      labeled_ids=torch.tensor([4, 9]), num_classes=2,
    ...                      pred_probs=torch.tensor([[0.6, 0.4], [0.1, 0.9]], dtype=torch.float64))
    >>> strategy = get_strategy("least_confidence")
    >>> top = LowestK(2)
    >>> top.update(ctx.labeled_ids, strategy.fit(ctx))
    >>> top.update(torch.tensor([0, 1]), strategy.score_unlabeled(
    ...     torch.tensor([0, 1]), torch.tensor([[0.5, 0.5], [0.99, 0.01]], dtype=torch.float64)))
    >>> top.result()[0].tolist()
    [0, 4]
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import torch

from activelab_lightning.scoring import ActiveLabEnsembleScorer, ActiveLabScorer, TemperatureObjective
from activelab_lightning.scoring.baselines import (
    disagreement_scores,
    entropy_scores,
    good_random_scores,
    least_confidence_scores,
    margin_scores,
    random_scores,
)

__all__ = [
    "ScoringContext",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "register_strategy",
]

StrategyInput = Literal["none", "probs", "ensemble"]


# --------------------------------------------------------------------------- context
@dataclass
class ScoringContext:
    """What a strategy may look at when it scores the labeled pool.

    Args:
        labels: ``(n, M)`` float64 label matrix of the labeled pool, NaN = missing; row ``i``
            belongs to ``labeled_ids[i]``.
        labeled_ids: ``(n,)`` int64 example ids of the labeled pool.
        num_classes: ``K``.
        pred_probs: ``(n, K)`` model probabilities of the labeled pool (ideally out-of-sample).
        ensemble_pred_probs: ``(P, n, K)`` probabilities of ``P`` models, for ensemble strategies.
        generator: Seeded generator for random strategies (never the global RNG).
        temperature_objective: ActiveLab's temperature objective: ``"class-position"`` (each
            class's count at its own position, the paper) or ``"cleanlab-2.9"`` (bit-compatible).
    """

    labels: torch.Tensor
    labeled_ids: torch.Tensor
    num_classes: int
    pred_probs: torch.Tensor | None = None
    ensemble_pred_probs: torch.Tensor | None = None
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    temperature_objective: TemperatureObjective = "class-position"

    @property
    def label_counts(self) -> torch.Tensor:
        """``(n,)`` int64: labels per labeled example."""
        return (~torch.isnan(self.labels)).sum(dim=1)


# --------------------------------------------------------------------------- strategies
class Strategy(abc.ABC):
    """An acquisition strategy: labeled scores from a context, then unlabeled scores per batch.

    Subclasses set :attr:`name` and :attr:`input` (what :meth:`score_unlabeled` receives:
    ``"none"`` → ``probs`` is ``None``, ``"probs"`` → ``(B, K)``, ``"ensemble"`` → ``(P, B, K)``)
    and :attr:`streaming` (``False`` if the unlabeled pool must be scored in one call).
    A fresh instance is used for every acquisition.
    """

    name: ClassVar[str] = ""
    input: ClassVar[StrategyInput] = "probs"
    streaming: ClassVar[bool] = True

    def __init__(self) -> None:
        self._ctx: ScoringContext | None = None

    @abc.abstractmethod
    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        """Fit on the labeled pool; return its ``(n,)`` float64 scores (lower = re-label next)."""

    @abc.abstractmethod
    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        """Score one batch of the unlabeled pool: ``(B,)`` float64 (lower = label next)."""

    def diagnostics(self) -> dict[str, float]:
        """Scalars worth reporting after :meth:`fit` (e.g. the temperature); empty by default."""
        return {}

    @property
    def ctx(self) -> ScoringContext:
        if self._ctx is None:
            raise RuntimeError(f"Strategy {self.name!r} was used before `fit(ctx)`; call `fit` first.")
        return self._ctx

    def _need(self, ctx: ScoringContext, attribute: str) -> torch.Tensor:
        value = getattr(ctx, attribute)
        if value is None:
            hint = (
                "train an ensemble (e.g. `ActiveLearningLoop(cv_folds=K)`) or pass `ensemble=[...]` to "
                "`ActiveLabCallback.acquire`"
                if attribute == "ensemble_pred_probs"
                else "pass the labeled pool's pred_probs"
            )
            raise ValueError(f"Strategy {self.name!r} needs `{attribute}` but got None: {hint}.")
        return value


S = TypeVar("S", bound=type[Strategy])
_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[S], S]:
    """Class decorator adding a :class:`Strategy` subclass to the registry under ``name``.

    Example::

        >>> @register_strategy("lowest_id_first")
        ... class LowestIdFirst(Strategy):
        ...     input = "none"
        ...     def fit(self, ctx):
        ...         self._ctx = ctx
        ...         return ctx.labeled_ids.to(torch.float64)
        ...     def score_unlabeled(self, ids, probs):
        ...         return ids.to(torch.float64)
        >>> "lowest_id_first" in available_strategies()
        True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected `name` to be a non-empty string, but got {name!r}.")

    def decorator(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise TypeError(f"@register_strategy({name!r}) expects a Strategy subclass, but got {cls!r}.")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A strategy named {name!r} is already registered ({_REGISTRY[name].__name__}).")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_strategies() -> tuple[str, ...]:
    """Names of the registered strategies, sorted."""
    return tuple(sorted(_REGISTRY))


def get_strategy(name: str | Strategy, **kwargs: Any) -> Strategy:
    """A fresh instance of the strategy registered as ``name`` (an instance is passed through).

    Raises:
        ValueError: If no strategy has that name; the message lists the valid names.
    """
    if isinstance(name, Strategy):
        return name
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"Unknown acquisition strategy {name!r}. Valid strategies: {', '.join(available_strategies())} "
            f"(or register your own with `@register_strategy(name)`)."
        )
    return cls(**kwargs)


class _ActiveLabBase(Strategy):
    """Shared by the single-model and ensemble ActiveLab strategies."""

    def _fit_scorer(self, ctx: ScoringContext, scorer: Any, probs: torch.Tensor) -> torch.Tensor:
        self._ctx = ctx
        if ctx.labels.shape[0] == 0:  # cold start: T = w_M = mean annotator weight = 1 (spec §6.3)
            self._scorer = scorer.fit(None, None)
            return torch.zeros(0, dtype=torch.float64)
        self._scorer = scorer.fit(ctx.labels, probs)
        return self._scorer.labeled_scores_.to(torch.float64)

    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        assert probs is not None
        return self._scorer.score_unlabeled(probs).to(torch.float64)

    def diagnostics(self) -> dict[str, float]:
        scorer = getattr(self, "_scorer", None)
        if scorer is None or self.ctx.labels.shape[0] == 0:
            return {}
        out = {}
        for key, attr in (
            ("temperature", "temperature_"),
            ("model_weight", "model_weight_"),
            ("mean_annotator_weight", "mean_annotator_weight_"),
        ):
            value = getattr(scorer, attr, None)
            if value is not None:
                out[key] = float(torch.as_tensor(value, dtype=torch.float64).mean())
        return out


@register_strategy("activelab")
class ActiveLabStrategy(_ActiveLabBase):
    """ActiveLab (Goh & Mueller, 2023): CROWDLAB-weighted label quality vs. model confidence.

    The unlabeled pool is streamed: its scores are row-wise once the labeled pass is done.
    """

    input = "probs"

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        scorer = ActiveLabScorer(temperature_objective=ctx.temperature_objective, generator=ctx.generator)
        return self._fit_scorer(ctx, scorer, self._need(ctx, "pred_probs"))


@register_strategy("activelab_ensemble")
class ActiveLabEnsembleStrategy(_ActiveLabBase):
    """ActiveLab with ``P`` models. Not streamed: the members' majority vote on the unlabeled pool
    breaks exact ties with pool-wide statistics (spec §8), so the pool is scored in one call."""

    input = "ensemble"
    streaming = False

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        scorer = ActiveLabEnsembleScorer(
            temperature_objective=ctx.temperature_objective, generator=ctx.generator
        )
        return self._fit_scorer(ctx, scorer, self._need(ctx, "ensemble_pred_probs"))


@register_strategy("random")
class RandomStrategy(Strategy):
    """Uniform random scores (the paper's ``random`` baseline)."""

    input = "none"

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        self._ctx = ctx
        return random_scores(int(ctx.labeled_ids.numel()), generator=ctx.generator)

    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        return random_scores(int(ids.numel()), generator=self.ctx.generator)


@register_strategy("good_random")
class GoodRandomStrategy(Strategy):
    """Random, but examples with fewer labels first (the paper's ``good_random`` baseline)."""

    input = "none"

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        self._ctx = ctx
        return good_random_scores(ctx.label_counts, generator=ctx.generator)

    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        return random_scores(int(ids.numel()), generator=self.ctx.generator)


class _ModelOnlyStrategy(Strategy):
    """Scores that look at one model's probabilities only (labeled and unlabeled alike)."""

    score_fn: Callable[[torch.Tensor], torch.Tensor]

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        self._ctx = ctx
        return self.score_fn(self._need(ctx, "pred_probs"))

    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        assert probs is not None
        return self.score_fn(probs)


@register_strategy("entropy")
class EntropyStrategy(_ModelOnlyStrategy):
    """Negative normalized entropy of the model's prediction."""

    score_fn = staticmethod(entropy_scores)


@register_strategy("least_confidence")
class LeastConfidenceStrategy(_ModelOnlyStrategy):
    """``-(1 - max_k p_k)`` (the paper's ``uncertainty``)."""

    score_fn = staticmethod(least_confidence_scores)


@register_strategy("margin")
class MarginStrategy(_ModelOnlyStrategy):
    """Difference of the two largest class probabilities."""

    score_fn = staticmethod(margin_scores)


@register_strategy("disagreement")
class DisagreementStrategy(Strategy):
    """Query-by-committee: the ensemble members' disagreement (needs ``P`` models)."""

    input = "ensemble"

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        self._ctx = ctx
        return disagreement_scores(self._need(ctx, "ensemble_pred_probs"))

    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        assert probs is not None
        return disagreement_scores(probs)
