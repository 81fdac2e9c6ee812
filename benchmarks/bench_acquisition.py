"""Cost of one ActiveLab acquisition vs. a bare torch inference loop over the same rows.

One acquisition (``ActiveLabCallback.acquire`` in ``on_train_end``) over ``--labeled`` labeled and
``--unlabeled`` unlabeled tabular rows: its own inference loop over both pools, the ActiveLab fit on
the labeled pool (temperature search + CROWDLAB), the unlabeled pool scored batch by batch with a
streaming lowest-k merge, ``--query`` label requests to a simulated oracle, the SQLite store writes
and the datamodule refresh (CROWDLAB consensus). The bare loop is the floor: the same model in eval
mode under ``torch.inference_mode`` over the same rows (``x[i:i + batch]`` slices) and batch size,
softmax, nothing else. Both run in this process, alternating, ``--repeats`` times; the minimum of
each is compared (set ``OMP_NUM_THREADS`` / ``--threads`` to the same value as your deployment;
on a shared machine raise ``--repeats``)::

    python benchmarks/bench_acquisition.py            # 1e6 unlabeled + 1e4 labeled rows, D=32, K=10
    python benchmarks/bench_acquisition.py --quick    # 2e4 + 2e3 rows, a few seconds

Memory: in a fresh process per pool size (the full pool and one 4x smaller), a sampler thread
reads the resident set size (``/proc/self/statm``) every 2 ms during one acquisition; the peak
extra RSS (peak during it minus RSS just before) is reported. The unlabeled pool's probabilities
are never held (only the ``query`` best rows), so the two should be close; what grows with the
pool is its ``int64`` id vectors (8 bytes per row, owned by the datamodule).

The last line is ``acquisition/bare_loop ratio: X`` (target: X <= 1.2 on the full size). The
acquisition runs with ``out_of_sample="in_sample"`` by default, so the ratio measures inference,
scoring, store and refresh overhead; ``--out-of-sample crossfit`` (the callback's default) adds the
cross-fitted heads, whose cost against one plain fit is measured by ``benchmarks/paper/out_of_sample.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2e4 unlabeled + 2e3 labeled rows")
    parser.add_argument("--unlabeled", type=float, default=1e6)
    parser.add_argument("--labeled", type=float, default=1e4)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--query", type=int, default=100)
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument(
        "--out-of-sample",
        choices=("in_sample", "crossfit"),
        default="in_sample",
        help="labeled-pool predictions; crossfit adds the heads' fit (its cost vs a plain fit is "
        "benchmarks/paper/out_of_sample.py's table)",
    )
    parser.add_argument("--memory-probe", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.unlabeled, args.labeled, args.repeats = 2e4, 2e3, 1
    return args


class RssSampler:
    """Peak resident set size (bytes) while active, sampled from ``/proc/self/statm``."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def __enter__(self) -> RssSampler:
        self.start = self.rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def _build(args: argparse.Namespace, num_unlabeled: int, workdir: Path):
    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import TensorDataset

    from activelab_lightning.callback import ActiveLabCallback
    from activelab_lightning.data import ActiveDataModule
    from activelab_lightning.oracles import SimulatedOracle
    from activelab_lightning.records import Annotation
    from activelab_lightning.store import AnnotationStore

    class TabularMLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            h = args.hidden
            self.net = nn.Sequential(
                nn.Linear(args.features, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, args.classes)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    n_labeled = int(args.labeled)
    n = n_labeled + num_unlabeled
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, args.features, generator=g)
    teacher = torch.randn(args.features, args.classes, generator=g)
    true = (x @ teacher).argmax(1)
    accuracies = torch.linspace(0.6, 0.95, args.annotators).tolist()
    oracle = SimulatedOracle(true, accuracies, num_classes=args.classes, seed=0)
    # initial labels: every labeled row gets 1-3 labels from distinct simulated annotators
    per_row = torch.randint(1, 4, (n_labeled,), generator=g)
    order = torch.argsort(torch.rand(n_labeled, args.annotators, generator=g), dim=1)
    wrong = torch.rand(n_labeled, args.annotators, generator=g) > torch.tensor(accuracies)
    noise = torch.randint(1, args.classes, (n_labeled, args.annotators), generator=g)
    given = torch.where(wrong, (true[:n_labeled, None] + noise) % args.classes, true[:n_labeled, None])
    initial = [
        Annotation(i, oracle.annotator_ids[a], int(given[i, a]), source="initial")
        for i in range(n_labeled)
        for a in order[i, : int(per_row[i])].tolist()
    ]
    store = AnnotationStore(
        workdir / f"store-{num_unlabeled}.sqlite",
        num_examples=n,
        class_names=[f"c{k}" for k in range(args.classes)],
    )
    dm = ActiveDataModule(
        TensorDataset(x),
        store,
        batch_size=256,
        inference_batch_size=args.batch_size,
        initial_labels=initial,
        seed=0,
    )
    torch.manual_seed(0)
    model = TabularMLP()
    callback = ActiveLabCallback(
        oracle, args.query, "activelab", reporter=None, seed=0, out_of_sample=args.out_of_sample
    )
    return x, model, dm, callback, store


def _bare_loop(model, x, batch_size: int) -> float:
    import torch

    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            torch.softmax(model(x[i : i + batch_size]), dim=-1)
    seconds = time.perf_counter() - start
    model.train()
    return seconds


def _acquisitions(model, dm, callback, repeats: int, memory: bool) -> tuple[list[float], float | None]:
    """Run ``repeats`` fits of one training step each; time the acquisition in ``on_train_end``."""
    import lightning.pytorch as pl

    seconds: list[float] = []
    extra: list[float] = []
    original = callback.acquire

    def timed(*a, **k):
        sampler = RssSampler() if memory else None
        start = time.perf_counter()
        if sampler is not None:
            with sampler:
                out = original(*a, **k)
            extra.append(sampler.extra_mb)
        else:
            out = original(*a, **k)
        seconds.append(time.perf_counter() - start)
        return out

    callback.acquire = timed
    for _ in range(repeats):
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=1,
            logger=False,
            enable_checkpointing=False,
            callbacks=[callback],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(model, datamodule=dm)
    return seconds, (max(extra) if extra else None)


def _memory_probe(argv: list[str] | None, size: int) -> float:
    """Peak extra RSS (MB) of one acquisition over ``size`` unlabeled rows, in a fresh process."""
    import subprocess

    argv = list(sys.argv[1:] if argv is None else argv)
    proc = subprocess.run(
        [sys.executable, __file__, *argv, "--memory-probe", str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("peak extra RSS: ")][-1]
    return float(line.split()[3])


def main(argv: list[str] | None = None) -> float:
    args = _parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import warnings

    import lightning
    import torch

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric"):
        import logging

        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    u, n_labeled = int(args.unlabeled), int(args.labeled)
    print(
        f"# python {platform.python_version()}, torch {torch.__version__}, lightning {lightning.__version__}, "
        f"threads {args.threads}, cpu {platform.processor() or platform.machine()}"
    )
    print(
        f"# rows: {u:,} unlabeled + {n_labeled:,} labeled, D={args.features}, K={args.classes}, "
        f"MLP hidden {args.hidden}x2, batch {args.batch_size}, query {args.query}, repeats {args.repeats}"
    )
    if args.memory_probe is not None:  # child process: one acquisition on a fresh heap
        with tempfile.TemporaryDirectory() as tmp:
            _, model, dm, callback, store = _build(args, int(args.memory_probe), Path(tmp))
            print(f"peak extra RSS: {_acquisitions(model, dm, callback, 1, memory=True)[1]:.3f} MB")
            store.close()
        return 0.0
    memory = {} if args.no_memory else {size: _memory_probe(argv, size) for size in (max(u // 4, 1), u)}
    with tempfile.TemporaryDirectory() as tmp:
        x, model, dm, callback, store = _build(args, u, Path(tmp))
        bare: list[float] = []
        acquisition: list[float] = []
        for _ in range(args.repeats):
            bare.append(_bare_loop(model, x, args.batch_size))
            acquisition.extend(_acquisitions(model, dm, callback, 1, memory=False)[0])
        bare.append(_bare_loop(model, x, args.batch_size))
        rows = u + n_labeled
        print(
            f"bare loop ({rows:,} rows): min {min(bare):.3f} s  (all: {', '.join(f'{s:.3f}' for s in bare)})"
        )
        print(
            f"acquisition ({rows:,} rows, {args.query} requests): min {min(acquisition):.3f} s  "
            f"(all: {', '.join(f'{s:.3f}' for s in acquisition)})"
        )
        print(
            f"requests answered and stored: {len(store.requests(0))} in round 0; store now {len(store):,} labels"
        )
        if memory:
            sizes = ", ".join(f"{mb:.1f} MB with {size:,} unlabeled rows" for size, mb in memory.items())
            print(
                f"peak extra RSS during one acquisition (fresh process each): {sizes} (the pool's float64 "
                f"probabilities alone would be {u * args.classes * 8 / 2**20:.0f} MB)"
            )
        store.close()
    ratio = min(acquisition) / min(bare)
    print(f"acquisition/bare_loop ratio: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
