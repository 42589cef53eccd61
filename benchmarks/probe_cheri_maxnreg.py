"""Cheri Block inference MLP pass with capped registers: fixed configs, timed, checked.

Nsight Compute (BENCHMARKS.md, Round 11) found the autotuned MLP pass (64 rows, 4 warps,
hidden chunks of 64, 3 stages) at 244 registers per thread: two 4-warp programs per SM, and
latency-bound. An offline sm_90 compile shows that 8 warps with hidden chunks of 32 fit 128
registers with an 8-byte spill (``maxnreg=128``), i.e. two 8-warp programs (16 warps) per SM;
``EVEN=1`` (no row/column masks) removes that spill. This probe times the MLP kernel alone
(statistics precomputed) for a list of configs, with and without a register cap and the masks,
and checks each against the default launch.

    python benchmarks/probe_cheri_maxnreg.py [--N 512 --L 1024 --C 128 --dilation 4] [--json out.json]
"""

import argparse
import json
import sys

import torch

CONFIGS = [  # BLOCK_M, BLOCK_H, num_warps, num_stages, maxnreg, EVEN (no row/column masks)
    (64, 64, 4, 3, None, 0),    # the autotuner's pick on the H100/H200
    (64, 64, 4, 3, None, 1),
    (64, 64, 8, 3, None, 0),
    (64, 32, 8, 3, None, 0),
    (64, 32, 8, 3, None, 1),
    (64, 32, 8, 3, 128, 0),
    (64, 32, 8, 3, 128, 1),
    (64, 32, 8, 4, 128, 1),
    (64, 64, 8, 3, 128, 0),
    (64, 64, 8, 2, 128, 1),
    (64, 32, 4, 3, 168, 0),
    (128, 64, 8, 3, 168, 0),
    (32, 32, 4, 3, None, 0),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--dilation", type=int, default=4)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("probe_cheri_maxnreg needs a CUDA GPU")
    import triton

    from strandwise.io.atomic import atomic_write_text
    from strandwise.kernels import cheri_infer_triton as cit
    from strandwise.kernels import conv_norm_triton as cnt
    from strandwise.kernels.cheri_infer import _derived_weights, cheri_block_inference

    N, L, C, d = args.N, args.L, args.C, args.dilation
    H = 2 * C
    torch.manual_seed(0)
    cw = torch.randn(3, C, device="cuda")
    w1 = torch.randn(H, C, device="cuda") * 0.05
    w2 = torch.randn(C, H, device="cuda") * 0.05
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "shape": vars(args), "rows": []}
    for label in args.dtypes.split(","):
        dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[label]
        x = torch.randn(N, L, C, device="cuda", dtype=dt)
        with torch.no_grad():
            ref = cheri_block_inference(x, cw, w1, w2, d, fp32_dot="bf16")
            whole = triton.testing.do_bench(lambda: cheri_block_inference(x, cw, w1, w2, d, fp32_dot="bf16"),
                                            warmup=25, rep=200)
        mean, rstd = cnt.conv_norm_stats(x, cw, d, 1e-3)
        w1t, w2t = _derived_weights(w1, w2, 0.15, torch.bfloat16)
        out = torch.empty_like(x)
        NL = N * L
        print(f"{label}: whole default call {whole:.3f} ms", flush=True)
        res["rows"].append(dict(dtype=label, config="default whole call", ms=whole))
        bc = max(16, triton.next_power_of_2(C))
        for bm, bh, nw, ns, mr, even in CONFIGS:
            if even and (NL % bm or C != bc):
                continue
            opts = dict(num_warps=nw, num_stages=ns)
            if mr:
                opts["maxnreg"] = mr

            def run():
                cit.mlp_kernel[(triton.cdiv(NL, bm),)](
                    x, cw, w1t, w2t, mean, rstd, out, out, out, out, NL, L, C, H, d,
                    BLOCK_M=bm, BLOCK_C=bc, BLOCK_H=bh, DOT=0,
                    PRECISION="ieee", FAST_GELU=True, RELOAD_RES=1, SAVE=0, EVEN=even, **opts)

            name = f"BLOCK_M {bm}, BLOCK_H {bh}, {nw} warps, {ns} stages, maxnreg {mr}, EVEN {even}"
            try:
                run()
                torch.cuda.synchronize()
                err = float((out.float() - ref.float()).abs().max())
                ms = triton.testing.do_bench(run, warmup=25, rep=200)
                row = dict(dtype=label, config=name, ms=ms, max_abs_diff_vs_default=err)
            except Exception as exc:  # a failing config is a result
                row = dict(dtype=label, config=name, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
