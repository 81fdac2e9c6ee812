"""CIFAR-10 + CIFAR-10H annotators on frozen CNN features with a linear head: 8 strategies, one command.

The end-to-end CNN version (``cifar10.py``) re-trains a small CNN from scratch every round on a few
hundred noisy labels, which on a CPU reaches only ~0.40 test accuracy. This version follows the
paper's idea of a representation learnt elsewhere (the paper starts from an ImageNet-pretrained
network; no pretrained weights can be downloaded here) and trains only a linear head each round.

Frozen feature extractor (built once, cached): :class:`~activelab_lightning.models.SmallCNN`
(``--extractor-width 32``) trained with the **true** labels of CIFAR-10 test images
``--al-images`` .. end (i.e. 5000-9499, never used by the active-learning experiment; a stand-in
for ImageNet pretraining), with random crops and flips, Adam with a one-cycle schedule (peak
``--extractor-lr 4e-3``), ``--extractor-epochs 25`` of batch 128 (2-2.5 minutes on one CPU
core); images 9500-9999 are held out to report its accuracy (about 0.56: a much weaker
representation than an ImageNet network's). The trained network is then
frozen and the **input of its last** ``nn.Linear`` (the globally pooled conv features, ``4·width``
dims) is extracted for images ``0 .. --al-images - 1`` and z-scored with the pool rows' mean and
standard deviation (no labels involved). The features and the extractor's accuracies are cached in
``<out>/features.npz`` (or ``--cache``); a rerun with the same extractor settings skips training.
The extractor never saw any of images 0-4999 nor any CIFAR-10H count.

Active learning (the same split, initial labels and oracle as
:class:`~activelab_lightning.experiments.Cifar10Experiment` with ``subset=5000, test_size=2000,
initial_labeled=500, split_seed=0``, rebuilt here on features instead of pixels;
``tests/test_cifar10_features_benchmark.py`` checks they are identical):

* images 0-4999 split with the fixed seed 0 into 2,000 test and 3,000 pool images;
* 500 pool images (drawn with the run seed) start with ONE label each, a draw from that image's
  CIFAR-10H counts (:meth:`~activelab_lightning.oracles.ReplayOracle.from_distributions`, a fresh
  annotator id per draw); every request is answered by a further draw from the image's counts.
  The paper thinned its initial labels to the worst annotators; CIFAR-10H is available here only
  as per-image counts (no annotator identity) and the library offers no such thinning for it, so
  the initial labels are plain samples (about 95% correct) and the problem is less noisy than the
  paper's;
* model: one ``nn.Linear`` on the features (``MLPClassifier(hidden_dims=())``), Adam, cross-entropy
  on the CROWDLAB (``best_quality``) consensus labels, trained from scratch each round with
  Lightning; labeled-pool ``pred_probs`` from the callback's default ``out_of_sample="crossfit"``
  (5 cross-fitted logistic heads on the input of the model's last ``nn.Linear``, which here are the
  frozen features themselves; since the trunk saw no pool label, these are genuine 5-fold
  out-of-fold predictions of a linear model). No ``cv_folds``;
* rounds: ``--rounds 9`` measurement points (round 0 = before any new label; 8 acquisitions of
  ``--query-size 200``); each point's model is tested on the 2,000 test images, the consensus is
  scored on the labeled pool against the true labels (:func:`common.measure_run`);
* head settings (``--lr 1e-2 --weight-decay 1e-4 --epochs 20 --batch-size 64``) were chosen once by
  5-fold CV on seed 0's 500 initial (noisy, one-per-image) labels, never on test rows (``--tune``
  reruns the grid lr {1e-3, 3e-3, 1e-2} × weight decay {0, 1e-4, 1e-3} × epochs {20, 40} and writes
  ``<out>/tuning.json``). The grid was flat (CV accuracy 0.550-0.566, about one standard error
  apart); lr 1e-2 with 20 epochs was best, weight decay made no difference and 1e-4 was kept as
  the "small" value. The extractor's epochs and schedule were chosen on its own held-out images
  (constant lr, 10 epochs: 0.456; one-cycle, 10 epochs: 0.504; one-cycle, 25 epochs: 0.556), which
  the experiment never uses.

Runs are independent (``--jobs``, one per core, ``OMP_NUM_THREADS=1``); each writes
``<out>/runs/<strategy>-s<seed>.json`` and is skipped when that file exists (resume);
``<out>/results.json``, ``results.md`` and ``curves.png`` come from :mod:`report`.

Example::

    OMP_NUM_THREADS=1 python benchmarks/paper/cifar10_features.py --jobs 1 --out benchmarks/results/cifar10_features
    OMP_NUM_THREADS=1 python benchmarks/paper/cifar10_features.py --tune        # the head-settings grid
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import numpy as np

STRATEGIES = common.STRATEGIES
#: --quick: a smoke test on tiny data (the test runs it on generated images).
QUICK: dict[str, Any] = {
    "seeds": [0],
    "strategies": ["random", "activelab"],
    "rounds": 3,
    "al_images": 200,
    "test_size": 60,
    "initial": 60,
    "query_size": 20,
    "epochs": 5,
    "extractor_width": 4,
    "extractor_epochs": 1,
    "extractor_holdout": 20,
}
#: the head-settings grid of --tune (5-fold CV on the initial labels of seed 0)
TUNE_GRID: dict[str, list[Any]] = {
    "lr": [1e-3, 3e-3, 1e-2],
    "weight_decay": [0.0, 1e-4, 1e-3],
    "epochs": [20, 40],
}
DATA_FILES = ("cifar10_test/cifar10_test.npz", "cifar10h_counts/cifar10h_counts.npz")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("../shared/data"),
        help="folder with cifar10_test/ and cifar10h_counts/",
    )
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=9, help="measurement points, round 0 included")
    p.add_argument("--query-size", type=int, default=200)
    p.add_argument(
        "--al-images",
        type=int,
        default=5000,
        help="images 0..N-1 are the experiment's; the rest train the extractor",
    )
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--initial", type=int, default=500, help="pool images with one initial label")
    p.add_argument("--epochs", type=int, default=20, help="epochs of the linear head per fit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--extractor-width", type=int, default=32)
    p.add_argument("--extractor-epochs", type=int, default=25)
    p.add_argument("--extractor-batch-size", type=int, default=128)
    p.add_argument(
        "--extractor-lr", type=float, default=4e-3, help="peak Adam learning rate (one-cycle schedule)"
    )
    p.add_argument(
        "--extractor-holdout", type=int, default=500, help="extractor images held out for its accuracy"
    )
    p.add_argument("--extractor-seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="features cache (default <out>/features.npz)")
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (one per core)")
    p.add_argument(
        "--tune", action="store_true", help="run the head-settings grid on seed 0's initial labels and exit"
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: random + activelab, seed 0, 3 tiny rounds"
    )
    p.add_argument("--label", default=None, help="name of this benchmark in the report")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cifar10_features"))
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: need at least 1 (round 0 = before any new label)")
    for name in DATA_FILES:
        if not (args.data_dir / name).is_file():
            p.error(f"--data-dir {args.data_dir}: no {name} there (expected the shared data folder layout)")
    if args.cache is None:
        args.cache = args.out / "features.npz"
    return args


# ------------------------------------------------------------------------------------------ extractor
def _augment(batch: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Collate uint8 NHWC images with a random horizontal flip and a random 32×32 crop of the 4-padded image."""
    import torch

    x = torch.stack([b[0] for b in batch])
    y = torch.stack([b[1] for b in batch])
    flip = torch.rand(x.shape[0]) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(2), x)
    padded = torch.nn.functional.pad(x, (0, 0, 4, 4, 4, 4))
    off = torch.randint(0, 9, (x.shape[0], 2))
    x = torch.stack([padded[i, r : r + 32, c : c + 32] for i, (r, c) in enumerate(off.tolist())])
    return x, y


def extractor_key(args: argparse.Namespace) -> dict[str, Any]:
    """What the cached features depend on (a cache with another key is rebuilt)."""
    images = args.data_dir / DATA_FILES[0]
    return {
        "al_images": args.al_images,
        "test_size": args.test_size,
        "width": args.extractor_width,
        "epochs": args.extractor_epochs,
        "batch_size": args.extractor_batch_size,
        "lr": args.extractor_lr,
        "schedule": "one-cycle",
        "holdout": args.extractor_holdout,
        "seed": args.extractor_seed,
        "images_bytes": images.stat().st_size,
    }


def build_features(args: argparse.Namespace) -> dict[str, Any]:
    """Train the frozen extractor on the disjoint images (or reuse the cache); return the cache's metadata.

    The cache ``args.cache`` holds ``features`` float32 ``(al_images, 4·width)`` (z-scored with the pool
    rows' statistics) and ``meta`` (a JSON string: key, accuracies, seconds).
    """
    key = extractor_key(args)
    if args.cache.is_file():
        with np.load(args.cache) as cached:
            meta = json.loads(str(cached["meta"]))
        if meta.get("key") == key:
            print(
                f"features: reusing {args.cache} (extractor held-out accuracy {meta['holdout_acc']:.4f})",
                flush=True,
            )
            return meta
        print(f"features: {args.cache} was built with other settings; rebuilding", flush=True)

    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from activelab_lightning.models import SmallCNN

    torch.set_num_threads(1)
    started = time.perf_counter()
    with np.load(args.data_dir / DATA_FILES[0]) as data:
        x, y = data["x"], data["y"].astype(np.int64)
    n = args.al_images
    if not 0 < n < len(x) - args.extractor_holdout:
        raise SystemExit(f"--al-images {n}: leaves no extractor training images ({len(x)} images in all)")
    train = slice(n, len(x) - args.extractor_holdout)
    hold = slice(len(x) - args.extractor_holdout, len(x))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    class ScheduledSmallCNN(SmallCNN):
        """SmallCNN with a one-cycle learning-rate schedule (Adam peak ``lr``), for a short training."""

        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            steps = int(self.trainer.estimated_stepping_batches)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(1, steps))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    pl.seed_everything(args.extractor_seed, workers=True, verbose=False)
    net = ScheduledSmallCNN(num_classes=10, width=args.extractor_width, lr=args.extractor_lr)
    loader = DataLoader(
        TensorDataset(xt[train], yt[train]),
        batch_size=args.extractor_batch_size,
        shuffle=True,
        collate_fn=_augment,
        generator=torch.Generator().manual_seed(args.extractor_seed),
    )
    trainer = pl.Trainer(
        max_epochs=args.extractor_epochs, accelerator="cpu", devices=1, **common.TRAINER_DEFAULTS
    )
    trainer.fit(net, train_dataloaders=loader)
    train_seconds = time.perf_counter() - started
    net.eval()
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))

    def run(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        seen.clear()
        with torch.no_grad():
            logits = torch.cat([net(xt[rows][i : i + 500]) for i in range(0, len(xt[rows]), 500)])
        return torch.cat(seen), logits

    try:
        _, hold_logits = run(hold)
        features, al_logits = run(slice(0, n))
    finally:
        hook.remove()
    holdout_acc = float((hold_logits.argmax(1) == yt[hold]).double().mean())
    al_acc = float((al_logits.argmax(1) == yt[:n]).double().mean())
    _, pool_rows = split_rows(n, args.test_size)
    pool = features[pool_rows].double()
    features = ((features.double() - pool.mean(0)) / pool.std(0).clamp_min(1e-6)).float()
    meta = {
        "key": key,
        "dim": int(features.shape[1]),
        "holdout_acc": holdout_acc,
        "al_images_acc": al_acc,
        "train_images": f"{train.start}-{train.stop - 1}",
        "holdout_images": f"{hold.start}-{hold.stop - 1}",
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.cache.with_name(args.cache.name + ".tmp.npz")
    np.savez(tmp, features=features.numpy(), meta=np.array(json.dumps(meta)))
    os.replace(tmp, args.cache)
    print(
        f"features: extractor trained in {train_seconds:.0f} s; held-out accuracy {holdout_acc:.4f} "
        f"(images {meta['holdout_images']}), accuracy on images 0-{n - 1} {al_acc:.4f}; wrote {args.cache}",
        flush=True,
    )
    return meta


# ------------------------------------------------------------------------------------------ experiment
def split_rows(n: int, test_size: int, split_seed: int = 0) -> tuple[Any, Any]:
    """The test / pool rows of images ``0..n-1``, exactly as :class:`Cifar10Experiment` splits them."""
    import torch

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    return perm[:test_size].sort().values, perm[test_size:].sort().values


def build_datamodule(args: argparse.Namespace, seed: int) -> tuple[Any, Any, Any]:
    """``(datamodule, oracle, pool true labels)`` of one run on the cached features."""
    import torch
    from torch.utils.data import TensorDataset

    from activelab_lightning import ActiveDataModule, AnnotationStore
    from activelab_lightning.oracles import ReplayOracle

    n = args.al_images
    with np.load(args.cache) as cached:
        features = torch.from_numpy(cached["features"])
    with np.load(args.data_dir / DATA_FILES[0]) as data:
        labels = torch.from_numpy(data["y"][:n].astype(np.int64))
        names = tuple(str(c) for c in data["class_names"])
    with np.load(args.data_dir / DATA_FILES[1]) as c:
        counts = torch.from_numpy(c["counts"][:n].astype(np.int64))
    test_rows, pool_rows = split_rows(n, args.test_size)
    oracle = ReplayOracle.from_distributions(
        counts[pool_rows], seed=seed, annotator_prefix="c10h-", name="cifar10h"
    )
    store = AnnotationStore(":memory:", num_examples=int(pool_rows.numel()), class_names=names)
    dm = ActiveDataModule(
        TensorDataset(features[pool_rows], labels[pool_rows]),
        store,
        test_dataset=TensorDataset(features[test_rows], labels[test_rows]),
        batch_size=args.batch_size,
        inference_batch_size=4096,
        initial_labeled=int(args.initial),
        initial_labels=oracle,
        true_labels=labels[pool_rows],
        consensus_method="best_quality",
        seed=seed,
    )
    return dm, oracle, labels[pool_rows]


def head_model(
    args: argparse.Namespace, dim: int, *, lr: float | None = None, weight_decay: float | None = None
) -> Any:
    """One ``nn.Linear(dim, 10)`` (``MLPClassifier`` without hidden layers), Adam."""
    from activelab_lightning.models import MLPClassifier

    return MLPClassifier(
        dim,
        10,
        hidden_dims=(),
        dropout=0.0,
        lr=args.lr if lr is None else lr,
        weight_decay=args.weight_decay if weight_decay is None else weight_decay,
    )


def protocol(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    """The settings that define the benchmark (stored next to the results)."""
    return {
        "benchmark": "cifar10_features",
        "rounds": args.rounds,
        "acquisitions": args.rounds - 1,
        "query_size": args.query_size,
        "seeds": args.seeds,
        "images": args.al_images,
        "test_size": args.test_size,
        "initial_labeled": args.initial,
        "initial_labels": "one plain CIFAR-10H draw per image (not thinned to the worst annotators)",
        "pred_probs": "crossfit",
        "consensus": "best_quality",
        "annotators": "draws from the CIFAR-10H per-image counts (one fresh annotator id per draw)",
        "extractor": {
            "type": "SmallCNN",
            "width": args.extractor_width,
            "epochs": args.extractor_epochs,
            "batch_size": args.extractor_batch_size,
            "optimizer": f"Adam, one-cycle schedule, peak lr {args.extractor_lr:g}, wd 5e-4; random crops + flips",
            "trained_on": f"true labels of images {meta['train_images']} (disjoint from the experiment)",
            "holdout_images": meta["holdout_images"],
            "holdout_acc": round(meta["holdout_acc"], 4),
            "acc_on_experiment_images": round(meta["al_images_acc"], 4),
            "train_seconds": round(meta["train_seconds"], 1),
        },
        "model": {
            "type": "Linear on frozen z-scored features",
            "dim": meta["dim"],
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
        },
        "quick": bool(args.quick),
    }


def _worker(job: tuple[argparse.Namespace, str, int]) -> str:
    args, strategy, seed = job
    import torch

    from activelab_lightning import ActiveLabCallback

    torch.set_num_threads(1)
    with np.load(args.cache) as cached:
        meta = json.loads(str(cached["meta"]))
    dm, oracle, truth = build_datamodule(args, seed)
    callback = ActiveLabCallback(
        oracle, query_size=args.query_size, strategy=strategy, seed=seed, true_labels=truth, reporter=None
    )
    result = common.measure_run(
        lambda: head_model(args, meta["dim"]),
        dm,
        callback,
        rounds=args.rounds,
        cv_folds=None,
        seed=seed,
        trainer_kwargs={"max_epochs": args.epochs, "accelerator": "cpu", "devices": 1},
    )
    result.update(strategy=strategy, seed=seed, protocol=protocol(args, meta))
    return common.write_run(common.run_file(args.out, strategy, seed), result)


# ------------------------------------------------------------------------------------------ tuning
def tune(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    """5-fold CV of the head settings on seed 0's initial labels (one noisy label per image; no test rows)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    dm, _, _ = build_datamodule(args, seed=0)
    ids = dm.labeled_ids
    x = dm.dataset.tensors[0][ids]
    y = dm.targets.clone()
    folds = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)) % 5
    rows = []
    for lr, wd, epochs in itertools.product(TUNE_GRID["lr"], TUNE_GRID["weight_decay"], TUNE_GRID["epochs"]):
        correct = 0
        for k in range(5):
            tr, va = folds != k, folds == k
            pl.seed_everything(k, workers=True, verbose=False)
            model = head_model(args, meta["dim"], lr=lr, weight_decay=wd)
            loader = DataLoader(TensorDataset(x[tr], y[tr]), batch_size=args.batch_size, shuffle=True)
            pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, **common.TRAINER_DEFAULTS).fit(
                model, loader
            )
            with torch.no_grad():
                correct += int((model(x[va]).argmax(1) == y[va]).sum())
        rows.append({"lr": lr, "weight_decay": wd, "epochs": epochs, "cv_acc": correct / len(ids)})
        print(
            f"lr={lr:g} weight_decay={wd:g} epochs={epochs}: CV accuracy {rows[-1]['cv_acc']:.4f}", flush=True
        )
    best = max(rows, key=lambda r: r["cv_acc"])
    out = {
        "labels": f"seed 0's {len(ids)} initial labels (noisy, one per image)",
        "batch_size": args.batch_size,
        "grid": rows,
        "best": best,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuning.json").write_text(json.dumps(out, indent=1))
    print(f"best: {best}; wrote {args.out / 'tuning.json'}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = build_features(args)
    if args.tune:
        tune(args, meta)
        return 0
    label = args.label or "CIFAR-10 + CIFAR-10H annotators, frozen SmallCNN features + linear head"
    return common.run_benchmark(args, _worker, protocol(args, meta), label)


if __name__ == "__main__":
    sys.exit(main())
