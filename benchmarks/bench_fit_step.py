"""Training throughput of ``strandwise.train.fit`` itself (Lightning loop, loss, Muon + AdamW,
schedules, EMA, data loading), with and without ``TrainConfig.cuda_graph``, on one GPU.

    python benchmarks/bench_fit_step.py [--n 4096] [--batch 64] [--epochs 3] [--out fit.json]

Model: ``preset="upstream"`` (128 filters, 9 blocks, k=75 profile head), 2,114 bp in, 1,000 out;
random one-hot sequences and Poisson counts (throughput does not depend on the values). Each
configuration runs ``--epochs`` epochs without validation; the figure is the last epoch's
``train_time`` from the history (the first epoch carries autotuning and, with the graph, the
capture). sequences/s = examples per epoch / train_time.
"""

import argparse
import json
import time

import torch

from strandwise import Cherimoya
from strandwise.io.atomic import atomic_write_text
from strandwise.train import OptimizerConfig, TrainConfig, fit
from strandwise.train._lightning import L


class _EpochTimes(L.Callback):
    def __init__(self):
        self.times, self._t = [], None

    def on_train_epoch_start(self, trainer, pl_module):
        torch.cuda.synchronize()
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--precisions", default="bf16-mixed,32-true")
    ap.add_argument("--graph", default="0,1", help="cuda_graph settings to run, comma-separated (0, 1)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 4, (a.n, 2114), generator=g)
    X = torch.nn.functional.one_hot(idx, 4).permute(0, 2, 1).float().contiguous()
    y = torch.poisson(torch.full((a.n, 1, 1000), 0.5), generator=g)
    rows = []
    gpu = torch.cuda.get_device_name()
    print(gpu, flush=True)
    for precision in a.precisions.split(","):
        for graph in [g == "1" for g in a.graph.split(",")]:
            cb = _EpochTimes()
            cfg = TrainConfig(batch_size=a.batch, max_epochs=a.epochs, precision=precision, accelerator="gpu",
                              devices=1, cuda_graph=graph, init_count_bias=False,
                              optimizer=OptimizerConfig(n_warmup_epochs=1))
            try:
                fit(Cherimoya(preset="upstream", random_state=0), (X, y), config=cfg, quiet=True,
                    callbacks=[cb])
                t = cb.times[-1]
                row = dict(precision=precision, cuda_graph=graph, epoch_s=[round(v, 4) for v in cb.times],
                           seq_per_s=(a.n // a.batch) * a.batch / t,
                           peak_gib=torch.cuda.max_memory_allocated() / 2**30)
            except Exception as e:  # report, keep going
                row = dict(precision=precision, cuda_graph=graph, error=repr(e)[:500])
            torch.cuda.reset_peak_memory_stats()
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.out:
        atomic_write_text(a.out, json.dumps({"gpu": gpu, "n": a.n, "batch": a.batch, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
