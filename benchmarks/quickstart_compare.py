"""The quickstart as shipped vs the same config with the random and good_random strategies.

Runs ``activelab run --config configs/quickstart.yaml`` once per strategy (into ``<out>/<strategy>``,
resumable: a finished run is not re-run), reads each run's round log and writes
``<out>/quickstart_compare.png`` (consensus accuracy per round, one line per strategy) and
``<out>/quickstart_compare.md`` (the numbers). The shipped config uses ``activelab_ensemble``.

Example::

    python benchmarks/quickstart_compare.py --out benchmarks/results/quickstart
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("activelab_ensemble", "random", "good_random")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quickstart"))
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    args = p.parse_args(argv)
    from activelab_lightning.reporting import read_round_log

    curves = {}
    for strategy in args.strategies:
        run = args.out / strategy
        cmd = [
            sys.executable,
            "-m",
            "activelab_lightning.cli",
            "run",
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--out_dir",
            str(run),
        ]
        if strategy != "activelab_ensemble":
            cmd += ["--callback.strategy", strategy]
        # the config's loggers write under runs/quickstart; keep them inside this run's folder
        cmd += ["--trainer.logger", "false"]
        subprocess.run(
            cmd, check=True, cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline"}, stdout=subprocess.DEVNULL
        )
        records = sorted(read_round_log(run / "labels.sqlite.rounds.jsonl"), key=lambda r: r["round"])
        curves[strategy] = [(r["num_annotations"], r["consensus_accuracy"]) for r in records]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, points in curves.items():
        ax.plot(*zip(*points), marker="o", label=strategy)
    ax.set_xlabel("number of annotations")
    ax.set_ylabel("consensus accuracy (labeled set)")
    ax.set_title("configs/quickstart.yaml, one fit per round")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "quickstart_compare.png", dpi=100)
    lines = [
        "| strategy | " + " | ".join(f"r{i}" for i in range(len(next(iter(curves.values()))))) + " |",
        "|---|" + "---|" * len(next(iter(curves.values()))),
    ]
    for strategy, points in curves.items():
        lines.append(f"| {strategy} | " + " | ".join(f"{c:.4f}" for _, c in points) + " |")
    (args.out / "quickstart_compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
