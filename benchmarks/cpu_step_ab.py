"""CPU training step A/B with paired, alternating steps: "before" and "after" variants of one
piece of the CPU path, switched in one process, one step each in turn, so slow drifts of the
machine's speed hit both sides alike. Reports the median of the per-pair differences with its
interquartile range, beside each side's median step.

Variants (``--what``):

* ``conv_norm_bwd``: the CPU conv+norm backward over the whole batch at once (before) against
  one example at a time (after, ``strandwise.kernels.conv_norm._conv_norm_backward_cpu``).

Description preset (96 filters), 2,114 bp, fp32, Muon + AdamW, a forward + backward + both
optimizer steps per step.

    python benchmarks/cpu_step_ab.py --what conv_norm_bwd [--batch 8 --pairs 20] [--out out.json]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def whole_batch_conv_norm_bwd(g, x, w, xhat, rstd, d):
    """The conv+norm backward as it was before the per-example version (whole-batch passes)."""
    L, C = x.shape[1], x.shape[2]
    M = L * C
    s1 = g.sum(dim=(1, 2), keepdim=True)
    s2 = (g * xhat).sum(dim=(1, 2), keepdim=True)
    rstd = rstd.reshape(-1, 1, 1)
    delta = torch.mul(g, M).sub_(s1).sub_(xhat * s2).mul_(rstd / M)
    dx = delta * w[1]
    dw = torch.zeros_like(w)
    dw[1] = (delta * x).sum(dim=(0, 1))
    if d < L:
        dx[:, :-d] += delta[:, d:] * w[0]
        dx[:, d:] += delta[:, :-d] * w[2]
        dw[0] = (delta[:, d:] * x[:, :-d]).sum(dim=(0, 1))
        dw[2] = (delta[:, :-d] * x[:, d:]).sum(dim=(0, 1))
    return dx, dw


def quartiles(xs):
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", choices=("conv_norm_bwd",), default="conv_norm_bwd")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from bench_cherimoya_model import loss_fn, make_optimizers

    from strandwise import Cherimoya
    from strandwise.io.atomic import atomic_write_text
    from strandwise.kernels import conv_norm as cn

    after_fn = cn._conv_norm_backward_cpu
    sides = {"before": whole_batch_conv_norm_bwd, "after": after_fn}

    gen = torch.Generator().manual_seed(0)
    L = 2114
    model = Cherimoya(random_state=0)
    X = F.one_hot(torch.randint(0, 4, (args.batch, L), generator=gen), 4).transpose(1, 2).float()
    counts = torch.poisson(torch.full((args.batch, 1, 1000), 0.5), generator=gen)
    opts = make_optimizers(model)

    def step():
        yp, yc = model(X)
        loss_fn(yp, yc, counts).backward()
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)

    times = {"before": [], "after": []}
    try:
        for side in ("before", "after", "before", "after"):  # warm-up, untimed
            cn._conv_norm_backward_cpu = sides[side]
            step()
        for i in range(args.pairs):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for side in order:
                cn._conv_norm_backward_cpu = sides[side]
                t = time.perf_counter()
                step()
                times[side].append((time.perf_counter() - t) * 1e3)
    finally:
        cn._conv_norm_backward_cpu = after_fn
    diffs = [b - a for b, a in zip(times["before"], times["after"])]  # > 0: "after" is faster
    q1, med, q3 = quartiles(diffs)
    res = {"what": args.what, "batch": args.batch, "pairs": args.pairs, "torch": torch.__version__,
           "machine": f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
           "before_median_ms": statistics.median(times["before"]),
           "after_median_ms": statistics.median(times["after"]),
           "paired_saving_ms": {"q1": q1, "median": med, "q3": q3},
           "times_ms": times}
    print(json.dumps({k: v for k, v in res.items() if k != "times_ms"}))
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
