"""``ActiveLearningLoop``: rounds of train → acquire, a fresh ``Trainer`` per round, resumable.

The loop is the only place that builds Trainers. Each round it

1. seeds everything from ``(seed, round)`` (a resumed round trains exactly as the original);
2. builds a fresh model (the initial weights again, unless ``warm_start``) and a fresh ``Trainer``
   (a fitted Trainer silently refuses to train again; user callbacks are copied per round, loggers
   are reused so W&B stays one run);
3. fits it; the :class:`~activelab_lightning.callback.ActiveLabCallback` acquires in
   ``on_train_end`` (predict → score → select → oracle → store → refresh → report);
4. optionally tests it (``trainer.test``) and records a history row.

**Out-of-sample predictions.** ActiveLab assumes the labeled pool's ``pred_probs`` are
out-of-sample. By default the callback makes them so inside the round's one fit, with cross-fitted
linear heads on the model's penultimate features (``ActiveLabCallback(out_of_sample="crossfit")``,
see :mod:`~activelab_lightning.predictions.crossfit`). ``cv_folds=K`` is the paper's reference: ``K``
extra fold models, each trained without one (stratified, seeded) fold, predict their held-out fold;
those out-of-fold probabilities score the labeled pool while the model trained on everything scores
the unlabeled pool and is tested. ``K + 1`` fits per round. For ensemble strategies
(``activelab_ensemble``, ``disagreement``) the ``K`` fold models are then the ensemble (each
member's labeled predictions are out-of-sample on its own held-out fold only).

**Resume.** The store is the source of truth: ``run()`` starts at
``store.last_completed_round() + 1``; a round that was begun but not completed (crash, or human
labels still missing) is finished first — its pending requests are asked again, never selected
anew. The loop stops after ``rounds`` rounds in the store or when ``budget`` label requests were made
(the last round is cut to the remaining budget).

Example::

    >>> loop = ActiveLearningLoop(model, datamodule, ActiveLabCallback(oracle, query_size=100),
    ...                           trainer_kwargs={"max_epochs": 20}, rounds=5)  # doctest: +SKIP
    >>> history = loop.run()                                                    # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from activelab_lightning._distributed import is_rank_zero, rank_zero_warn
from activelab_lightning._files import atomic_path
from activelab_lightning.callback import ActiveLabCallback
from activelab_lightning.predictions import collect_predictions, stratified_folds
from activelab_lightning.round_state import state_folder
from activelab_lightning.selection import get_strategy, round_seed
from activelab_lightning.store._lock import RunLock

__all__ = ["ActiveLearningLoop"]

ModelSource = pl.LightningModule | Callable[[], pl.LightningModule]

_DEFAULT_TRAINER_KWARGS: dict[str, Any] = {
    "max_epochs": 10,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
}


class ActiveLearningLoop:
    """Run active-learning rounds: fit, acquire, (test), repeat — resumable from the store.

    Args:
        model: A ``LightningModule`` (its initial weights are restored every round unless
            ``warm_start``) or a zero-argument factory returning a new one.
        datamodule: An :class:`~activelab_lightning.data.ActiveDataModule`.
        callback: The :class:`~activelab_lightning.callback.ActiveLabCallback` (kept across rounds).
        trainer_kwargs: ``Trainer`` arguments for every round (``callbacks`` are deep-copied per
            round). Defaults: ``max_epochs=10``, no checkpointing, progress bar, model summary or logger.
        rounds: Total number of acquisition rounds in the store at which to stop.
        budget: Stop once this many label requests were made in total (all rounds, resumed runs
            included); the last round's ``query_size`` is cut to what remains.
        warm_start: Continue from the previous round's weights instead of the initial ones.
        cv_folds: ``K >= 2``: out-of-fold labeled ``pred_probs`` from ``K`` fold models, the
            reference for the callback's cheaper cross-fitted heads (see above). ``None``: one fit
            per round.
        test_each_round: Call ``trainer.test`` after each round if the datamodule has test data.
        seed: Base seed; round ``r`` is seeded with ``round_seed(seed, r)``.
        loggers: Lightning loggers reused by every round's Trainer (one W&B run for all rounds).

    Attributes:
        history: One dict per round run by this loop: ``round``, ``num_annotations``,
            ``num_labeled``, ``consensus_accuracy``, ``test`` metrics, ``seconds``...
    """

    def __init__(
        self,
        model: ModelSource,
        datamodule: Any,
        callback: ActiveLabCallback,
        *,
        trainer_kwargs: dict[str, Any] | None = None,
        rounds: int = 10,
        budget: int | None = None,
        warm_start: bool = False,
        cv_folds: int | None = None,
        test_each_round: bool = True,
        seed: int = 0,
        loggers: Sequence[Any] | Any | None = None,
    ) -> None:
        if not isinstance(callback, ActiveLabCallback):
            raise TypeError(
                f"ActiveLearningLoop(callback={type(callback).__name__}): pass an ActiveLabCallback."
            )
        if callback.every_n_epochs is not None:
            raise ValueError(
                f"ActiveLearningLoop runs one acquisition per round, but the callback has "
                f"every_n_epochs={callback.every_n_epochs} (continuous mode). Use ActiveLabCallback(every_n_epochs=None) "
                f"here, or a plain Trainer for continuous mode."
            )
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ValueError(f"ActiveLearningLoop(rounds={rounds!r}): must be an int >= 0.")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise ValueError(
                f"ActiveLearningLoop(budget={budget!r}): must be None or an int >= 0 (label requests)."
            )
        if cv_folds is not None and (
            isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2
        ):
            raise ValueError(
                f"ActiveLearningLoop(cv_folds={cv_folds!r}): must be None (in-sample) or an int >= 2."
            )
        if isinstance(model, pl.LightningModule):
            self._template: pl.LightningModule | None = copy.deepcopy(model)
            self._factory: Callable[[], pl.LightningModule] | None = None
        elif callable(model):
            self._template, self._factory = None, model
        else:
            raise TypeError(
                f"ActiveLearningLoop(model={type(model).__name__}): pass a LightningModule or a zero-argument "
                f"factory returning one."
            )
        kwargs = dict(trainer_kwargs or {})
        if (
            "callbacks" in kwargs
            and kwargs["callbacks"] is not None
            and not isinstance(kwargs["callbacks"], (list, tuple))
        ):
            kwargs["callbacks"] = [kwargs["callbacks"]]
        if any(isinstance(c, ActiveLabCallback) for c in kwargs.get("callbacks") or []):
            raise ValueError(
                "ActiveLearningLoop(trainer_kwargs={'callbacks': [...]}) must not contain an ActiveLabCallback; "
                "pass it as `callback=` (the loop adds it to every round's Trainer)."
            )
        self.model = model
        self.datamodule = datamodule
        self.callback = callback
        self.trainer_kwargs = kwargs
        self.rounds = rounds
        self.budget = budget
        self.warm_start = warm_start
        self.cv_folds = cv_folds
        self.test_each_round = test_each_round
        self.seed = int(seed)
        self.loggers = loggers
        self.history: list[dict[str, Any]] = []
        self._current: pl.LightningModule | None = None

    # ------------------------------------------------------------------ public
    @property
    def store(self) -> Any:
        return self.datamodule.store

    def requests_made(self) -> int:
        """Label requests recorded in the store over all rounds (what ``budget`` counts)."""
        return sum(len(self.store.requests(rec.round)) for rec in self.store.rounds())

    def run(self) -> list[dict[str, Any]]:
        """Run (or resume) rounds until ``rounds`` or ``budget`` is reached.

        Returns:
            :attr:`history` (the rounds run by this call and earlier calls of this loop). Row ``r``
            describes round ``r`` as it ended: ``consensus_accuracy`` and the counts are measured
            *after* round ``r``'s acquisition, while ``test`` holds the metrics of the model trained
            *before* it (on the labels of rounds ``< r``). For a paper-style curve whose point ``r``
            pairs the labels after ``r`` acquisitions with a model trained on them, run one more
            round (or one more fit) and shift the test column by one.

        Raises:
            WaitingForLabels: A human oracle has not answered yet; re-run later to continue.
            StoreLocked: Another process runs on the same store (nothing was changed).
        """
        lock = RunLock(getattr(self.store, "path", ":memory:"))
        if is_rank_zero():
            lock.acquire()  # one run per store; the kernel drops it if this process dies
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> list[dict[str, Any]]:
        self.callback.restore(self.datamodule)
        while True:
            r = self._next_round()
            if r >= self.rounds:
                break
            in_flight = self.store.round_record(r) is not None
            if self.budget is not None and not in_flight:
                remaining = self.budget - self.requests_made()
                if remaining <= 0:
                    break
                self.callback.limit_next_query_size(remaining)
            self._run_round(r)
            status = list(self.store.request_status(r).values())
            if not any(st in ("answered", "pending") for st in status):  # from the store: resume-safe
                rank_zero_warn(
                    f"ActiveLearningLoop: stopping after round {r}: no candidate example can get another label "
                    f"from this oracle ({status.count('exhausted')} requests of the round came back "
                    f"exhausted). The pool is used up.",
                    category=UserWarning,
                )
                break
            if self._next_round() <= r:  # the round did not complete (should have raised WaitingForLabels)
                raise RuntimeError(f"Round {r} did not complete; check the oracle's pending requests.")
        return self.history

    # ------------------------------------------------------------------ one round
    def _run_round(self, r: int) -> None:
        started = time.perf_counter()
        pl.seed_everything(round_seed(self.seed, r) % (2**32), workers=True, verbose=False)
        module = self._fresh_model(r)
        if self.cv_folds is not None and self.store.round_record(r) is None:
            self._cross_validate(r)
        trainer = self._trainer(extra_callbacks=[self.callback])
        trainer.fit(module, datamodule=self.datamodule)
        test_metrics: dict[str, float] = {}
        if self.test_each_round and self._has_test_data():
            results = trainer.test(module, datamodule=self.datamodule, verbose=False)
            for result in results:
                test_metrics.update({k: float(v) for k, v in result.items()})
            self._report_evaluation(r, test_metrics, trainer)
        self._current = module
        self._save_model(r, module)
        last = self.callback.history[-1] if self.callback.history else {}
        row = {
            "round": r,
            "num_annotations": len(self.store),
            "num_labeled": int(torch.as_tensor(self.datamodule.labeled_ids).numel()),
            "num_requests": last.get("num_requests"),
            "num_new": last.get("num_new"),
            "num_relabel": last.get("num_relabel"),
            "consensus_accuracy": last.get("consensus_accuracy"),
            "test": test_metrics,
            "resumed": last.get("resumed", False),
            "seconds": time.perf_counter() - started,
        }
        self.history = [h for h in self.history if h["round"] != r] + [row]

    def _report_evaluation(self, r: int, metrics: dict[str, float], trainer: pl.Trainer) -> None:
        """Hand the round's test metrics to the callback's reporter (the model is tested after its acquisition)."""
        reporter = self.callback.reporter
        log_evaluation = getattr(reporter, "log_evaluation", None)
        if not metrics or log_evaluation is None or not trainer.is_global_zero:
            return
        if any(rec.get("round") == r for rec in getattr(reporter, "history", ())):
            log_evaluation(r, metrics, trainer=trainer)

    def _next_round(self) -> int:
        in_flight = [rec.round for rec in self.store.rounds() if rec.status != "completed"]
        return in_flight[0] if in_flight else self.store.last_completed_round() + 1

    def _trainer(self, *, extra_callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
        kwargs = {**_DEFAULT_TRAINER_KWARGS, **self.trainer_kwargs}
        user_callbacks = [copy.deepcopy(c) for c in kwargs.pop("callbacks", None) or []]
        if self.loggers is not None:
            kwargs["logger"] = self.loggers
        return pl.Trainer(callbacks=[*user_callbacks, *extra_callbacks], **kwargs)

    def _fresh_model(self, r: int) -> pl.LightningModule:
        if self.warm_start:
            if self._current is not None:
                return self._current
            saved = self._load_model(r - 1)
            module = self._new_model()
            if saved is not None:
                module.load_state_dict(saved)
            return module
        return self._new_model()

    def _new_model(self) -> pl.LightningModule:
        if self._factory is not None:
            module = self._factory()
            if not isinstance(module, pl.LightningModule):
                raise TypeError(
                    f"ActiveLearningLoop: the model factory returned {type(module).__name__}, not a LightningModule."
                )
            return module
        assert self._template is not None
        return copy.deepcopy(self._template)

    def _has_test_data(self) -> bool:
        return getattr(self.datamodule, "test_dataset", None) is not None

    # ------------------------------------------------------------------ K-fold out-of-sample probabilities
    def _cross_validate(self, r: int) -> None:
        """Train ``cv_folds`` fold models; hand their out-of-fold predictions to the callback."""
        dm = self.datamodule
        labeled = torch.as_tensor(dm.labeled_ids, dtype=torch.int64)
        k = self.cv_folds
        assert k is not None
        if labeled.numel() < k:
            return  # too few labeled examples to fold: in-sample this round
        folds = stratified_folds(
            torch.as_tensor(dm.consensus_labels, dtype=torch.int64), k, seed=round_seed(self.seed, r)
        )
        num_classes = self.store.num_classes
        oof = torch.zeros(labeled.numel(), num_classes, dtype=torch.float64)
        members: list[pl.LightningModule] = []
        member_probs: list[torch.Tensor] = []
        ensemble = get_strategy(self.callback.strategy).input == "ensemble"
        for fold in range(k):
            held_out = folds == fold
            module = self._new_model()
            trainer = self._trainer()
            trainer.fit(module, datamodule=_FoldData(dm, torch.nonzero(~held_out).flatten()))
            _, probs = collect_predictions(
                trainer,
                module,
                dm,
                labeled[held_out],
                predict_fn=self.callback.predict_fn,
                num_classes=num_classes,
            )
            oof[held_out] = probs
            if ensemble:
                _, all_probs = collect_predictions(
                    trainer, module, dm, labeled, predict_fn=self.callback.predict_fn, num_classes=num_classes
                )
                all_probs[held_out] = probs
                members.append(module)
                member_probs.append(all_probs)
        self.callback.use_predictions(
            labeled_pred_probs=oof,
            labeled_ensemble_pred_probs=torch.stack(member_probs) if ensemble else None,
            ensemble=members if ensemble else None,
        )

    # ------------------------------------------------------------------ warm-start weights (resume)
    def _model_path(self, r: int) -> Path | None:
        path = getattr(self.store, "path", ":memory:")
        if not self.warm_start or path == ":memory:" or r < 0:
            return None
        return state_folder(path) / f"round-{r:05d}-model.pt"

    def _save_model(self, r: int, module: pl.LightningModule) -> None:
        path = self._model_path(r)
        if path is None or not is_rank_zero():
            return
        with atomic_path(path) as tmp:
            torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, tmp)

    def _load_model(self, r: int) -> dict[str, torch.Tensor] | None:
        path = self._model_path(r)
        if path is None or not path.exists():
            return None
        return torch.load(path, weights_only=True)


class _FoldData(pl.LightningDataModule):
    """The training data of one CV fold: ``ActiveDataModule.labeled_subset_dataloader(positions)``
    (consensus targets, the user's batch format, seeded shuffling, DDP sharding)."""

    def __init__(self, datamodule: Any, positions: torch.Tensor) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.positions = positions

    def train_dataloader(self) -> Any:
        return self.datamodule.labeled_subset_dataloader(self.positions)
