"""Snow et al. (2008) RTE with its real Mechanical Turk annotators, through the library's Lightning loop.

Data (read-only, never copied; see ``<data-dir>/snow2008/README.md``): ``rte_annotations.csv.gz``
(800 RTE-1 text/hypothesis pairs x 10 binary entailment labels from 164 workers, with the gold label)
and ``rte_texts.csv.gz`` (the texts). Unlike the Wall Robot and CIFAR-10 benchmarks, every label a
strategy asks for is a label a real person gave: nothing is simulated.

Protocol:

* features: TF-IDF of ``text + " [SEP] " + hypothesis`` (scikit-learn ``TfidfVectorizer``, word 1-2
  grams, ``sublinear_tf``, ``min_df=2``, at most 5,000 features), fitted on all 800 texts (unsupervised,
  transductive), then ``TruncatedSVD`` to ``--svd-dim 256`` (fixed ``random_state=0``), float32. Why SVD:
  the linear model itself is cheap on the dense 5,000-dim TF-IDF, but the callback's cross-fitted heads
  are fitted on the input of the model's last ``nn.Linear``, i.e. on the features themselves: with
  iterative (L-BFGS) heads that took ~5-10 s per round on 5,000 dims (~80 s per run, ~55 min for the
  40 runs), and closed-form heads project inputs wider than their ``max_dim=256`` on principal
  directions first. 256 SVD dims keep the heads on exactly the model's features (no projection) and a
  run at a few seconds. ``--features tfidf`` keeps the dense TF-IDF (for comparison only).
* split (``--split-seed 0``, the same for every run): 200 test items (their gold label is used only for
  the test accuracy) and 600 pool items; 150 of the pool items start labeled, the other 450 unlabeled.
  Each initially labeled item gets ONE of its 10 real labels, the annotator drawn with the run seed
  (so the seeds differ in the initial label noise; all strategies of one seed start from the same labels).
* oracle: :class:`~activelab_lightning.oracles.ReplayOracle` over the real labels of the 600 pool items.
  A request is answered with the label of one of the item's annotators who has not labeled it yet
  (order: a hash of the run seed, item and annotator); an item whose 10 labels are all in the store is
  ``exhausted`` and the request is lost (counted per round in the run files as ``num_exhausted``).
* model: logistic regression, i.e. :class:`~activelab_lightning.models.MLPClassifier` with
  ``hidden_dims=()`` (one ``nn.Linear``), Adam, full batch (``--batch-size 1024`` > any labeled set),
  ``--epochs`` / ``--lr`` / ``--weight-decay`` chosen ONCE with ``--select-settings``: 5-fold CV on the
  initial 150 labeled items of seed 0 against their single (noisy) crowd labels, lowest CV log-loss over
  a small grid — no test rows, no gold labels, nothing per strategy. Trained with Lightning each round
  on the CROWDLAB consensus labels (the datamodule default, the same for every strategy); labeled
  ``pred_probs`` out-of-sample from the callback's cross-fitted heads (the library default).
* rounds: ``--rounds 11`` measurement points (round 0 = before any new label), i.e. 10 acquisitions
  of ``--query-size 50`` requests (new items and re-labels together); point ``r`` = test accuracy of
  the model trained on the consensus after ``r`` acquisitions, and the accuracy of that consensus on
  the labeled pool items against gold (:func:`common.measure_run`). Each run file also holds
  ``majority_vote_acc`` (plain majority vote of the same labels, ties = 1/2) as a reference for the
  consensus, ``num_exhausted`` per acquisition and the library state it ran with (``library``).

Runs are independent (``--jobs``; ``OMP_NUM_THREADS=1``); each writes
``<out>/runs/<strategy>-s<seed>.json`` and is skipped when that file exists (resume). ``<out>/results.json``,
``results.md`` and ``curves.png`` are written by :mod:`report`; ``results.md`` gets two extra tables: the consensus
vs the plain majority vote of the same labels, and the exhausted (lost) requests.

Example::

    OMP_NUM_THREADS=1 python benchmarks/paper/snow2008.py --select-settings     # how the settings were chosen
    OMP_NUM_THREADS=1 python benchmarks/paper/snow2008.py --jobs 1 --out benchmarks/results/snow2008_rte
    python benchmarks/paper/snow2008.py --quick --data-dir /tmp/fake --out /tmp/snow-quick
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import numpy as np

STRATEGIES = common.STRATEGIES
QUICK = {"seeds": [0], "rounds": 3, "strategies": ["random", "activelab"], "epochs": 5}
FILES = ("snow2008/rte_annotations.csv.gz", "snow2008/rte_texts.csv.gz")
#: The grid of ``--select-settings`` (full-batch Adam on the linear model).
SETTINGS_GRID = {"lr": (0.01, 0.03, 0.1), "weight_decay": (1e-4, 1e-3, 1e-2), "epochs": (50, 100)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="folder holding snow2008/")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=11, help="measurement points, round 0 included")
    p.add_argument("--query-size", type=int, default=50)
    p.add_argument("--split-seed", type=int, default=0, help="test / pool / initially-labeled split")
    p.add_argument("--test-size", type=int, default=200)
    p.add_argument("--initial", type=int, default=150, help="pool items that start with one real label")
    p.add_argument("--features", choices=("tfidf", "svd"), default="svd")
    p.add_argument("--max-features", type=int, default=5000)
    p.add_argument("--svd-dim", type=int, default=256, help="only with --features svd")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=1024, help=">= the labeled set: full batch")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (one per core)")
    p.add_argument(
        "--select-settings",
        action="store_true",
        help="print the CV grid on the initial labeled pool that --epochs/--lr/--weight-decay come from; run nothing",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK['strategies']}, seed 0, {QUICK['rounds']} rounds, {QUICK['epochs']} epochs",
    )
    p.add_argument("--label", default=None, help="name of this benchmark in the report")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/snow2008_rte"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.strategies, args.epochs = (
            QUICK["seeds"],
            QUICK["rounds"],
            QUICK["strategies"],
            QUICK["epochs"],
        )
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: need at least 1 (round 0 = before any new label)")
    for name in FILES:
        if not (args.data_dir / name).is_file():
            p.error(f"--data-dir {args.data_dir}: no {name} there (expected the shared data folder layout)")
    return args


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Snow2008:
    """The RTE items in ``item_index`` order and their real annotations (long table)."""

    texts: list[str]  # (n_items,) "text [SEP] hypothesis"
    gold: np.ndarray  # (n_items,) int64
    ann_item: np.ndarray  # (T,) item index of each annotation
    ann_worker: np.ndarray  # (T,) worker id (str)
    ann_label: np.ndarray  # (T,) int64 label


def _read_csv(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return list(csv.DictReader(io.StringIO(f.read())))


def load_data(data_dir: Path) -> Snow2008:
    """Read ``<data_dir>/snow2008/rte_{annotations,texts}.csv.gz`` and check they agree."""
    ann = _read_csv(data_dir / FILES[0])
    texts = {int(r["orig_id"]): r for r in _read_csv(data_dir / FILES[1])}
    items = sorted({int(r["item_index"]) for r in ann})
    if items != list(range(len(items))):
        raise ValueError(f"{FILES[0]}: item_index must be 0..n-1, got {len(items)} distinct values")
    orig = {}
    for r in ann:
        i, o = int(r["item_index"]), int(r["orig_id"])
        if orig.setdefault(i, o) != o:
            raise ValueError(f"{FILES[0]}: item {i} has two orig_ids ({orig[i]}, {o})")
    gold = np.array([int(texts[orig[i]]["true_label"]) for i in items], dtype=np.int64)
    for r in ann:
        if int(r["true_label"]) != gold[int(r["item_index"])]:
            raise ValueError(f"{FILES[0]}: item {r['item_index']}'s true_label disagrees with {FILES[1]}")
    return Snow2008(
        texts=[f"{texts[orig[i]]['text']} [SEP] {texts[orig[i]]['hypothesis']}" for i in items],
        gold=gold,
        ann_item=np.array([int(r["item_index"]) for r in ann], dtype=np.int64),
        ann_worker=np.array([f"w{r['annotator_id']}" for r in ann], dtype=object),
        ann_label=np.array([int(r["label"]) for r in ann], dtype=np.int64),
    )


def featurize(args: argparse.Namespace, data: Snow2008) -> np.ndarray:
    """``(n_items, D)`` float32 TF-IDF (or its SVD) of all texts, fitted without labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=args.max_features)
    x = vec.fit_transform(data.texts)
    if args.features == "svd":
        from sklearn.decomposition import TruncatedSVD

        x = TruncatedSVD(min(args.svd_dim, x.shape[1] - 1, x.shape[0] - 1), random_state=0).fit_transform(x)
        return np.asarray(x, dtype=np.float32)
    return np.asarray(x.toarray(), dtype=np.float32)


@dataclass(frozen=True)
class Split:
    test_items: np.ndarray  # (n_test,) item indices
    pool_items: np.ndarray  # (n_pool,) item indices; example id i of the datamodule is pool_items[i]
    initial_ids: np.ndarray  # (n_initial,) example ids (positions in pool_items) that start labeled


def make_split(args: argparse.Namespace, n_items: int) -> Split:
    if args.test_size + args.initial > n_items:
        raise ValueError(f"--test-size {args.test_size} + --initial {args.initial} > {n_items} items")
    rng = np.random.default_rng(args.split_seed)
    perm = rng.permutation(n_items)
    pool = np.sort(perm[args.test_size :])
    initial = np.sort(rng.choice(len(pool), size=args.initial, replace=False))
    return Split(test_items=np.sort(perm[: args.test_size]), pool_items=pool, initial_ids=initial)


def pool_table(data: Snow2008, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The annotations of the pool items, with example ids = positions in ``split.pool_items``."""
    position = np.full(len(data.gold), -1, dtype=np.int64)
    position[split.pool_items] = np.arange(len(split.pool_items))
    keep = position[data.ann_item] >= 0
    return position[data.ann_item[keep]], data.ann_worker[keep], data.ann_label[keep]


def initial_annotations(data: Snow2008, split: Split, seed: int) -> list[Any]:
    """One real label per initially labeled item: a uniformly drawn one of its annotators (run seed)."""
    from activelab_lightning.records import Annotation

    ex, worker, label = pool_table(data, split)
    rng = np.random.default_rng([seed, 2008])
    out = []
    for i in split.initial_ids:
        rows = np.nonzero(ex == i)[0]
        j = rows[rng.integers(len(rows))]
        out.append(Annotation(example_id=int(i), annotator_id=str(worker[j]), label=int(label[j])))
    return out


# ---------------------------------------------------------------------------- one run
def protocol(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define the benchmark (stored next to the results)."""
    return {
        "benchmark": "snow2008_rte",
        "rounds": args.rounds,
        "acquisitions": args.rounds - 1,
        "query_size": args.query_size,
        "seeds": args.seeds,
        "pred_probs": "crossfit",
        "consensus": "best_quality",
        "temperature_objective": "class-position",
        "split_seed": args.split_seed,
        "test_size": args.test_size,
        "pool_size": "all items - test_size",
        "initial_labeled": args.initial,
        "annotators": "real (Snow et al. 2008 RTE, ReplayOracle over the pool items' 10 labels each)",
        "model": {
            "type": "logistic regression (MLPClassifier, hidden_dims=())",
            "features": (
                f"tfidf(1-2 grams, sublinear_tf, min_df=2, max_features={args.max_features})"
                + (f" -> TruncatedSVD({args.svd_dim})" if args.features == "svd" else ", dense float32")
            ),
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
        },
        "quick": bool(args.quick),
    }


def run_one(args: argparse.Namespace, strategy: str, seed: int) -> dict[str, Any]:
    """One active-learning run; returns per-round curves (see :func:`common.measure_run`)."""
    import torch
    from torch.utils.data import TensorDataset

    from activelab_lightning import ActiveDataModule, ActiveLabCallback, AnnotationStore
    from activelab_lightning.models import MLPClassifier
    from activelab_lightning.oracles import ReplayOracle

    torch.set_num_threads(1)
    data = load_data(args.data_dir)
    x = torch.from_numpy(featurize(args, data))
    split = make_split(args, len(data.gold))
    gold = torch.from_numpy(data.gold)
    pool = torch.from_numpy(split.pool_items)
    test = torch.from_numpy(split.test_items)
    pool_gold = gold[pool]
    store = AnnotationStore(":memory:", num_examples=len(pool), class_names=["no", "yes"])
    dm = ActiveDataModule(
        TensorDataset(x[pool]),
        store,
        test_dataset=TensorDataset(x[test], gold[test]),
        batch_size=args.batch_size,
        inference_batch_size=4096,
        initial_labels=initial_annotations(data, split, seed),
        true_labels=pool_gold,
        consensus_method="best_quality",
        seed=seed,
    )
    ex, worker, label = pool_table(data, split)
    oracle = ReplayOracle(ex, list(worker), label, seed=seed, num_examples=len(pool), num_classes=2)
    callback = ActiveLabCallback(
        oracle,
        query_size=args.query_size,
        strategy=strategy,
        seed=seed,
        true_labels=pool_gold,
        reporter=None,
    )

    def model() -> MLPClassifier:
        return MLPClassifier(
            x.shape[1], 2, hidden_dims=(), dropout=0.0, lr=args.lr, weight_decay=args.weight_decay
        )

    result = common.measure_run(
        model,
        dm,
        callback,
        rounds=args.rounds,
        cv_folds=None,
        seed=seed,
        trainer_kwargs={"max_epochs": args.epochs, "accelerator": "cpu", "devices": 1},
    )
    counts = store.label_matrix(torch.arange(len(pool)))[0]
    per_item = (~torch.isnan(counts)).sum(1)
    result.update(
        majority_vote_acc=majority_vote_curve(store, pool_gold.numpy(), args.rounds),
        model_weight=[h.get("model_weight") for h in callback.history],
        library=library_state(),
        num_requests=[h["num_requests"] for h in callback.history],
        num_answers=[h["num_answers"] for h in callback.history],
        num_exhausted=[h["num_exhausted"] for h in callback.history],
        items_with_all_labels=int((per_item >= 10).sum()),
        max_labels_per_item=int(per_item.max()),
    )
    return {"strategy": strategy, "seed": seed, **result}


def library_state() -> dict[str, str]:
    """Git commit of the checkout and a hash of the library's source files as run (the working tree
    may be ahead of the commit)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted((root / "activelab_lightning").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"commit": commit, "source_sha256": digest.hexdigest()[:16]}


def majority_vote_curve(store: Any, gold: np.ndarray, rounds: int) -> list[float]:
    """Reference: accuracy of the plain majority vote of the same labels at every measurement point
    (point ``r`` = initial labels + acquisitions ``0..r-1``; a tie counts 1/2, a random tie-break)."""
    rows = [
        (a["example_id"], a["label"], a["round"]) for a in store.iter_annotations() if not a["is_correction"]
    ]
    out = []
    for r in range(rounds):
        votes = np.zeros((len(gold), 2))
        for e, label, rnd in rows:
            if rnd is None or rnd < r:
                votes[e, label] += 1
        labeled = votes.sum(1) > 0
        right, wrong = votes[labeled, gold[labeled]], votes[labeled, 1 - gold[labeled]]
        out.append(float(np.mean((right > wrong) + 0.5 * (right == wrong))))
    return out


def _worker(job: tuple[argparse.Namespace, str, int]) -> str:
    args, strategy, seed = job
    result = run_one(args, strategy, seed)
    result["protocol"] = protocol(args)
    line = common.write_run(common.run_file(args.out, strategy, seed), result)
    return f"{line}, {sum(result['num_exhausted'])} exhausted"


# ---------------------------------------------------------------------------- settings selection
def _cv_logreg(
    x: np.ndarray, y: np.ndarray, *, lr: float, weight_decay: float, epochs: int, folds: int = 5
) -> tuple[float, float]:
    """Mean 5-fold CV (log-loss, accuracy) of the benchmark's linear model (full-batch Adam, plain torch:
    the same steps as the Lightning fit with one batch per epoch), against the given labels."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    losses, accs = [], []
    for k, (tr, va) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y)):
        torch.manual_seed(k)
        lin = torch.nn.Linear(x.shape[1], 2)
        opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
        xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
        for _ in range(epochs):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(lin(xt), yt).backward()
            opt.step()
        with torch.no_grad():
            logits = lin(torch.from_numpy(x[va]))
            yv = torch.from_numpy(y[va])
            losses.append(float(torch.nn.functional.cross_entropy(logits, yv)))
            accs.append(float((logits.argmax(1) == yv).double().mean()))
    return statistics.fmean(losses), statistics.fmean(accs)


def select_settings(args: argparse.Namespace) -> list[dict[str, Any]]:
    """CV grid on the initial labeled pool of seed 0 (its single crowd labels; no test rows, no gold)."""
    import torch

    torch.set_num_threads(1)
    data = load_data(args.data_dir)
    x = featurize(args, data)
    split = make_split(args, len(data.gold))
    initial = initial_annotations(data, split, seed=0)
    ids = np.array([a.example_id for a in initial])
    xs = x[split.pool_items[ids]]
    ys = np.array([a.label for a in initial], dtype=np.int64)
    rows = []
    for lr, wd, epochs in itertools.product(*SETTINGS_GRID.values()):
        loss, acc = _cv_logreg(xs, ys, lr=lr, weight_decay=wd, epochs=epochs)
        rows.append({"lr": lr, "weight_decay": wd, "epochs": epochs, "cv_logloss": loss, "cv_acc": acc})
    rows.sort(key=lambda r: r["cv_logloss"])
    return rows


# ---------------------------------------------------------------------------- main
def _mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.pstdev(values) if len(values) > 1 else 0.0:.4f}"


def extra_sections(out: Path, strategies: list[str], seeds: list[int]) -> str:
    """Markdown appended to ``results.md``: the majority-vote reference and the lost requests."""
    groups = {
        s: [json.loads(p.read_text()) for seed in seeds if (p := common.run_file(out, s, seed)).exists()]
        for s in strategies
    }
    groups = {s: runs for s, runs in groups.items() if runs}
    lines = [
        "",
        "### Consensus (CROWDLAB) vs plain majority vote of the same labels",
        "",
        "Majority vote: ties count 1/2 (a random tie-break); no model. Same labels, same rounds.",
        "",
        (
            "| method | consensus AUC | majority-vote AUC | final consensus | final majority vote "
            "| mean CROWDLAB model weight |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for s, runs in groups.items():
        weights = [w for r in runs for w in r["model_weight"][1:] if w is not None]
        lines.append(
            f"| {s} | {_mean_std([statistics.fmean(r['consensus_acc']) for r in runs])} | "
            f"{_mean_std([statistics.fmean(r['majority_vote_acc']) for r in runs])} | "
            f"{_mean_std([r['consensus_acc'][-1] for r in runs])} | "
            f"{_mean_std([r['majority_vote_acc'][-1] for r in runs])} | "
            f"{statistics.fmean(weights) if weights else float('nan'):.3f} |"
        )
    lines += [
        "",
        "### Requests lost because the item had no annotator left (ReplayOracle `exhausted`)",
        "",
        "| method | exhausted per run (mean) | requests per run | items with all 10 labels (mean) |",
        "|---|---|---|---|",
    ]
    for s, runs in groups.items():
        lost = statistics.fmean(sum(r["num_exhausted"]) for r in runs)
        asked = statistics.fmean(sum(r["num_requests"]) for r in runs)
        full = statistics.fmean(r["items_with_all_labels"] for r in runs)
        lines.append(f"| {s} | {lost:.1f} | {asked:.0f} | {full:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.select_settings:
        rows = select_settings(args)
        print("5-fold CV on the initial labeled pool (seed 0's single crowd labels), best first:")
        for r in rows:
            print(
                f"lr={r['lr']:<5} weight_decay={r['weight_decay']:<7} epochs={r['epochs']:<4} "
                f"cv_logloss={r['cv_logloss']:.4f} cv_acc={r['cv_acc']:.4f}"
            )
        return 0
    features = "TF-IDF" if args.features == "tfidf" else f"TF-IDF + SVD-{args.svd_dim}"
    label = args.label or f"Snow et al. 2008 RTE, real annotators ({features} logistic regression)"
    rc = common.run_benchmark(args, _worker, protocol(args), label)
    with (args.out / "results.md").open("a") as f:
        f.write(extra_sections(args.out, args.strategies, args.seeds))
    return rc


if __name__ == "__main__":
    sys.exit(main())
