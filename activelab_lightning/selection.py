"""From scores to label requests: acquisition strategies, lowest-``k`` selection, requests.

One acquisition scores the **labeled** pool (one more label = a re-label) and the **unlabeled**
pool (a first label) on one scale, *lower = label next*, and asks for the ``k`` lowest over
their union. This module holds the three pieces of that step, all free of Lightning:

* a **strategy registry** (:func:`register_strategy`, :func:`get_strategy`,
  :func:`available_strategies`): a :class:`Strategy` is fitted on the labeled pool
  (:meth:`Strategy.fit` → labeled scores) and then scores the unlabeled pool one batch at a time
  (:meth:`Strategy.score_unlabeled`), so the unlabeled pool never has to be held in memory;
* :func:`select_lowest` and its streaming twin :class:`LowestK`: the ``k`` lowest scores with a
  deterministic tie-break by example id (float64), independent of how the pool was batched;
* :func:`make_requests`: turns the selection into :class:`~activelab_lightning.records.LabelRequest`
  objects (``"new"`` vs ``"relabel"``, with the annotators who already labeled each example).

Example::

    >>> import torch
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

import torch

from activelab_lightning.records import LabelRequest
from activelab_lightning.scoring import ActiveLabEnsembleScorer, ActiveLabScorer
from activelab_lightning.scoring.baselines import (
    disagreement_scores,
    entropy_scores,
    good_random_scores,
    least_confidence_scores,
    margin_scores,
    random_scores,
)

__all__ = [
    "LowestK",
    "ScoringContext",
    "Strategy",
    "available_strategies",
    "get_strategy",
    "make_requests",
    "register_strategy",
    "round_seed",
    "select_lowest",
    "subsample_ids",
]

StrategyInput = Literal["none", "probs", "ensemble"]
TemperatureObjective = Literal["class-position", "cleanlab-2.9"]

_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------- seeds
def round_seed(base_seed: int, round: int) -> int:
    """The seed of one round, a fixed function of ``(base_seed, round)``.

    A resumed run therefore draws exactly what the interrupted one drew (random scores, pool
    subsamples, simulated annotators), whatever happened in between. SplitMix64 finaliser, kept
    in ``[0, 2**63)`` so it fits ``torch.Generator.manual_seed`` and SQLite integers.

    Example::

        >>> round_seed(0, 3) == round_seed(0, 3) != round_seed(0, 4)
        True
    """
    if round < 0:
        raise ValueError(f"Expected `round` to be >= 0, but got {round}.")
    z = (int(base_seed) * 0x9E3779B97F4A7C15 + (int(round) + 1) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def subsample_ids(ids: torch.Tensor, size: int, *, generator: torch.Generator) -> torch.Tensor:
    """A seeded random subset of ``size`` example ids, in ascending order (all of them if fewer).

    Example::

        >>> subsample_ids(torch.arange(10), 3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3])
    """
    if size <= 0:
        raise ValueError(f"Expected `size` to be > 0, but got {size}.")
    if ids.numel() <= size:
        return ids
    keep = torch.randperm(ids.numel(), generator=generator)[:size]
    return ids[keep].sort().values


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

    score_fn: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    def fit(self, ctx: ScoringContext) -> torch.Tensor:
        self._ctx = ctx
        return type(self).score_fn(self._need(ctx, "pred_probs"))

    def score_unlabeled(self, ids: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        assert probs is not None
        return type(self).score_fn(probs)


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


# --------------------------------------------------------------------------- selection
def _check_scores(ids: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.as_tensor(ids)
    scores = torch.as_tensor(scores)
    if ids.ndim != 1 or scores.shape != ids.shape:
        raise ValueError(
            f"Expected `ids` and `scores` to be 1-D of the same length, but got shapes "
            f"{tuple(ids.shape)} and {tuple(scores.shape)}."
        )
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"Expected integer example ids, but got dtype {ids.dtype}.")
    scores = scores.detach().to("cpu", torch.float64)
    if bool(torch.isnan(scores).any()):
        raise ValueError(
            f"Got {int(torch.isnan(scores).sum())} NaN scores (e.g. for example ids "
            f"{ids[torch.isnan(scores).cpu()][:5].tolist()}); check the model's probabilities for NaN."
        )
    return ids.detach().to("cpu", torch.int64), scores


def _lexsort_lowest(ids: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` smallest ``(score, id)`` pairs, in that order."""
    by_id = torch.argsort(ids, stable=True)
    by_score = torch.argsort(scores[by_id], stable=True)
    return by_id[by_score[:k]]


def select_lowest(ids: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` examples with the lowest scores; ties go to the smaller example id.

    Args:
        ids: ``(N,)`` integer example ids (unique).
        scores: ``(N,)`` scores (compared in float64).
        k: How many to select; more than ``N`` selects all.

    Returns:
        ``(ids (k,), scores (k,))`` in selection order (ascending score, then id).

    Example::

        >>> select_lowest(torch.tensor([5, 3, 8]), torch.tensor([0.2, 0.2, 0.1]), 2)[0].tolist()
        [8, 3]
    """
    if k < 0:
        raise ValueError(f"Expected `k` to be >= 0, but got {k}.")
    ids, scores = _check_scores(ids, scores)
    order = _lexsort_lowest(ids, scores, k)
    return ids[order], scores[order]


class LowestK:
    """Streaming :func:`select_lowest`: feed batches with :meth:`update`, read :meth:`result`.

    Memory is ``O(k + batch)``; the result does not depend on how the ids were batched (the order
    ``(score, id)`` is total). Optional ``extras`` (e.g. ``(B, K)`` probabilities) ride along with
    each row so the winners' rows are kept without storing the pool.

    Example::

        >>> top = LowestK(2)
        >>> top.update(torch.tensor([1, 2]), torch.tensor([0.5, 0.1]))
        >>> top.update(torch.tensor([3]), torch.tensor([0.1]))
        >>> top.result()[0].tolist()
        [2, 3]
    """

    def __init__(self, k: int) -> None:
        if k < 0:
            raise ValueError(f"Expected `k` to be >= 0, but got {k}.")
        self.k = int(k)
        self._ids = torch.zeros(0, dtype=torch.int64)
        self._scores = torch.zeros(0, dtype=torch.float64)
        self._extras: torch.Tensor | None = None
        self.num_seen = 0

    def update(self, ids: torch.Tensor, scores: torch.Tensor, extras: torch.Tensor | None = None) -> None:
        """Merge one batch: ``ids (B,)``, ``scores (B,)``, optional ``extras (B, ...)``."""
        ids, scores = _check_scores(ids, scores)
        self.num_seen += int(ids.numel())
        if extras is not None and extras.shape[0] != ids.shape[0]:
            raise ValueError(f"`extras` has {extras.shape[0]} rows for {ids.shape[0]} ids.")
        if self._ids.numel() >= self.k:
            # The buffer is full and sorted: only rows scoring at most its worst score can enter
            # (equal scores may still win on the id). Keeps each merge small.
            if self.k == 0:
                return
            candidates = scores <= self._scores[-1]
            if not bool(candidates.any()):
                return
            if not bool(candidates.all()):
                ids, scores = ids[candidates], scores[candidates]
                extras = extras[candidates.to(extras.device)] if extras is not None else None
        cat_ids = torch.cat([self._ids, ids])
        cat_scores = torch.cat([self._scores, scores])
        cat_extras = None
        if extras is not None:
            extras = extras.detach().cpu()
        if extras is not None or self._extras is not None:
            # rows fed without extras carry NaN rows, so ids and extras stay aligned
            like = extras if extras is not None else self._extras
            assert like is not None
            previous = self._extras
            if previous is None:
                previous = torch.full((self._ids.numel(), *like.shape[1:]), float("nan"), dtype=like.dtype)
            if extras is None:
                extras = torch.full((ids.numel(), *like.shape[1:]), float("nan"), dtype=like.dtype)
            cat_extras = torch.cat([previous.to(extras.dtype), extras])
        keep = _lexsort_lowest(cat_ids, cat_scores, self.k)  # kept sorted: the last row is the worst
        cat_ids, cat_scores = cat_ids[keep], cat_scores[keep]
        cat_extras = cat_extras[keep] if cat_extras is not None else None
        self._ids, self._scores, self._extras = cat_ids, cat_scores, cat_extras

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (k,), scores (k,))`` of the lowest ``k`` seen so far, in selection order."""
        return self._ids.clone(), self._scores.clone()

    def extras_of(self, ids: torch.Tensor) -> torch.Tensor | None:
        """The ``extras`` rows kept for the given (selected) ids, in that order."""
        if self._extras is None:
            return None
        position = {int(i): p for p, i in enumerate(self._ids.tolist())}
        return self._extras[[position[int(i)] for i in ids.tolist()]]


def make_requests(
    example_ids: Sequence[int] | torch.Tensor,
    scores: Sequence[float] | torch.Tensor,
    *,
    round: int,
    existing_annotators: Sequence[Sequence[str]],
) -> list[LabelRequest]:
    """One :class:`LabelRequest` per selected example, in selection order.

    Args:
        example_ids: ``(k,)`` selected example ids (unique).
        scores: ``(k,)`` their scores.
        round: The round making the requests.
        existing_annotators: For each example, the annotators who already labeled it (e.g. from
            ``AnnotationStore.annotators_of``); non-empty means the request is a ``"relabel"``.

    Example::

        >>> [r.kind for r in make_requests([3, 7], [0.1, 0.2], round=0, existing_annotators=[(), ("a",)])]
        ['new', 'relabel']
    """
    ids = [int(i) for i in torch.as_tensor(example_ids).tolist()]
    values = [float(s) for s in torch.as_tensor(scores, dtype=torch.float64).tolist()]
    if not (len(ids) == len(values) == len(existing_annotators)):
        raise ValueError(
            f"Expected as many scores and annotator lists as example ids ({len(ids)}), but got "
            f"{len(values)} scores and {len(existing_annotators)} annotator lists."
        )
    if len(set(ids)) != len(ids):
        raise ValueError("Expected unique example ids: one request per example per round.")
    return [
        LabelRequest(
            example_id=i,
            score=s,
            kind="relabel" if len(existing) else "new",
            round=int(round),
            existing_annotators=tuple(str(a) for a in existing),
        )
        for i, s, existing in zip(ids, values, existing_annotators)
    ]
