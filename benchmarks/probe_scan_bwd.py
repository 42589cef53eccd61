"""Time (or, under ``ncu``, profile) the selective-scan backward at the spec's shapes.

One forward and ``--reps`` backward calls per shape on ``bench_selective_scan.make_inputs``
(bf16 u/Δ/z/B/C, fp32 A/D/delta_bias, z gate and softplus on, d_state 16): a small program for
``ncu --kernel-name regex:_bwd_kernel`` and for sweeps of the ``STRANDWISE_SCAN_*`` plan
overrides. Prints one JSON line per shape with the plan and, with ``--time``, the median wall
time of the forward and of the backward call alone (``triton.testing.do_bench``).

    python benchmarks/probe_scan_bwd.py --time --shapes 2x512x131072,8x1024x4096 [--deterministic both]
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import triton
import triton.testing

from bench_selective_scan import SHAPES, make_inputs
from strandwise.kernels import selective_scan_triton as sst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES))
    ap.add_argument("--reps", type=int, default=1, help="backward calls after warm-up (ncu mode)")
    ap.add_argument("--time", action="store_true", help="do_bench the forward and backward")
    ap.add_argument("--bwd-configs", default="",
                    help="semicolon list of TF:num_warps:maxnreg (0 = none); each replaces the "
                         "backward's autotuned configs in turn (BLOCK_D = 32·num_warps)")
    ap.add_argument("--deterministic", default="0", choices=("0", "1", "both"),
                    help="torch.use_deterministic_algorithms for the runs: 1 = dB/dC as partials "
                         "summed in a fixed order instead of atomic adds; both = each shape twice")
    args = ap.parse_args()
    cfgs = [None]
    if args.bwd_configs:
        cfgs = [tuple(int(v) for v in c.split(":")) for c in args.bwd_configs.split(";")]
    base_tuned, base_min_tf = sst._bwd_kernel_tuned, sst._MIN_TF_BWD
    for cfg in cfgs:
        sst._bwd_kernel_tuned, sst._MIN_TF_BWD = base_tuned, base_min_tf
        if cfg is not None:
            tf, w, mr = cfg
            conf = triton.Config({"BLOCK_D": 32 * w, "TF": tf}, num_warps=w, num_stages=1,
                                 maxnreg=mr or None)
            sst._bwd_kernel_tuned = triton.autotune(configs=[conf], key=sst._AUTOTUNE_KEY + ["ATOMIC_BC"],
                                                   reset_to_zero=["dBp_ptr"])(sst._bwd_kernel)
            sst._MIN_TF_BWD = min(tf, base_min_tf)
        for spec in args.shapes.split(","):
            for det in ((False, True) if args.deterministic == "both" else (args.deterministic == "1",)):
                torch.use_deterministic_algorithms(det, warn_only=True)
                run_shape(spec, cfg, args)


def run_shape(spec, cfg, args):
    b, di, L = (int(v) for v in spec.split("x"))
    t = make_inputs(b, di, L, "cuda")
    dout = torch.randn_like(t["u"])
    fwd_args = (t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"], True,
                False, None, False)
    _, _, states, plan = sst.selective_scan_triton_fwd(*fwd_args)

    def bwd():
        return sst.selective_scan_triton_bwd(dout, None, t["u"], t["delta"], t["A"], t["B"], t["C"],
                                             t["D"], t["z"], t["delta_bias"], True, False, states, plan)

    bwd()  # autotune
    torch.cuda.synchronize()
    row = dict(shape=spec, plan=list(plan), cfg=cfg,
               deterministic=torch.are_deterministic_algorithms_enabled(),
               env={k: v for k, v in os.environ.items() if k.startswith("STRANDWISE_SCAN")})
    if args.time:
        row["fwd_ms"] = triton.testing.do_bench(lambda: sst.selective_scan_triton_fwd(*fwd_args),
                                                warmup=10, rep=100)
        row["bwd_ms"] = triton.testing.do_bench(bwd, warmup=10, rep=100)
    else:
        for _ in range(args.reps):
            bwd()
        torch.cuda.synchronize()
    best = getattr(sst._bwd_kernel_tuned, "best_config", None)
    row["bwd_config"] = str(best) if best is not None else None
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
