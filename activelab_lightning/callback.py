"""``ActiveLabCallback``: one acquisition round inside any Lightning ``Trainer``.

One acquisition = its own inference pass over the labeled and unlabeled pools → ActiveLab (or
baseline) scores → the ``query_size`` lowest over labeled ∪ unlabeled → label requests → oracle →
:class:`~activelab_lightning.store.AnnotationStore` → datamodule refresh (new consensus targets) →
report. The store is the source of truth, and every round follows a crash-safe protocol:

1. If the store holds round ``r`` as begun but not completed (a crashed or waiting run), inference
   and selection are skipped and its pending requests are asked again; else the pools are scored,
   the selection is made and ``store.begin_round(r, seed, requests)`` records round + requests
   atomically (the probabilities needed for the refresh are saved first, next to the store).
2. ``oracle.request(pending)`` → answers checked (only requested examples) → ``store.record_response``
   (idempotent: oracles answer deterministically per request); a request answered ``exhausted``
   is replaced by the next-best candidate (``store.add_requests``, recorded before it is asked), so
   the round spends its ``query_size`` → if requests are still pending
   (humans), :class:`~activelab_lightning.errors.WaitingForLabels` is raised after storing what
   arrived; else ``store.complete_round(r)``.
3. Datamodule refresh (CROWDLAB consensus with the round's probabilities) and report.

The round's seed is a fixed function of ``(seed, r)``, so a resumed run selects what the
interrupted one would have.

**Modes.** Round mode (default) acquires in ``on_train_end`` — not ``on_fit_end``, after which the
model may be back on the CPU and unwrapped from DDP. Continuous mode (``every_n_epochs=N``)
acquires at the end of every ``N``-th training epoch, and the next epoch trains on the grown set;
it needs ``Trainer(reload_dataloaders_every_n_epochs=1)``.

**Distributed.** With ``strategy="ddp"`` pool inference is sharded over the ranks and gathered by
example id; scoring, selection, oracle, store writes and reporting run on rank 0; the outcome is
broadcast and every rank refreshes its datamodule identically. ``ddp_spawn`` / ``ddp_notebook``
are refused: they lose the datamodule and callback state at the end of every ``fit``.

Example::

    >>> callback = ActiveLabCallback(SimulatedOracle(...), query_size=100)   # doctest: +SKIP
    >>> trainer = Trainer(max_epochs=10, callbacks=[callback])              # doctest: +SKIP
    >>> trainer.fit(model, datamodule=ActiveDataModule(dataset, store))      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from activelab_lightning._distributed import on_rank_zero, rank_zero_warn
from activelab_lightning.errors import WaitingForLabels
from activelab_lightning.oracles.base import check_response
from activelab_lightning.predictions import OUT_OF_SAMPLE_METHODS, PredictFn
from activelab_lightning.predictions.pools import (
    LabeledPass,
    check_pool_probs,
    labeled_pass,
    predict_pool,
    unlabeled_batches,
)
from activelab_lightning.records import Annotation, LabelRequest, OracleResponse, RoundSummary
from activelab_lightning.reporting.summary import summarize_round
from activelab_lightning.round_state import RoundStates, datamodule_state
from activelab_lightning.selection import (
    ScoringContext,
    Strategy,
    get_strategy,
    make_requests,
    rank_pools,
    round_seed,
    subsample_ids,
)

__all__ = ["ActiveLabCallback"]

_SPAWN_START_METHODS = ("spawn", "fork", "forkserver")
_STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What rank 0 decided at the start of an acquisition (broadcast to every rank)."""

    round: int
    resume: bool
    requests: tuple[LabelRequest, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """What the round did to the store (broadcast so every rank can apply it)."""

    round: int
    seed: int
    requests: tuple[LabelRequest, ...]
    answers: tuple[Annotation, ...]
    num_pending: int
    num_exhausted: int
    num_replaced: int
    num_skipped: int
    round_state: dict[str, Any] | None
    resumed: bool


class ActiveLabCallback(pl.Callback):
    """Acquire labels with ActiveLab (or a baseline) at the end of training.

    Args:
        oracle: Answers label requests (:class:`~activelab_lightning.oracles.Oracle` protocol:
            ``request(requests) -> OracleResponse``).
        query_size: Label requests per acquisition (new labels and re-labels together). Clamped,
            with a warning, to the number of candidates.
        strategy: Name of a registered strategy (see
            :func:`~activelab_lightning.selection.available_strategies`): ``"activelab_ensemble"``
            (default: ActiveLab with the cross-fitted heads as its ensemble, at no extra cost; it
            falls back to single-model ``"activelab"``, with a warning, in a round without heads or
            ensemble members), ``"activelab"``, ``"random"``, ``"good_random"``, ``"entropy"``,
            ``"least_confidence"``, ``"margin"``, ``"disagreement"``.
        every_n_epochs: ``None`` (round mode: acquire once in ``on_train_end``) or ``N`` (continuous
            mode: acquire after every ``N``-th epoch; needs ``reload_dataloaders_every_n_epochs=1``).
        seed: Base seed; round ``r`` uses :func:`~activelab_lightning.selection.round_seed` ``(seed, r)``.
        predict_fn: ``predict_fn(module, x) -> (B, K)`` probabilities, for modules whose ``forward``
            does not return logits. Default: ``module.predict_proba(x)`` if defined, else
            ``softmax(module(x), -1)``.
        temperature_objective: ActiveLab's temperature objective, ``"class-position"`` (default,
            as in the paper) or ``"cleanlab-2.9"`` (bit-compatible with cleanlab 2.9.0).
        unlabeled_subsample: Score only a seeded random subset of this many unlabeled examples per
            round (huge pools); ``None`` scores all of them.
        true_labels: ``(num_examples,)`` ground truth, if known (simulations): reports the
            consensus accuracy of each round.
        reporter: Object with ``log_round(trainer, summary)``; ``"auto"`` builds a
            :class:`~activelab_lightning.reporting.Reporter` writing ``<store>.rounds.jsonl`` next to
            a file-backed store; ``None`` reports nothing.
        state_dir: Where each round's refresh probabilities are saved (needed to resume with the
            same consensus). ``"auto"``: ``<store>.activelab/`` next to a file-backed store, kept in
            memory for an in-memory store.
        out_of_sample: How the labeled pool's ``pred_probs`` are made out-of-sample inside one fit
            (ActiveLab and CROWDLAB assume they are). ``"crossfit"`` (default): ``crossfit_folds``
            linear heads refitted on the model's penultimate features of the other folds predict
            each held-out fold (see :mod:`~activelab_lightning.predictions.crossfit`; they also form the
            ensemble of ``activelab_ensemble`` / ``disagreement``). ``"in_sample"``: the trained
            model's own predictions (over-confident on its training rows; the previous default).
            Probabilities handed in with :meth:`use_predictions` (e.g. the loop's ``cv_folds``)
            take precedence. Models without an ``nn.Linear`` fall back to in-sample, with a warning.
        crossfit_folds: Folds (and heads) of ``out_of_sample="crossfit"``.
        crossfit_unlabeled: What scores the unlabeled pool under ``out_of_sample="crossfit"``:
            ``"heads"`` (default): the mean of the heads (ensemble strategies: each head), so both
            pools are ranked by predictions on one calibration scale, as the paper's fold-model
            average does; ``"model"``: the trained model's own probabilities.
        feature_layer: Name (in ``model.named_modules()``) of the layer whose input is the
            representation the heads are fitted on; default the model's last ``nn.Linear``.
        skip_exhausted: Never select an example an oracle has reported exhausted (no annotator
            left), and replace each request reported exhausted within a round by the next-best
            candidate, so every round spends its ``query_size`` (default). ``False`` keeps selecting
            them (e.g. when new annotators joined).

    Attributes:
        history: One dict per acquisition (round, requests, answers, sizes, consensus accuracy...).
        last_summary: The :class:`~activelab_lightning.records.RoundSummary` of the last round.

    Example::

        >>> cb = ActiveLabCallback(oracle=None, query_size=10, strategy="margin")
        >>> cb.strategy, cb.query_size
        ('margin', 10)
    """

    def __init__(
        self,
        oracle: Any,
        query_size: int,
        strategy: str = "activelab_ensemble",
        *,
        every_n_epochs: int | None = None,
        seed: int = 0,
        predict_fn: PredictFn | None = None,
        temperature_objective: str = "class-position",
        unlabeled_subsample: int | None = None,
        true_labels: Any = None,
        reporter: Any = "auto",
        state_dir: str | os.PathLike | None = "auto",
        out_of_sample: str = "crossfit",
        crossfit_folds: int = 5,
        crossfit_unlabeled: str = "heads",
        feature_layer: str | None = None,
        skip_exhausted: bool = True,
    ) -> None:
        super().__init__()
        if out_of_sample not in OUT_OF_SAMPLE_METHODS:
            raise ValueError(
                f"ActiveLabCallback(out_of_sample={out_of_sample!r}): must be one of {list(OUT_OF_SAMPLE_METHODS)} "
                f"('crossfit' = out-of-fold heads on the model's features, the default; 'in_sample' = the "
                f"trained model's own predictions)."
            )
        if isinstance(crossfit_folds, bool) or not isinstance(crossfit_folds, int) or crossfit_folds < 2:
            raise ValueError(
                f"ActiveLabCallback(crossfit_folds={crossfit_folds!r}): must be an int >= 2 (e.g. 5)."
            )
        if crossfit_unlabeled not in ("heads", "model"):
            raise ValueError(
                f"ActiveLabCallback(crossfit_unlabeled={crossfit_unlabeled!r}): must be 'heads' (the mean of the "
                f"cross-fitted heads, on the labeled pool's scale; the default) or 'model' (the trained model)."
            )
        if feature_layer is not None and not isinstance(feature_layer, str):
            raise TypeError(
                f"ActiveLabCallback(feature_layer={feature_layer!r}): pass the layer's name in "
                f"model.named_modules() (a str), or None for the last nn.Linear."
            )
        if isinstance(query_size, bool) or not isinstance(query_size, int) or query_size <= 0:
            raise ValueError(
                f"ActiveLabCallback(query_size={query_size!r}): must be a positive int, the number of label "
                f"requests per round (e.g. query_size=100)."
            )
        if not isinstance(strategy, (str, Strategy)):
            raise TypeError(f"ActiveLabCallback(strategy={strategy!r}): pass a strategy name (str).")
        if isinstance(strategy, str):
            get_strategy(strategy)  # raises with the list of valid names
        if every_n_epochs is not None and (
            isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs <= 0
        ):
            raise ValueError(
                f"ActiveLabCallback(every_n_epochs={every_n_epochs!r}): must be None (acquire once at the end of "
                f"training) or a positive int N (acquire after every N-th epoch)."
            )
        if temperature_objective not in ("class-position", "cleanlab-2.9"):
            raise ValueError(
                f"ActiveLabCallback(temperature_objective={temperature_objective!r}): must be 'class-position' "
                f"or 'cleanlab-2.9'."
            )
        if unlabeled_subsample is not None and (
            not isinstance(unlabeled_subsample, int) or unlabeled_subsample <= 0
        ):
            raise ValueError(
                f"ActiveLabCallback(unlabeled_subsample={unlabeled_subsample!r}): must be None or a positive int."
            )
        if not isinstance(skip_exhausted, bool):
            raise TypeError(f"ActiveLabCallback(skip_exhausted={skip_exhausted!r}): pass True or False.")
        if predict_fn is not None and not callable(predict_fn):
            raise TypeError(f"ActiveLabCallback(predict_fn={predict_fn!r}): must be callable(module, x).")
        self.oracle = oracle
        self.query_size = query_size
        self.strategy = strategy if isinstance(strategy, str) else strategy.name
        self._strategy_instance = strategy if isinstance(strategy, Strategy) else None
        self.every_n_epochs = every_n_epochs
        self.seed = int(seed)
        self.predict_fn = predict_fn
        self.temperature_objective = temperature_objective
        self.unlabeled_subsample = unlabeled_subsample
        self.true_labels = None if true_labels is None else torch.as_tensor(true_labels).long().cpu()
        self.reporter = reporter
        self.out_of_sample = out_of_sample
        self.crossfit_folds = crossfit_folds
        self.crossfit_unlabeled = crossfit_unlabeled
        self.feature_layer = feature_layer
        self.skip_exhausted = skip_exhausted
        self.history: list[dict[str, Any]] = []
        self._warned: set[str] = set()
        self._oos_diagnostics: dict[str, float] = {}
        self._round_strategy: Strategy | None = None
        self.last_summary: RoundSummary | None = None
        self._next_round = 0
        self._round_states = RoundStates(state_dir)
        self._restored_for: int | None = None
        self._query_size_limit: int | None = None
        self._injected: dict[str, Any] = {}

    @property
    def state_dir(self) -> str | os.PathLike[str] | None:
        """Where each round's refresh state is saved (see :class:`~activelab_lightning.round_state.RoundStates`)."""
        return self._round_states.state_dir

    @state_dir.setter
    def state_dir(self, value: str | os.PathLike[str] | None) -> None:
        self._round_states.state_dir = value

    # ------------------------------------------------------------------ Lightning state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(strategy=self.strategy, query_size=self.query_size)

    def state_dict(self) -> dict[str, Any]:
        """Round index, base seed (each round's RNG is seeded from it) and history."""
        return {
            "version": _STATE_VERSION,
            "next_round": self._next_round,
            "seed": self.seed,
            "strategy": self.strategy,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("version") != _STATE_VERSION:
            raise ValueError(
                f"ActiveLabCallback.load_state_dict: unknown state version {state_dict.get('version')!r} "
                f"(this library writes {_STATE_VERSION})."
            )
        self._next_round = int(state_dict["next_round"])
        self.seed = int(state_dict["seed"])
        self.history = [dict(h) for h in state_dict["history"]]

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        start_method = getattr(trainer.strategy, "_start_method", None)
        if start_method in _SPAWN_START_METHODS:
            name = "ddp_notebook" if start_method == "fork" else "ddp_spawn"
            raise ValueError(
                f"ActiveLabCallback does not support strategy={name!r} (start method {start_method!r}): the "
                f"spawned processes' datamodule and callback state (new labels, round history) are lost when "
                f"`fit` returns. Use strategy='ddp' from a script (or the `activelab` CLI)."
            )
        if stage != "fit":
            return
        reload_every = getattr(trainer, "reload_dataloaders_every_n_epochs", 0)  # set by Trainer.__init__
        if self.every_n_epochs is not None and reload_every != 1:
            raise ValueError(
                f"ActiveLabCallback(every_n_epochs={self.every_n_epochs}) grows the training set during `fit`, "
                f"but Trainer(reload_dataloaders_every_n_epochs={reload_every}) "
                f"would keep training on the old set. Pass Trainer(reload_dataloaders_every_n_epochs=1)."
            )
        datamodule = self._datamodule(trainer)
        self.restore(datamodule)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is None or trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.acquire(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is None:
            self.acquire(trainer, pl_module)

    # ------------------------------------------------------------------ injection (used by the loop)
    def use_predictions(
        self,
        *,
        labeled_pred_probs: torch.Tensor | None = None,
        labeled_ensemble_pred_probs: torch.Tensor | None = None,
        ensemble: Sequence[torch.nn.Module] | None = None,
    ) -> None:
        """Hand the **next** acquisition out-of-sample probabilities and/or ensemble members.

        Args:
            labeled_pred_probs: ``(n, K)`` aligned with ``datamodule.labeled_ids`` (e.g. K-fold
                out-of-fold predictions) instead of the in-sample predictions of the trained model.
            labeled_ensemble_pred_probs: ``(P, n, K)`` for ensemble strategies.
            ensemble: ``P`` modules that score the unlabeled pool for ensemble strategies.
        """
        self._injected = {
            "labeled_pred_probs": labeled_pred_probs,
            "labeled_ensemble_pred_probs": labeled_ensemble_pred_probs,
            "ensemble": list(ensemble) if ensemble is not None else None,
        }

    def limit_next_query_size(self, limit: int | None) -> None:
        """Cap the next acquisition's number of requests (the loop's annotation budget)."""
        self._query_size_limit = limit

    # ------------------------------------------------------------------ restore
    def restore(self, datamodule: Any) -> None:
        """Re-apply the consensus of the last completed round (a resumed run trains on what the
        interrupted run would have). A no-op if this callback already did it for this store."""
        store = datamodule.store
        if self._restored_for == id(store):
            return
        self._restored_for = id(store)
        last = store.last_completed_round()
        if last < 0:
            return
        state = self._round_states.load(store, last)
        if state is not None:
            self._refresh(datamodule, state)

    # ------------------------------------------------------------------ acquisition
    def acquire(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        *,
        labeled_pred_probs: torch.Tensor | None = None,
        labeled_ensemble_pred_probs: torch.Tensor | None = None,
        ensemble: Sequence[torch.nn.Module] | None = None,
    ) -> RoundSummary | None:
        """Run one acquisition round now (on every rank; see the module docstring).

        Returns:
            The round's summary (``None`` on ranks other than 0).

        Raises:
            WaitingForLabels: The oracle left requests pending (answers so far are stored).
            OracleAnswerError: The oracle answered an example that was not requested.
        """
        started = time.perf_counter()
        self._oos_diagnostics = {}
        self._round_strategy = None
        injected, self._injected = self._injected, {}
        labeled_pred_probs = (
            labeled_pred_probs if labeled_pred_probs is not None else injected.get("labeled_pred_probs")
        )
        labeled_ensemble_pred_probs = (
            labeled_ensemble_pred_probs
            if labeled_ensemble_pred_probs is not None
            else injected.get("labeled_ensemble_pred_probs")
        )
        ensemble = ensemble if ensemble is not None else injected.get("ensemble")
        datamodule = self._datamodule(trainer)
        store = datamodule.store

        plan = on_rank_zero(trainer, lambda: self._plan(store))
        strategy = self._new_strategy()
        scores_for_report: dict[str, torch.Tensor | None] = {"labeled": None, "unlabeled": None}
        diagnostics: dict[str, float] = {}
        select_error: BaseException | None = None
        selected: tuple[LabelRequest, ...] = ()
        seed = round_seed(self.seed, plan.round)
        if plan.resume:
            selected = plan.requests
        else:
            try:
                selected, seed = self._select(
                    trainer,
                    pl_module,
                    datamodule,
                    plan.round,
                    strategy,
                    labeled_pred_probs=labeled_pred_probs,
                    labeled_ensemble_pred_probs=labeled_ensemble_pred_probs,
                    ensemble=ensemble,
                    scores_for_report=scores_for_report,
                )
            except BaseException as exc:
                if trainer.world_size <= 1 or not trainer.is_global_zero:
                    raise
                select_error = exc  # the other ranks wait in the broadcast below: tell them
            strategy = self._round_strategy or strategy  # a fallback chosen during selection
            diagnostics = (
                {**strategy.diagnostics(), **self._oos_diagnostics}
                if trainer.is_global_zero and select_error is None
                else {}
            )

        def ask() -> _Outcome:
            if select_error is not None:
                raise select_error
            return self._ask(store, plan, selected, seed)

        outcome = on_rank_zero(trainer, ask)
        self._apply(trainer, datamodule, outcome)
        summary = None
        if trainer.is_global_zero:
            summary = self._summarize(
                datamodule, outcome, scores_for_report, diagnostics, time.perf_counter() - started
            )
            self._report(trainer, store, summary)
        self._next_round = outcome.round + 1
        if outcome.num_pending:
            raise WaitingForLabels(outcome.round, outcome.num_pending, getattr(self.oracle, "where", ""))
        return summary

    # ------------------------------------------------------------------ step 0: plan
    def _plan(self, store: Any) -> _Plan:
        in_flight = [rec for rec in store.rounds() if rec.status != "completed"]
        if in_flight:
            r = in_flight[0].round
            return _Plan(round=r, resume=True, requests=tuple(store.pending_requests(r)))
        return _Plan(round=store.last_completed_round() + 1, resume=False)

    def _new_strategy(self) -> Strategy:
        if self._strategy_instance is not None:
            return type(self._strategy_instance)()
        return get_strategy(self.strategy)

    # ------------------------------------------------------------------ step 1: predict, score, select
    def _select(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        datamodule: Any,
        r: int,
        strategy: Strategy,
        *,
        labeled_pred_probs: torch.Tensor | None,
        labeled_ensemble_pred_probs: torch.Tensor | None,
        ensemble: Sequence[torch.nn.Module] | None,
        scores_for_report: dict[str, torch.Tensor | None],
    ) -> tuple[tuple[LabelRequest, ...], int]:
        store = datamodule.store
        num_classes = store.num_classes
        seed = round_seed(self.seed, r)
        generator = torch.Generator().manual_seed(seed)
        labeled_ids = torch.as_tensor(datamodule.labeled_ids, dtype=torch.int64)
        unlabeled_ids = torch.as_tensor(datamodule.unlabeled_ids, dtype=torch.int64)
        if self.unlabeled_subsample is not None:
            unlabeled_ids = subsample_ids(unlabeled_ids, self.unlabeled_subsample, generator=generator)
        exclude = None
        if self.skip_exhausted and trainer.is_global_zero:
            exclude = self._exhausted(store)
        num_excluded = int(exclude.numel()) if exclude is not None else 0
        num_candidates = int(labeled_ids.numel() + unlabeled_ids.numel())
        if exclude is not None and num_excluded:
            num_candidates -= int(
                torch.isin(exclude, labeled_ids).sum() + torch.isin(exclude, unlabeled_ids).sum()
            )
        k = self._round_query_size(num_candidates)
        # the next-best candidates replace requests the oracle reports exhausted within the round
        reserve = min(k, num_candidates - k)
        members = list(ensemble) if ensemble is not None else None
        oos = None
        if labeled_pred_probs is None and members is None and labeled_ids.numel():
            oos = self._labeled_pass(trainer, pl_module, datamodule, labeled_ids, r)
        heads = oos.heads if oos is not None and self.out_of_sample == "crossfit" else None
        skipped = oos.skipped if oos is not None else None
        why = skipped or "the labeled pool was given as probabilities"
        if strategy.input == "ensemble" and not members and heads is None:
            if strategy.name != "activelab_ensemble":
                raise ValueError(
                    f"strategy={self.strategy!r} scores with an ensemble of models, but no ensemble members were "
                    f"given and out_of_sample={self.out_of_sample!r} made no cross-fitted heads this round "
                    f"({why}). Use out_of_sample='crossfit' (the heads form the ensemble), "
                    f"ActiveLearningLoop(..., cv_folds=K), or `callback.use_predictions(ensemble=[model_1, "
                    f"model_2, ...])` before the fit."
                )
            self._warn_once(
                f"ensemble-fallback-{r}" if r == 0 else "ensemble-fallback",
                f"ActiveLabCallback(strategy='activelab_ensemble'): round {r} has no ensemble members and no "
                f"cross-fitted heads ({why}); scoring with single-model 'activelab' this round.",
            )
            strategy = get_strategy("activelab")
            self._round_strategy = strategy

        def predict_labeled(module: torch.nn.Module) -> torch.Tensor:
            return predict_pool(
                trainer, module, datamodule, labeled_ids, num_classes, predict_fn=self.predict_fn
            )

        # Labeled pool: the strategy's single-model probs and, for ensembles, (P, n, K).
        labeled_probs: torch.Tensor | None
        if labeled_pred_probs is not None:
            labeled_probs = check_pool_probs(
                labeled_pred_probs, num_classes, "labeled_pred_probs", rows=labeled_ids.numel()
            )
        elif heads is not None:
            labeled_probs = heads.oof_probs
        elif oos is not None and oos.model_probs is not None:
            labeled_probs = oos.model_probs
        elif strategy.input == "probs" or not members:
            labeled_probs = predict_labeled(pl_module)
        else:
            labeled_probs = None
        ensemble_probs = None
        if strategy.input == "ensemble":
            if heads is not None and labeled_ensemble_pred_probs is None:
                assert oos is not None and oos.features is not None
                ensemble_probs = heads.member_probs(oos.features)
            elif labeled_ensemble_pred_probs is not None:
                ensemble_probs = torch.as_tensor(labeled_ensemble_pred_probs, dtype=torch.float64)
                if ensemble_probs.ndim != 3 or ensemble_probs.shape[1] != labeled_ids.numel():
                    raise ValueError(
                        f"labeled_ensemble_pred_probs must have shape (P, {labeled_ids.numel()}, K), got "
                        f"{tuple(ensemble_probs.shape)}."
                    )
            else:
                assert members is not None
                ensemble_probs = torch.stack([predict_labeled(m) for m in members])
            if labeled_probs is None:
                labeled_probs = ensemble_probs.mean(dim=0)
        assert labeled_probs is not None

        ctx = None
        if trainer.is_global_zero:
            labels, _ = store.label_matrix(labeled_ids)
            ctx = ScoringContext(
                labels=labels,
                labeled_ids=labeled_ids,
                num_classes=num_classes,
                pred_probs=labeled_probs,
                ensemble_pred_probs=ensemble_probs,
                generator=generator,
                temperature_objective=self.temperature_objective,  # type: ignore[arg-type]
            )
        # Unlabeled pool: streamed batch by batch (all ranks take part in sharded inference).
        use_heads = heads is not None and (strategy.input == "ensemble" or self.crossfit_unlabeled == "heads")
        track = getattr(self._reporter(store), "track", None) if trainer.is_global_zero else None
        batches = unlabeled_batches(
            trainer,
            datamodule,
            unlabeled_ids,
            members if strategy.input == "ensemble" and not use_heads and members else [pl_module],
            num_classes,
            predict_fn=self.predict_fn,
            stack=strategy.input == "ensemble",
            heads=(heads, oos.layer) if use_heads and heads is not None and oos and oos.layer else None,
            track=track if callable(track) else None,
        )
        if use_heads and strategy.input != "ensemble":  # single-model strategies: the heads' mean
            batches = ((batch_ids, p.mean(dim=0)) for batch_ids, p in batches)
        ranked = rank_pools(strategy, ctx, batches, k + reserve, exclude=exclude)
        if not trainer.is_global_zero:
            return (), seed

        scores_for_report["labeled"] = ranked.labeled_scores
        scores_for_report["unlabeled"] = ranked.unlabeled_scores
        self._oos_diagnostics = dict(oos.diagnostics) if oos is not None else {}
        candidate_ids, candidate_scores = ranked.top.result()
        chosen_ids, chosen_scores = candidate_ids[:k], candidate_scores[:k]
        requests = make_requests(
            chosen_ids, chosen_scores, round=r, existing_annotators=store.annotators_of(chosen_ids)
        )
        # Probabilities the refresh will need: labeled pool + the selected unlabeled examples
        # (reserve included: a replacement request may turn one of them into a labeled example).
        counts = store.label_counts()
        new = candidate_ids[counts[candidate_ids] == 0] if candidate_ids.numel() else candidate_ids
        new_probs = ranked.top.extras_of(new) if new.numel() else None
        refresh_ids = torch.cat([labeled_ids, new]) if new_probs is not None else labeled_ids
        refresh_probs = labeled_probs.to(torch.float64)
        if new_probs is not None:
            refresh_probs = torch.cat([refresh_probs, new_probs.to(torch.float64)])
        self._round_states.save(
            store,
            r,
            {
                "ids": refresh_ids,
                "probs": refresh_probs,
                "datamodule": datamodule_state(datamodule),
                "query_size": k,
                "reserve_ids": candidate_ids[k:].clone(),
                "reserve_scores": candidate_scores[k:].to(torch.float64).clone(),
                "num_skipped": num_excluded,
            },
        )
        store.begin_round(r, seed, requests)
        return tuple(requests), seed

    def _exhausted(self, store: Any) -> torch.Tensor:
        """Examples no further label can come for: reported exhausted in a past round, plus those the
        oracle itself knows it cannot label (its optional ``exhausted_examples(store)``)."""
        ids = torch.tensor(store.exhausted_example_ids(), dtype=torch.int64)
        known = getattr(self.oracle, "exhausted_examples", None)
        if callable(known):
            ids = torch.cat([ids, torch.as_tensor(known(store), dtype=torch.int64).reshape(-1)])
        return torch.unique(ids)

    def _labeled_pass(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        datamodule: Any,
        labeled_ids: torch.Tensor,
        r: int,
    ) -> LabeledPass:
        """The labeled-pool pass with the cross-fitted heads (:func:`~activelab_lightning.predictions.pools.labeled_pass`),
        plus this callback's warnings. In ``"in_sample"`` mode the heads are fitted too (one short
        L-BFGS solve per head), only to measure how far the model's in-sample agreement with the consensus lies above
        the out-of-fold one; once that guard has warned, it stops measuring."""
        if self.out_of_sample == "in_sample" and "in-sample" in self._warned:
            return LabeledPass(skipped="in-sample mode, the guard has warned already")
        result = labeled_pass(
            trainer,
            pl_module,
            datamodule,
            labeled_ids,
            torch.as_tensor(datamodule.consensus_labels, dtype=torch.int64),
            datamodule.store.num_classes,
            folds=self.crossfit_folds,
            seed=round_seed(self.seed, r),
            predict_fn=self.predict_fn,
            feature_layer=self.feature_layer,
            measure_only=self.out_of_sample == "in_sample",
        )
        if result.skipped == "the model has no nn.Linear layer" and self.out_of_sample == "crossfit":
            self._warn_once(
                "no-linear",
                f"ActiveLabCallback(out_of_sample='crossfit'): {type(pl_module).__name__} has no nn.Linear "
                f"layer, so the labeled pool is scored with in-sample predictions (over-confident on the rows "
                f"the model trained on). Pass feature_layer=<name of the classifier layer> to fix it.",
            )
        if result.guard_warning is not None:
            self._warn_once(
                "in-sample",
                f"ActiveLabCallback(out_of_sample='in_sample'): round {r}: {result.guard_warning} Use "
                f"out_of_sample='crossfit' (the default) or ActiveLearningLoop(cv_folds=5).",
            )
        return result

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message, category=UserWarning)

    def _round_query_size(self, num_candidates: int) -> int:
        k = self.query_size
        if self._query_size_limit is not None:
            k = min(k, self._query_size_limit)
            self._query_size_limit = None
        if k > num_candidates:
            warnings.warn(
                f"ActiveLabCallback(query_size={self.query_size}) is larger than the {num_candidates} candidate "
                f"examples (labeled + unlabeled pool); asking for {num_candidates} labels this round.",
                UserWarning,
                stacklevel=3,
            )
            k = num_candidates
        return k

    # ------------------------------------------------------------------ step 2: oracle and store
    def _ask(self, store: Any, plan: _Plan, requests: Sequence[LabelRequest], seed: int) -> _Outcome:
        r = plan.round
        batch = tuple(requests) if not plan.resume else tuple(store.pending_requests(r))
        state = self._round_states.load(store, r)
        answers: list[Annotation] = []
        still_pending = exhausted = replaced = 0
        while batch:
            response = self._request(store, batch)
            answers += response.annotations
            still_pending += len(response.pending)
            exhausted += len(response.exhausted)
            batch = self._replacements(store, r, state) if response.exhausted else ()
            replaced += len(batch)
        if still_pending == 0:
            store.complete_round(r)
        record = store.round_record(r)
        return _Outcome(
            round=r,
            seed=record.seed if record is not None else seed,
            requests=tuple(store.requests(r)),
            answers=tuple(answers),
            num_pending=still_pending,
            num_exhausted=exhausted,
            num_replaced=replaced,
            num_skipped=int((state or {}).get("num_skipped", 0)),
            round_state=state,
            resumed=plan.resume,
        )

    def _request(self, store: Any, batch: Sequence[LabelRequest]) -> OracleResponse:
        """Ask the oracle, check its answer, store it durably (before anything uses it)."""
        response = self.oracle.request(list(batch))
        if not isinstance(response, OracleResponse):
            raise TypeError(
                f"{type(self.oracle).__name__}.request(...) returned {type(response).__name__}; an oracle must "
                f"return an OracleResponse(annotations=..., pending=..., exhausted=...)."
            )
        response = check_response(
            batch, response, oracle_name=_oracle_name(self.oracle), num_classes=store.num_classes
        )
        store.record_response(response)
        return response

    @staticmethod
    def _replacements(store: Any, r: int, state: dict[str, Any] | None) -> tuple[LabelRequest, ...]:
        """Requests for the next-best candidates of round ``r``, one per request the oracle reported
        exhausted, so the round still spends its ``query_size`` (recorded before they are asked)."""
        if not state or "reserve_ids" not in state:
            return ()
        status = store.request_status(r)
        need = int(state["query_size"]) - sum(s != "exhausted" for s in status.values())
        if need <= 0:
            return ()
        requested = torch.tensor([q.example_id for q in store.requests(r)], dtype=torch.int64)
        skip = torch.cat([requested, torch.tensor(store.exhausted_example_ids(), dtype=torch.int64)])
        ids = torch.as_tensor(state["reserve_ids"], dtype=torch.int64)
        scores = torch.as_tensor(state["reserve_scores"], dtype=torch.float64)
        keep = ~torch.isin(ids, skip)
        ids, scores = ids[keep][:need], scores[keep][:need]
        if ids.numel() == 0:
            return ()
        new = make_requests(ids, scores, round=r, existing_annotators=store.annotators_of(ids))
        store.add_requests(r, new)
        return tuple(new)

    # ------------------------------------------------------------------ step 3: apply on every rank
    def _apply(self, trainer: pl.Trainer, datamodule: Any, outcome: _Outcome) -> None:
        store = datamodule.store
        if not trainer.is_global_zero and getattr(store, "path", ":memory:") == ":memory:":
            # Replay on this rank's own in-memory store (the oracle is never asked here).
            store.begin_round(outcome.round, outcome.seed, outcome.requests)
            store.add_annotations(outcome.answers)
            if outcome.num_pending == 0:
                store.complete_round(outcome.round)
        if outcome.round_state is not None:
            self._round_states.remember(outcome.round, outcome.round_state)
            self._refresh(datamodule, outcome.round_state)
        else:
            datamodule.refresh(None)

    @staticmethod
    def _refresh(datamodule: Any, state: dict[str, Any]) -> None:
        """Refresh the datamodule from the state it had when the round selected, with the round's
        probabilities: the same consensus (and shuffling seeds) whether or not the run was resumed."""
        if state.get("datamodule") is not None and hasattr(datamodule, "load_state_dict"):
            datamodule.load_state_dict(state["datamodule"])
        datamodule.refresh(state["probs"], example_ids=state["ids"])

    # ------------------------------------------------------------------ summary and report
    def _summarize(
        self,
        datamodule: Any,
        outcome: _Outcome,
        scores: dict[str, torch.Tensor | None],
        diagnostics: dict[str, float],
        seconds: float,
    ) -> RoundSummary:
        summary = summarize_round(
            datamodule,
            round=outcome.round,
            strategy=self.strategy,
            requests=outcome.requests,
            answers=outcome.answers,
            num_pending=outcome.num_pending,
            num_exhausted=outcome.num_exhausted,
            num_replaced=outcome.num_replaced,
            num_skipped=outcome.num_skipped,
            labeled_scores=scores["labeled"],
            unlabeled_scores=scores["unlabeled"],
            round_state=outcome.round_state,
            diagnostics=diagnostics,
            true_labels=self.true_labels,
            seconds=seconds,
        )
        self.last_summary = summary
        entry = {**summary.scalars(), "strategy": summary.strategy, "resumed": outcome.resumed, **diagnostics}
        self.history = [h for h in self.history if h["round"] != summary.round] + [entry]
        return summary

    def _reporter(self, store: Any) -> Any:
        if self.reporter == "auto":
            from activelab_lightning.reporting import Reporter, round_log_path

            path = getattr(store, "path", ":memory:")
            self.reporter = Reporter(round_log_path(path) if path != ":memory:" else None, console=False)
        return self.reporter

    def _report(self, trainer: pl.Trainer, store: Any, summary: RoundSummary) -> None:
        reporter = self._reporter(store)
        if reporter is not None:
            reporter.log_round(trainer, summary)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _datamodule(trainer: pl.Trainer) -> Any:
        datamodule = getattr(trainer, "datamodule", None)
        missing = [
            a
            for a in ("store", "labeled_ids", "unlabeled_ids", "refresh", "pool_dataloader")
            if not hasattr(datamodule, a)
        ]
        if datamodule is None or missing:
            raise TypeError(
                f"ActiveLabCallback needs the trainer's datamodule to be an ActiveDataModule (pools + store), but "
                f"got {type(datamodule).__name__}"
                + (f" without {missing}" if datamodule is not None else "")
                + ". Call `trainer.fit(model, datamodule=ActiveDataModule(dataset, store))`."
            )
        return datamodule


def _oracle_name(oracle: Any) -> str:
    return str(getattr(oracle, "name", type(oracle).__name__))
