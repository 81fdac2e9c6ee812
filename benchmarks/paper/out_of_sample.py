"""Out-of-sample options for the labeled pool's pred_probs: accuracy, calibration and cost per round.

For each option and seed, one ActiveLab run of the Wall Robot setup (``make_paper_setup(seed=
--setup-seed)``) with the library's loop, recording per round: consensus accuracy, model test
accuracy, ActiveLab's temperature, CROWDLAB's model weight and mean annotator weight, and the
calibration of the labeled-pool probabilities that scored the round (ECE, NLL and accuracy against
the true labels), plus the wall time of each round. Options:

* ``in_sample``: the trained model predicts its own training rows (the old default);
* ``crossfit``: cross-fitted linear heads on the model's penultimate features, the heads' mean scoring
  the unlabeled pool (the new default);
* ``crossfit_model``: the same heads for the labeled pool, the trained model for the unlabeled pool;
* ``cv5``: the loop's 5-fold reference (5 extra fits per round).

Settings were chosen on ``--setup-seed 7`` (not the paper benchmark's data, setup seed 123).

Example::

    OMP_NUM_THREADS=1 python benchmarks/paper/out_of_sample.py --setup-seed 7 --out /tmp/oos
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

OPTIONS = ("in_sample", "crossfit", "crossfit_model", "cv5")
MODELS = {
    # the quickstart's MLP and the paper benchmark's MLP
    "quickstart": {"hidden": [64, 64], "dropout": 0.1, "epochs": 20, "batch_size": 64, "weight_decay": 0.0},
    "paper": {"hidden": [100], "dropout": 0.0, "epochs": 60, "batch_size": 512, "weight_decay": 0.0},
}


def calibration(probs: Any, truth: Any, bins: int = 15) -> dict[str, float]:
    """ECE (equal-width confidence bins), NLL and accuracy of ``(n, K)`` probabilities vs ``(n,)`` truth."""
    import torch

    p = torch.as_tensor(probs, dtype=torch.float64)
    t = torch.as_tensor(truth, dtype=torch.int64)
    conf, pred = p.max(1)
    correct = (pred == t).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    which = torch.bucketize(conf, edges[1:-1])
    count = torch.bincount(which, minlength=bins).double()
    gap = torch.bincount(which, weights=conf - correct, minlength=bins).abs()
    return {
        "ece": float(gap.sum() / max(1, t.numel())),
        "nll": float(-p[torch.arange(t.numel()), t].clamp_min(1e-12).log().mean()),
        "acc": float(correct.mean()),
        "mean_confidence": float(conf.mean()),
        "bins_used": int((count > 0).sum()),
    }


def run_one(args: argparse.Namespace, option: str, seed: int) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch

    from activelab_lightning import ActiveDataModule, ActiveLabCallback, ActiveLearningLoop, AnnotationStore
    from activelab_lightning.datasets import make_paper_setup
    from activelab_lightning.models import MLPClassifier

    torch.set_num_threads(1)
    hp = dict(MODELS[args.model])
    if args.weight_decay is not None:
        hp["weight_decay"] = args.weight_decay
    setup = make_paper_setup(seed=args.setup_seed, standardize=True)
    store = AnnotationStore(":memory:", num_examples=len(setup.dataset), class_names=setup.class_names)
    dm = ActiveDataModule(
        setup.dataset,
        store,
        test_dataset=setup.test_dataset,
        batch_size=hp["batch_size"],
        inference_batch_size=4096,
        initial_labels=list(setup.initial_annotations),
        true_labels=setup.true_labels,
        seed=seed,
    )
    callback = ActiveLabCallback(
        setup.make_oracle(seed),
        query_size=args.query_size,
        strategy=args.strategy,
        seed=seed,
        true_labels=setup.true_labels,
        reporter=None,
        out_of_sample="in_sample" if option in ("in_sample", "cv5") else "crossfit",
        crossfit_unlabeled="model" if option == "crossfit_model" else "heads",
    )

    def model() -> MLPClassifier:
        return MLPClassifier(
            setup.features.shape[1],
            setup.num_classes,
            hidden_dims=tuple(hp["hidden"]),
            dropout=hp["dropout"],
            lr=1e-2,
            weight_decay=hp["weight_decay"],
        )

    kwargs = {**common.TRAINER_DEFAULTS, "max_epochs": hp["epochs"], "accelerator": "cpu", "devices": 1}
    loop = ActiveLearningLoop(
        model,
        dm,
        callback,
        trainer_kwargs=kwargs,
        rounds=0,
        cv_folds=5 if option == "cv5" else None,
        seed=seed,
    )
    truth = torch.as_tensor(setup.true_labels)
    rows: list[dict[str, Any]] = [{"round": -1, "consensus_acc": dm.consensus_accuracy()}]
    started = time.perf_counter()
    for r in range(args.rounds):
        loop.rounds = r + 1
        loop.run()
        h = callback.history[-1]
        state = callback._memory_state[r]
        labeled = torch.as_tensor(state["ids"])[: h["num_labeled"] - h["num_new"]]
        probs = torch.as_tensor(state["probs"])[: labeled.numel()]
        rows.append(
            {
                "round": r,
                "consensus_acc": h["consensus_accuracy"],
                "model_acc": loop.history[-1]["test"].get("test/acc"),
                "temperature": h.get("temperature"),
                "model_weight": h.get("model_weight"),
                "mean_annotator_weight": h.get("mean_annotator_weight"),
                "num_new": h["num_new"],
                "agreement_in_sample": h.get("agreement_in_sample"),
                "agreement_out_of_fold": h.get("agreement_out_of_fold"),
                "crossfit_l2": h.get("crossfit_l2"),
                "seconds": loop.history[-1]["seconds"],
                "acquisition_seconds": h["seconds"],
                **{f"labeled_{k}": v for k, v in calibration(probs, truth[labeled]).items()},
            }
        )
    # one plain fit + test on the final consensus (the cost reference, and the last model point)
    pl.seed_everything(seed, workers=True, verbose=False)
    t0 = time.perf_counter()
    final = model()
    trainer = pl.Trainer(**kwargs)
    trainer.fit(final, datamodule=dm)
    plain_fit = time.perf_counter() - t0
    final_acc = float(trainer.test(final, datamodule=dm, verbose=False)[0]["test/acc"])
    return {
        "option": option,
        "seed": seed,
        "model": args.model,
        "hp": hp,
        "setup_seed": args.setup_seed,
        "strategy": args.strategy,
        "rows": rows,
        "final_model_acc": final_acc,
        "plain_fit_seconds": plain_fit,
        "seconds": time.perf_counter() - started,
    }


def _worker(job: tuple[argparse.Namespace, str, int]) -> str:
    args, option, seed = job
    result = run_one(args, option, seed)
    path = args.out / "runs" / f"{option}-s{seed}.json"
    path.write_text(json.dumps(result))
    cons = [r["consensus_acc"] for r in result["rows"]]
    temps = [r["temperature"] for r in result["rows"][1:]]
    return (
        f"{option} seed {seed}: consensus {' '.join(f'{c:.3f}' for c in cons)} | "
        f"T {' '.join(f'{t:.2f}' if t else '-' for t in temps)} | final model {result['final_model_acc']:.3f} "
        f"| {result['seconds']:.0f} s"
    )


_PER_ROUND = (
    ("consensus_acc", "consensus accuracy", ".3f"),
    ("model_acc", "model test accuracy (model trained before the round's acquisition)", ".3f"),
    ("temperature", "ActiveLab temperature", ".2f"),
    ("model_weight", "CROWDLAB model weight", ".3f"),
    ("mean_annotator_weight", "CROWDLAB mean annotator weight", ".3f"),
    ("labeled_ece", "labeled-pool pred_probs: ECE vs true labels", ".3f"),
    ("labeled_nll", "labeled-pool pred_probs: NLL vs true labels", ".3f"),
    ("num_new", "new examples among the requests", ".0f"),
    ("seconds", "wall seconds per round (fit + acquisition)", ".2f"),
)


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def write_report(out: Path) -> str:
    """Aggregate ``<out>/runs/*.json`` into ``results.json`` and ``results.md`` (per option, per round)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((out / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["option"], []).append(run)
    summary: dict[str, Any] = {}
    lines = ["# Out-of-sample options: accuracy, calibration and cost per round", ""]
    head = next(iter(runs.values()))[0]
    lines += [
        (
            f"Setup seed {head['setup_seed']}, model `{head['model']}` {head.get('hp', '')}, strategy "
            f"`{head['strategy']}`; mean over seeds {sorted({r['seed'] for rs in runs.values() for r in rs})}. "
            "`plain fit` = one `Trainer.fit` + test on the final consensus, in the same process."
        ),
        "",
        (
            "| option | seeds | consensus AUC | model AUC | final model acc | mean labeled ECE | mean labeled NLL | "
            "s / round | plain fit s | round / plain fit |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for option in [o for o in OPTIONS if o in runs]:
        rs = runs[option]
        per = {
            key: [_mean([r["rows"][i + 1].get(key) for r in rs]) for i in range(len(rs[0]["rows"]) - 1)]
            for key, _, _ in _PER_ROUND
        }
        auc_c = _mean([_mean([row["consensus_acc"] for row in r["rows"][1:]]) for r in rs])
        auc_m = _mean([_mean([row["model_acc"] for row in r["rows"][1:]]) for r in rs])
        final = _mean([r["final_model_acc"] for r in rs])
        sec = _mean(per["seconds"])
        fit = _mean([r["plain_fit_seconds"] for r in rs])
        summary[option] = {
            "consensus_auc": auc_c,
            "model_auc": auc_m,
            "final_model_acc": final,
            "seconds_per_round": sec,
            "plain_fit_seconds": fit,
            "per_round": per,
            "seeds": [r["seed"] for r in rs],
        }
        lines.append(
            f"| {option} | {len(rs)} | {auc_c:.4f} | {auc_m:.4f} | {final:.4f} | {_mean(per['labeled_ece']):.3f} | "
            f"{_mean(per['labeled_nll']):.3f} | {sec:.2f} | {fit:.2f} | {sec / fit:.2f} |"
        )
    for key, title, spec in _PER_ROUND:
        lines += ["", f"### {title}", ""]
        n = max(len(v["per_round"][key]) for v in summary.values())
        lines.append("| option | " + " | ".join(f"r{i}" for i in range(n)) + " |")
        lines.append("|---|" + "---|" * n)
        for option, v in summary.items():
            cells = ["–" if x is None else format(x, spec) for x in v["per_round"][key]]
            lines.append(f"| {option} | " + " | ".join(cells) + " |")
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines[: 8 + len(summary)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--setup-seed", type=int, default=7)
    p.add_argument("--model", choices=sorted(MODELS), default="quickstart")
    p.add_argument("--strategy", default="activelab")
    p.add_argument("--weight-decay", type=float, default=None, help="override the model's weight decay")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--query-size", type=int, default=100)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/out_of_sample"))
    args = p.parse_args(argv)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    jobs = [
        (args, o, s)
        for s in args.seeds
        for o in args.options
        if not (args.out / "runs" / f"{o}-s{s}.json").exists()
    ]
    wall = common.drive(_worker, jobs, processes=args.jobs)
    print(write_report(args.out))
    print(f"wall {wall:.0f} s; wrote {args.out}/results.json and results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
