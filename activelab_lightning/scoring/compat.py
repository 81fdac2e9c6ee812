"""Drop-in replacements for cleanlab's multi-annotator functions (migration path).

Same names, argument order and return types as ``cleanlab.multiannotator`` 2.9.0: numpy arrays
in, numpy arrays out; pandas DataFrames where cleanlab returns DataFrames (pandas is imported
only by :func:`get_label_quality_multiannotator`). Each function takes a keyword-only
``temperature_objective``:

* ``"class-position"`` (default): the temperature objective described in the ActiveLab paper,
  with each class's vote share at the class's own position.
* ``"cleanlab-2.9"``: reproduces cleanlab 2.9.0 exactly, including its left-aligned label counts
  (spec §4.1/§7.2), which usually push the temperature to its maximum (7.25).

Deliberate differences from cleanlab 2.9.0 (all documented, all deterministic):

* The last, random majority-vote tie-break draws from an explicit ``generator`` (default
  seed 0) instead of numpy's global RNG; where cleanlab crashes because no example is free of a
  count tie (spec §7.1), the annotator-reliability tie-break is skipped and the random one used.
* Input arrays are never modified (cleanlab's ensemble function scales them in place).
* Stricter input checks: probabilities must be finite, non-negative and sum to 1 per row; K = 1
  is rejected; annotators without any label are dropped instead of raising.
* ``verbose`` is accepted for signature compatibility; nothing is printed.

Example::

    >>> import numpy as np
    >>> from activelab_lightning.scoring.compat import get_active_learning_scores
    >>> labels = np.array([[0, 0, 1], [1, np.nan, 1], [0, 1, np.nan]])
    >>> probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    >>> lab, unl = get_active_learning_scores(labels, probs, np.array([[0.9, 0.1]]))
    >>> type(lab).__name__, lab.shape, unl.shape
    ('ndarray', (3,), (1,))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._validation import (
    ArrayLike,
    TemperatureObjective,
    as_label_matrix,
    as_probabilities,
    check_objective,
    make_generator,
)
from .activelab import activelab_scores, activelab_scores_ensemble
from .annotator_stats import annotator_stats
from .crowdlab import CrowdlabResult, _run_crowdlab
from .majority_vote import _first_true, _majority_vote, label_counts, majority_vote
from .temperature import _search, _sparse_empirical, _temperature_scale

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "get_active_learning_scores",
    "get_active_learning_scores_ensemble",
    "get_label_quality_multiannotator",
    "get_majority_vote_label",
]

_METHODS = ("best_quality", "majority_vote")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def get_majority_vote_label(
    labels_multiannotator: ArrayLike,
    pred_probs: ArrayLike | None = None,
    verbose: bool = True,
    *,
    generator: torch.Generator | int | None = None,
) -> np.ndarray:
    """cleanlab's ``get_majority_vote_label``: majority-vote labels with tie-breaks, as numpy.

    See :func:`activelab_lightning.scoring.majority_vote` for the tie-break chain. ``verbose`` is
    ignored (nothing is printed).

    Returns:
        ``(N,)`` int64 numpy array.
    """
    del verbose
    return _numpy(majority_vote(labels_multiannotator, pred_probs, generator=generator))


def _ids_and_index(labels: Any) -> tuple[list[Any], Any]:
    if hasattr(labels, "columns") and hasattr(labels, "index"):
        return list(labels.columns), labels.index
    m = np.shape(labels)[1] if np.ndim(labels) == 2 else 0
    return list(range(m)), None


def _agreement_result(
    labels: ArrayLike, probs: torch.Tensor, method: str, objective: TemperatureObjective, gen: torch.Generator
) -> CrowdlabResult:
    """``quality_method="agreement"``: the empirical label distribution as the posterior."""
    k = probs.shape[1]
    lm = as_label_matrix(labels, num_classes=k, device=probs.device)
    counts = label_counts(lm, k)
    mv = _majority_vote(lm, counts, probs, gen)
    rows, cols, vals = _sparse_empirical(counts, objective)
    post = torch.zeros(lm.num_examples, k, dtype=torch.float64, device=probs.device)
    post[rows, cols] = vals
    c = mv
    if method == "best_quality":
        is_max = post == post.amax(1, keepdim=True)
        c = torch.where(is_max.sum(1) == 1, _first_true(is_max), mv)
    alpha = counts.gather(1, c[:, None]).squeeze(1).to(torch.float64) / lm.num_annotations.to(torch.float64)
    m_in = lm.num_input_columns
    used = torch.zeros(m_in, dtype=torch.bool)
    used[lm.columns] = True
    nan = torch.full((m_in,), float("nan"), dtype=torch.float64)
    return CrowdlabResult(
        consensus_label=c,
        consensus_quality=alpha,
        annotator_agreement=alpha,
        num_annotations=lm.num_annotations,
        _posterior_fn=lambda: post,
        model_weight=float("nan"),
        annotator_weight=torch.where(used, 1.0, nan),
        annotator_mask=used,
        majority_vote_label=mv,
        consensus_likelihood=float("nan"),
        annotator_agreement_with_others=nan,
    )


def get_label_quality_multiannotator(
    labels_multiannotator: ArrayLike,
    pred_probs: ArrayLike,
    *,
    consensus_method: str | Sequence[str] = "best_quality",
    quality_method: str = "crowdlab",
    calibrate_probs: bool = False,
    return_detailed_quality: bool = True,
    return_annotator_stats: bool = True,
    return_weights: bool = False,
    verbose: bool = True,
    label_quality_score_kwargs: dict[str, Any] | None = None,
    temperature_objective: TemperatureObjective = "class-position",
    generator: torch.Generator | int | None = None,
) -> dict[str, Any]:
    """cleanlab's ``get_label_quality_multiannotator``: CROWDLAB consensus and quality, as DataFrames.

    Args:
        labels_multiannotator: ``(N, M)`` numpy array or DataFrame (columns = annotator ids,
            index = example ids), NaN for missing labels.
        pred_probs: ``(N, K)`` predicted probabilities.
        consensus_method: ``"best_quality"``, ``"majority_vote"`` or a list of them (the first
            drives the main columns, the others add ``*_<method>`` columns).
        quality_method: ``"crowdlab"`` or ``"agreement"``.
        calibrate_probs: Temperature-scale ``pred_probs`` first (with ``temperature_objective``).
        return_detailed_quality: Add ``detailed_label_quality`` (N, M).
        return_annotator_stats: Add ``annotator_stats`` (one row per annotator, sorted by quality).
        return_weights: Add ``model_weight`` and ``annotator_weight`` (crowdlab only).
        verbose: Accepted for compatibility; nothing is printed.
        label_quality_score_kwargs: Only ``{}`` / ``{"method": "self_confidence"}`` is supported.
        temperature_objective: ``"class-position"`` (default) or ``"cleanlab-2.9"``.
        generator: Seed/generator for random majority-vote tie-breaks (default seed 0).

    Returns:
        Dict with ``"label_quality"`` and, as requested, ``"detailed_label_quality"``,
        ``"annotator_stats"``, ``"model_weight"``, ``"annotator_weight"``.
    """
    import pandas as pd

    del verbose
    check_objective(temperature_objective)
    if return_weights and quality_method != "crowdlab":
        raise ValueError(
            f"return_weights=True needs quality_method='crowdlab', got {quality_method!r}; "
            "the agreement method has no weights."
        )
    if quality_method not in ("crowdlab", "agreement"):
        raise ValueError(f"quality_method must be 'crowdlab' or 'agreement', got {quality_method!r}.")
    methods = [consensus_method] if isinstance(consensus_method, str) else list(consensus_method)
    bad = [m for m in methods if m not in _METHODS]
    if bad or not methods:
        raise ValueError(
            f"consensus_method must be one of {_METHODS} (or a list of them), got {consensus_method!r}."
        )
    kwargs = dict(label_quality_score_kwargs or {})
    if kwargs not in ({}, {"method": "self_confidence"}):
        raise ValueError(
            f"label_quality_score_kwargs={kwargs!r} is not supported; only the default "
            "self-confidence quality score is implemented. Pass {} (the default)."
        )
    ids, index = _ids_and_index(labels_multiannotator)
    probs = as_probabilities(pred_probs, "pred_probs")
    lm = as_label_matrix(
        labels_multiannotator, "labels_multiannotator", num_classes=probs.shape[1], device=probs.device
    )
    if lm.num_examples != probs.shape[0]:
        raise ValueError(
            f"pred_probs has {probs.shape[0]} rows but labels_multiannotator has {lm.num_examples} rows; "
            "row i of both must describe the same example."
        )
    if calibrate_probs:
        t = _search(probs, label_counts(lm, probs.shape[1]), temperature_objective)
        probs = _temperature_scale(probs, t)
    results: dict[str, CrowdlabResult] = {}
    for m in methods:
        if m in results:
            continue
        if quality_method == "crowdlab":
            results[m] = _run_crowdlab(lm, probs[None], consensus_method=m, generator=generator)[0]  # type: ignore[arg-type]
        else:
            results[m] = _agreement_result(
                labels_multiannotator, probs, m, temperature_objective, make_generator(generator)
            )
    main = results[methods[0]]
    columns: dict[str, Any] = {
        "consensus_label": _numpy(main.consensus_label),
        "consensus_quality_score": _numpy(main.consensus_quality),
        "annotator_agreement": _numpy(main.annotator_agreement),
        "num_annotations": _numpy(main.num_annotations),
    }
    for m in methods[1:]:
        r = results[m]
        columns[f"consensus_label_{m}"] = _numpy(r.consensus_label)
        columns[f"consensus_quality_score_{m}"] = _numpy(r.consensus_quality)
        columns[f"annotator_agreement_{m}"] = _numpy(r.annotator_agreement)
    out: dict[str, Any] = {"label_quality": pd.DataFrame(columns, index=index)}
    if return_detailed_quality:
        detailed = np.full((lm.num_examples, lm.num_input_columns), np.nan)
        q = main.posterior.gather(1, lm.index)
        detailed[:, _numpy(lm.columns)] = np.where(_numpy(lm.mask), _numpy(q), np.nan)
        out["detailed_label_quality"] = pd.DataFrame(
            detailed, columns=[f"quality_annotator_{i}" for i in ids], index=index
        )
    if return_annotator_stats:
        out["annotator_stats"] = _annotator_stats_frame(pd, labels_multiannotator, main, ids, quality_method)
    if return_weights:  # as cleanlab: the weights of the *last* consensus method
        last = results[methods[-1]]
        out["model_weight"] = last.model_weight
        out["annotator_weight"] = _numpy(last.annotator_weight[last.annotator_mask])
    return out


def _annotator_stats_frame(
    pd: Any, labels: ArrayLike, result: CrowdlabResult, ids: list[Any], quality_method: str
) -> pd.DataFrame:
    stats = annotator_stats(labels, result)
    quality = stats.quality
    order = stats.order
    if quality_method == "agreement":
        lm = as_label_matrix(labels, num_classes=result.posterior.shape[1])
        correct = (lm.index == result.consensus_label.cpu()[:, None]) & lm.mask
        multi = (lm.num_annotations >= 2)[:, None] & lm.mask
        agr = (correct & multi).sum(0).double() / multi.sum(0).double()
        quality = torch.full_like(quality, float("nan"))
        quality[lm.columns] = agr
        keys = torch.stack([quality[lm.columns], stats.agreement_with_consensus[lm.columns]])
        order = torch.arange(lm.num_annotators)
        for key in (keys[1], keys[0]):
            vals = key[order]
            vals = torch.where(torch.isnan(vals), torch.full_like(vals, float("inf")), vals)
            order = order[torch.argsort(vals, stable=True)]
        order = lm.columns[order]
    o = _numpy(order)
    return pd.DataFrame(
        {
            "annotator_quality": _numpy(quality)[o],
            "agreement_with_consensus": _numpy(stats.agreement_with_consensus)[o],
            "worst_class": _numpy(stats.worst_class)[o],
            "num_examples_labeled": _numpy(stats.num_examples_labeled)[o],
        },
        index=[ids[i] for i in o],
    )


def get_active_learning_scores(
    labels_multiannotator: ArrayLike | None = None,
    pred_probs: ArrayLike | None = None,
    pred_probs_unlabeled: ArrayLike | None = None,
    *,
    temperature_objective: TemperatureObjective = "class-position",
    generator: torch.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's ``get_active_learning_scores``: ActiveLab scores as numpy arrays.

    As in cleanlab, labels passed without ``pred_probs`` are ignored. See
    :func:`activelab_lightning.scoring.activelab_scores`.

    Returns:
        ``(labeled (N,), unlabeled (U,))`` float64 numpy arrays (empty where not requested).
    """
    labels = labels_multiannotator if pred_probs is not None else None
    lab, unl = activelab_scores(
        labels,
        pred_probs,
        pred_probs_unlabeled,
        temperature_objective=temperature_objective,
        generator=generator,
    )
    return _numpy(lab), _numpy(unl)


def get_active_learning_scores_ensemble(
    labels_multiannotator: ArrayLike | None = None,
    pred_probs: ArrayLike | None = None,
    pred_probs_unlabeled: ArrayLike | None = None,
    *,
    temperature_objective: TemperatureObjective = "class-position",
    generator: torch.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's ``get_active_learning_scores_ensemble`` (``(P, N, K)`` inputs), as numpy arrays.

    Unlike cleanlab 2.9.0 the input arrays are not modified. See
    :func:`activelab_lightning.scoring.activelab_scores_ensemble`.
    """
    labels = labels_multiannotator if pred_probs is not None else None
    lab, unl = activelab_scores_ensemble(
        labels,
        pred_probs,
        pred_probs_unlabeled,
        temperature_objective=temperature_objective,
        generator=generator,
    )
    return _numpy(lab), _numpy(unl)
