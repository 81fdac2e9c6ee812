"""Aggregate per-run JSON files of a paper benchmark into ``results.json``, ``results.md`` and ``curves.png``.

Every benchmark script (``wall_robot.py``, ``cifar10.py``) writes one ``<out>/runs/<strategy>-s<seed>.json``
per run, with per-round lists ``model_acc``, ``consensus_acc`` and ``num_annotations`` (round 0 = before
any new label). AUC = mean over rounds of a run's curve; reported as mean ± std (population, ddof=0)
over seeds, next to the paper's number (``multiannotator-benchmarks`` results, see
``/shared/research/paper-results.md``) and, for Wall Robot, an independent cleanlab + scikit-learn
reference run of the same protocol (3 seeds).

``results.json`` layout::

    {"<method>": {"model_auc": {"mean", "std", "per_seed"}, "consensus_auc": {...},
                  "curves": {"round", "model_acc": {"mean", "std"}, "consensus_acc": {...},
                             "num_annotations": {...}, "num_new": {...}},
                  "seeds": [...], "seconds_per_run": {...}, "paper": {...} | None, "reference": {...} | None},
     ...,
     "protocol": {...}, "wall_seconds": float}

Example::

    python benchmarks/paper/report.py benchmarks/results/wall_robot
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import common

#: Headline numbers of the paper (mean over rounds; from paper-results.md). "uncertainty" in the
#: paper is ``least_confidence`` here, "crowdlab" is ``activelab``.
PAPER: dict[str, dict[str, dict[str, float]]] = {
    "wall-robot/mlp": {
        "random": {"model": 0.9287, "consensus": 0.9147},
        "good_random": {"model": 0.9350, "consensus": 0.8917},
        "entropy": {"model": 0.9222, "consensus": 0.9127},
        "least_confidence": {"model": 0.9400, "consensus": 0.9138},
        "disagreement": {"model": 0.9511, "consensus": 0.8923},
        "activelab": {"model": 0.9499, "consensus": 0.9741},
        "activelab_ensemble": {"model": 0.9709, "consensus": 0.9779},
    },
    "wall-robot-completely-labeled/mlp": {
        "random": {"model": 0.9526, "consensus": 0.8911},
        "good_random": {"model": 0.9547, "consensus": 0.9088},
        "entropy": {"model": 0.9542, "consensus": 0.8730},
        "least_confidence": {"model": 0.9538, "consensus": 0.8706},
        "disagreement": {"model": 0.9519, "consensus": 0.8612},
        "activelab": {"model": 0.9632, "consensus": 0.9840},
        "activelab_ensemble": {"model": 0.9733, "consensus": 0.9840},
    },
    "cifar-10h": {
        "random": {"model": 0.7614, "consensus": 0.9158},
        "good_random": {"model": 0.7793, "consensus": 0.9098},
        "entropy": {"model": 0.7485, "consensus": 0.9006},
        "least_confidence": {"model": 0.7436, "consensus": 0.9014},
        "disagreement": {"model": 0.8968, "consensus": 0.9040},
        "activelab": {"model": 0.7902, "consensus": 0.9250},
        "activelab_ensemble": {"model": 0.9165, "consensus": 0.9397},
    },
}

#: Independent reference run of the Wall Robot paper protocol with cleanlab 2.9.0 + scikit-learn
#: (MLPClassifier, 5-fold CV, 3 seeds; /shared/research/wallrobot-reference.md). Keyed by
#: (consensus rule, temperature objective).
REFERENCE: dict[tuple[str, str], dict[str, dict[str, float]]] = {
    ("best_quality", "class-position"): {
        "random": {"model": 0.9579, "model_std": 0.0037, "consensus": 0.9722, "consensus_std": 0.0031},
        "good_random": {"model": 0.9587, "model_std": 0.0004, "consensus": 0.9602, "consensus_std": 0.0011},
        "entropy": {"model": 0.9585, "model_std": 0.0014, "consensus": 0.9699, "consensus_std": 0.0014},
        "least_confidence": {
            "model": 0.9620,
            "model_std": 0.0010,
            "consensus": 0.9681,
            "consensus_std": 0.0020,
        },
        "activelab": {"model": 0.9623, "model_std": 0.0018, "consensus": 0.9792, "consensus_std": 0.0014},
    },
    ("best_quality", "cleanlab-2.9"): {
        "activelab": {"model": 0.9436, "model_std": 0.0036, "consensus": 0.9401, "consensus_std": 0.0028},
    },
    ("majority_vote", "class-position"): {
        "random": {"model": 0.9497, "model_std": 0.0026, "consensus": 0.8881, "consensus_std": 0.0015},
        "least_confidence": {
            "model": 0.9501,
            "model_std": 0.0011,
            "consensus": 0.8803,
            "consensus_std": 0.0011,
        },
    },
}

_ORDER = common.STRATEGIES


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def _curve(runs: list[dict[str, Any]], key: str) -> dict[str, list[float]]:
    length = min(len(r[key]) for r in runs)
    cols = [[float(r[key][i]) for r in runs] for i in range(length)]
    return {
        "mean": [statistics.fmean(c) for c in cols],
        "std": [statistics.pstdev(c) if len(c) > 1 else 0.0 for c in cols],
    }


def paper_key(protocol: dict[str, Any]) -> str | None:
    """Which paper benchmark a protocol compares with."""
    if protocol.get("benchmark") == "cifar10":
        return "cifar-10h"
    if protocol.get("benchmark") == "wall_robot":
        return "wall-robot/mlp" if protocol.get("variant") == "paper" else "wall-robot-completely-labeled/mlp"
    return None


def reference_for(protocol: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Reference-run numbers for the same protocol (only the standard Wall Robot setup with 5-fold CV)."""
    if protocol.get("benchmark") != "wall_robot" or protocol.get("variant") != "paper":
        return {}
    if not str(protocol.get("pred_probs", "")).endswith("CV"):
        return {}
    return REFERENCE.get(
        (protocol.get("consensus", "best_quality"), protocol.get("temperature_objective", "class-position")),
        {},
    )


def aggregate(
    out: Path, strategies: list[str] | None = None, seeds: list[int] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Group ``out/runs/*.json`` by strategy → ``(results per method, protocol of the runs)``."""
    runs: dict[str, list[dict[str, Any]]] = {}
    protocol: dict[str, Any] = {}
    for path in sorted((out / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        if strategies is not None and run["strategy"] not in strategies:
            continue
        if seeds is not None and run["seed"] not in seeds:
            continue
        protocol = run.get("protocol", protocol)
        runs.setdefault(run["strategy"], []).append(run)
    key = paper_key(protocol)
    reference = reference_for(protocol)
    results: dict[str, Any] = {}
    for strategy in sorted(runs, key=lambda s: (_ORDER.index(s) if s in _ORDER else len(_ORDER), s)):
        group = sorted(runs[strategy], key=lambda r: r["seed"])
        model = [statistics.fmean(r["model_acc"]) for r in group]
        consensus = [statistics.fmean(r["consensus_acc"]) for r in group]
        curves: dict[str, Any] = {"round": list(range(min(len(r["model_acc"]) for r in group)))}
        for name in ("model_acc", "consensus_acc", "num_annotations", "num_new"):
            if all(name in r and r[name] for r in group):
                curves[name] = _curve(group, name)
        results[strategy] = {
            "model_auc": {**_mean_std(model), "per_seed": model},
            "consensus_auc": {**_mean_std(consensus), "per_seed": consensus},
            "final_model_acc": _mean_std([r["model_acc"][-1] for r in group]),
            "final_consensus_acc": _mean_std([r["consensus_acc"][-1] for r in group]),
            "curves": curves,
            "seeds": [r["seed"] for r in group],
            "seconds_per_run": _mean_std([r["seconds"] for r in group]),
            "paper": PAPER.get(key or "", {}).get(strategy),
            "reference": reference.get(strategy),
        }
        if any(r.get("temperature") for r in group):
            temps = [[t for t in r.get("temperature", []) if t is not None] for r in group]
            if all(temps):
                results[strategy]["curves"]["temperature"] = _curve([{"t": t} for t in temps], "t")
    return results, protocol


def _fmt(stat: dict[str, float] | None) -> str:
    return "—" if stat is None else f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def _ref(ref: dict[str, float] | None, metric: str) -> str:
    if ref is None:
        return "—"
    std = ref.get(f"{metric}_std")
    return f"{ref[metric]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def markdown(
    results: dict[str, Any], protocol: dict[str, Any], *, label: str, wall_seconds: float | None
) -> str:
    """Method × metric table (mean ± std over seeds) next to the paper's and the reference's numbers."""
    key = paper_key(protocol)
    lines = [
        f"# {label}",
        "",
        "Protocol: " + ", ".join(f"{k}={v}" for k, v in protocol.items() if k != "model"),
        "",
        f"Model: {protocol.get('model')}",
        "",
    ]
    if wall_seconds is not None:
        lines += [
            (
                f"Wall time of this invocation: {wall_seconds:.0f} s "
                f"({wall_seconds / 60:.1f} min; runs already on disk are not re-run)."
            ),
            "",
        ]
    rounds = protocol.get("rounds")
    last = rounds - 1 if isinstance(rounds, int) else "?"
    lines += [
        (
            f"AUC = mean over rounds 0..{last} of the accuracy curve; mean ± std (ddof=0) over seeds. "
            f"Paper = `{key}` headline (5 runs). Reference = cleanlab 2.9.0 + scikit-learn run of the same "
            "protocol (3 seeds, research/wallrobot-reference.md) where one exists."
        ),
        "",
        (
            "| method | seeds | model AUC (ours) | model AUC (paper) | model AUC (reference) | consensus AUC (ours) "
            "| consensus AUC (paper) | consensus AUC (reference) | final model acc | final consensus acc "
            "| s / run |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in results.items():
        paper = r["paper"]
        paper_model = "—" if paper is None else f"{paper['model']:.4f}"
        paper_consensus = "—" if paper is None else f"{paper['consensus']:.4f}"
        lines.append(
            f"| {method} | {len(r['seeds'])} | {_fmt(r['model_auc'])} | "
            f"{paper_model} | {_ref(r['reference'], 'model')} | "
            f"{_fmt(r['consensus_auc'])} | {paper_consensus} | "
            f"{_ref(r['reference'], 'consensus')} | {_fmt(r['final_model_acc'])} | "
            f"{_fmt(r['final_consensus_acc'])} | {r['seconds_per_run']['mean']:.0f} |"
        )
    for name, title in (
        ("model_acc", "Model test accuracy"),
        ("consensus_acc", "Consensus accuracy (labeled set)"),
        ("num_new", "New (previously unlabeled) examples among the requests"),
        ("temperature", "ActiveLab temperature"),
    ):
        rows = {m: r["curves"][name]["mean"] for m, r in results.items() if name in r["curves"]}
        if not rows:
            continue
        width = max(len(v) for v in rows.values())
        lines += [
            "",
            f"### {title} by round (mean over seeds)",
            "",
            "| method | " + " | ".join(f"r{i}" for i in range(width)) + " |",
            "|---|" + "---|" * width,
        ]
        digits = 3 if name.endswith("acc") else 1
        for m, values in rows.items():
            lines.append(f"| {m} | " + " | ".join(f"{v:.{digits}f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path, *, title: str) -> None:
    """Accuracy vs number of annotations, one line per method, shaded ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, name, ylabel in (
        (axes[0], "model_acc", "model test accuracy"),
        (axes[1], "consensus_acc", "consensus-label accuracy"),
    ):
        for method, r in results.items():
            curves = r["curves"]
            x = curves["num_annotations"]["mean"] if "num_annotations" in curves else curves["round"]
            y, s = curves[name]["mean"], curves[name]["std"]
            n = min(len(x), len(y))
            x, y, s = x[:n], y[:n], s[:n]
            (line,) = ax.plot(x, y, label=method, lw=1.6)
            ax.fill_between(
                x,
                [a - b for a, b in zip(y, s)],
                [a + b for a, b in zip(y, s)],
                color=line.get_color(),
                alpha=0.18,
                lw=0,
            )
        ax.set_xlabel("number of annotations")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    out: Path,
    protocol: dict[str, Any] | None = None,
    *,
    label: str,
    wall_seconds: float | None = None,
    strategies: list[str] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and ``curves.png`` into ``out``; returns the JSON."""
    results, run_protocol = aggregate(out, strategies, seeds)
    protocol = {**run_protocol, **(protocol or {})}
    if not results:
        raise FileNotFoundError(f"no run files in {out / 'runs'}; run the benchmark first")
    previous = out / "results.json"
    if wall_seconds is not None and previous.exists():
        old = json.loads(previous.read_text())
        old_wall = old.get("wall_seconds") or 0.0
        # a resumed invocation only times the runs it made: keep the sum of the invocations
        if old.get("protocol", {}).get("seeds") == protocol.get("seeds") and old_wall:
            wall_seconds = (
                wall_seconds + float(old_wall) if wall_seconds < 0.9 * float(old_wall) else wall_seconds
            )
    payload = {**results, "protocol": protocol, "wall_seconds": wall_seconds, "label": label}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    (out / "results.md").write_text(markdown(results, protocol, label=label, wall_seconds=wall_seconds))
    plot(results, out / "curves.png", title=label)
    return payload


def compare(outs: list[Path]) -> str:
    """One markdown table: method × benchmark folder, model / consensus AUC and seconds per run."""
    loaded = {out: json.loads((out / "results.json").read_text()) for out in outs}
    methods = [m for m in _ORDER if any(m in r for r in loaded.values())]
    head = "| method | " + " | ".join(f"{o.name}: model AUC | consensus AUC | s / run" for o in outs) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(outs)]
    for m in methods:
        cells = []
        for r in loaded.values():
            if m in r:
                cells.append(
                    f"{_fmt(r[m]['model_auc'])} ({len(r[m]['seeds'])}) | {_fmt(r[m]['consensus_auc'])} | "
                    f"{r[m]['seconds_per_run']['mean']:.0f}"
                )
            else:
                cells.append("— | — | —")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description="Aggregate a paper benchmark's run files (or --compare several).")
    p.add_argument("out", type=Path, nargs="+")
    p.add_argument("--compare", action="store_true", help="print one table over the given results folders")
    p.add_argument("--label", default=None)
    p.add_argument("--strategies", nargs="*", default=None)
    p.add_argument("--seeds", nargs="*", type=int, default=None)
    p.add_argument("--wall-seconds", type=float, default=None)
    a = p.parse_args()
    if a.compare:
        print(compare(a.out), end="")
        return
    if len(a.out) != 1:
        p.error("give one results folder (or several with --compare)")
    a.out = a.out[0]
    write_report(
        a.out,
        label=a.label or a.out.name,
        wall_seconds=a.wall_seconds,
        strategies=a.strategies,
        seeds=a.seeds,
    )
    print(f"wrote {a.out}/results.json, results.md, curves.png")


if __name__ == "__main__":
    main()
