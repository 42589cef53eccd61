"""Time (or, under ``ncu``, profile) the selective-scan backward at the spec's shapes.

One forward and ``--reps`` backward calls per shape, bf16 u/Δ/z/B/C, fp32 A/D/delta_bias, z gate
and softplus on, d_state 16: a small program for ``ncu --kernel-name regex:_bwd_kernel`` and for
sweeps of the ``STRANDWISE_SCAN_*`` plan overrides. Prints one JSON line per shape with the
median wall time of the backward (``triton.testing.do_bench``) and the plan.

    python benchmarks/probe_scan_bwd.py --shapes 2x512x131072,8x1024x4096
"""

from __future__ import annotations

import argparse
import json
import os

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4x512x1024,2x512x16384,2x512x131072,8x1024x4096")
    ap.add_argument("--reps", type=int, default=1, help="backward calls after warm-up (ncu mode)")
    ap.add_argument("--time", action="store_true", help="do_bench the forward and backward")
    ap.add_argument("--bwd-configs", default="",
                    help="semicolon list of TF:num_warps:maxnreg (0 = none); each replaces the "
                         "backward's autotuned configs in turn (BLOCK_D = 32·num_warps)")
    args = ap.parse_args()
    import triton.testing  # noqa: F401

    from strandwise.kernels import selective_scan_triton as sst

    import triton

    cfgs = [None]
    if args.bwd_configs:
        cfgs = [tuple(int(v) for v in c.split(":")) for c in args.bwd_configs.split(";")]
    base_tuned, base_min_tf = sst._bwd_kernel_tuned, sst._MIN_TF_BWD
    for cfg in cfgs:
        if cfg is None:
            sst._bwd_kernel_tuned, sst._MIN_TF_BWD = base_tuned, base_min_tf
        else:
            tf, w, mr = cfg
            conf = triton.Config({"BLOCK_D": 32 * w, "TF": tf}, num_warps=w, num_stages=1,
                                 maxnreg=mr or None)
            sst._bwd_kernel_tuned = triton.autotune(configs=[conf], key=sst._AUTOTUNE_KEY)(sst._bwd_kernel)
            sst._MIN_TF_BWD = min(tf, base_min_tf)
        run_shapes(args, sst, triton.testing, cfg)


def run_shapes(args, sst, tt, cfg):
    for spec in args.shapes.split(","):
        b, di, L = (int(v) for v in spec.split("x"))
        torch.manual_seed(0)
        dev, bf = "cuda", torch.bfloat16
        u = torch.randn(b, di, L, device=dev, dtype=bf)
        delta = (torch.randn(b, di, L, device=dev) * 0.5 - 1).to(bf)
        z = torch.randn(b, di, L, device=dev, dtype=bf)
        B = torch.randn(b, 16, L, device=dev, dtype=bf)
        C = torch.randn(b, 16, L, device=dev, dtype=bf)
        A = -torch.rand(di, 16, device=dev) * 4 - 0.1
        D = torch.randn(di, device=dev)
        dbias = torch.randn(di, device=dev) * 0.1
        dout = torch.randn(b, di, L, device=dev, dtype=bf)
        out, _, states, plan = sst.selective_scan_triton_fwd(u, delta, A, B, C, D, z, dbias, True,
                                                             False, None, False)

        def bwd():
            return sst.selective_scan_triton_bwd(dout, None, u, delta, A, B, C, D, z, dbias, True,
                                                 False, states, plan)

        def fwd():
            return sst.selective_scan_triton_fwd(u, delta, A, B, C, D, z, dbias, True, False,
                                                 None, False)

        bwd()  # autotune
        torch.cuda.synchronize()
        row = dict(shape=spec, plan=list(plan), cfg=cfg,
                   env={k: v for k, v in os.environ.items() if k.startswith("STRANDWISE_SCAN")})
        if args.time:
            row["fwd_ms"] = tt.do_bench(fwd, warmup=10, rep=100)
            row["bwd_ms"] = tt.do_bench(bwd, warmup=10, rep=100)
        else:
            for _ in range(args.reps):
                bwd()
            torch.cuda.synchronize()
        best = getattr(sst._bwd_kernel_tuned, "best_config", None)
        row["bwd_config"] = str(best) if best is not None else None
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
