"""Cheri block inference with and without ``HALF_W2`` (the GELU's ½ folded into the cached
``(s·W2)ᵀ``, Cherimoya round 15), bf16 and fp32 input (bf16 operands), on one GPU.

The two settings are timed alternately, ``--rounds`` times each, so clock or thermal drift falls on
both; the medians of the rounds are reported. Each setting's output is checked bit for bit
against the other's first (the fold is exact by construction). Writes JSON (atomically)::

    python benchmarks/bench_cheri_half_w2.py --out cheri_half_w2.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cheri_block import bench, seeded_block_weights  # noqa: E402

from strandwise.io.atomic import atomic_write_text  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--dilation", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per setting")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--out", default="cheri_half_w2.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")

    from strandwise.kernels import cheri_infer as ci

    N, L, C, d = args.N, args.L, args.C, args.dilation
    cw, w1, w2 = seeded_block_weights(C)
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    rows = []
    saved = ci._HALF_W2["on"]
    try:
        for label in args.dtypes.split(","):
            x = torch.randn(N, L, C, device="cuda").to(dtypes[label])
            times = {1: [], 0: []}
            outs = {}
            with torch.no_grad():
                for half in (1, 0):
                    ci._HALF_W2["on"] = bool(half)
                    outs[half] = ci.cheri_block_inference(x, cw, w1, w2, d).clone()
                for _ in range(args.rounds):
                    for half in (1, 0):
                        ci._HALF_W2["on"] = bool(half)
                        times[half].append(bench(lambda: ci.cheri_block_inference(x, cw, w1, w2, d)))
            identical = bool(torch.equal(outs[1], outs[0]))
            for half in (1, 0):
                rows.append(dict(dtype=label, half_w2=half, ms=statistics.median(times[half]),
                                 rounds_ms=times[half], bit_identical=identical))
                print(f"{label:5s} HALF_W2={half} {rows[-1]['ms']:.4f} ms  rounds "
                      + " ".join(f"{t:.4f}" for t in times[half])
                      + f"  bit-identical={identical}", flush=True)
            del x, outs
    finally:
        ci._HALF_W2["on"] = saved
    result = dict(gpu=torch.cuda.get_device_name(), date=datetime.date.today().isoformat(),
                  torch=torch.__version__, shape=dict(N=N, L=L, C=C, dilation=d), rows=rows)
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
