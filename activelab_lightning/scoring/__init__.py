"""Scoring engine: majority vote, temperature scaling, CROWDLAB and ActiveLab in vectorised torch.

Pure tensor functions (no Lightning import). Inputs may be torch tensors on any device or numpy
arrays; probabilities are computed in float64 on CPU by default. Label matrices are ``(N, M)``
floating arrays with NaN where annotator j did not label example i (as in cleanlab).

Lower scores mean "label this example next", for labeled (re-label) and unlabeled (new label)
examples alike. cleanlab users can switch with :mod:`activelab_lightning.scoring.compat`, whose
functions have cleanlab's names, arguments and return types.

Example::

    >>> import torch
    >>> from activelab_lightning.scoring import ActiveLabScorer
    >>> nan = float("nan")
    >>> labels = torch.tensor([[0., 0., 1.], [1., nan, 1.], [0., 1., nan]])
    >>> probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    >>> scorer = ActiveLabScorer().fit(labels, probs)
    >>> scorer.score_unlabeled(torch.tensor([[0.9, 0.1]])).shape
    torch.Size([1])
"""

from ._validation import TemperatureObjective
from .activelab import activelab_scores, activelab_scores_ensemble
from .annotator_stats import AnnotatorStats, annotator_stats
from .baselines import (
    disagreement_scores,
    entropy_scores,
    good_random_scores,
    least_confidence_scores,
    margin_scores,
    random_scores,
)
from .compat import (
    get_active_learning_scores,
    get_active_learning_scores_ensemble,
    get_label_quality_multiannotator,
    get_majority_vote_label,
)
from .crowdlab import (
    ConsensusMethod,
    CrowdlabResult,
    consensus_targets,
    crowdlab,
    crowdlab_ensemble,
)
from .majority_vote import majority_vote
from .scorer import ActiveLabEnsembleScorer, ActiveLabScorer
from .temperature import empirical_distribution, find_temperature, temperature_scale

__all__ = [
    "ActiveLabEnsembleScorer",
    "ActiveLabScorer",
    "AnnotatorStats",
    "ConsensusMethod",
    "CrowdlabResult",
    "TemperatureObjective",
    "activelab_scores",
    "activelab_scores_ensemble",
    "annotator_stats",
    "consensus_targets",
    "crowdlab",
    "crowdlab_ensemble",
    "disagreement_scores",
    "empirical_distribution",
    "entropy_scores",
    "find_temperature",
    "get_active_learning_scores",
    "get_active_learning_scores_ensemble",
    "get_label_quality_multiannotator",
    "get_majority_vote_label",
    "good_random_scores",
    "least_confidence_scores",
    "majority_vote",
    "margin_scores",
    "random_scores",
    "temperature_scale",
]
