"""Benchmark the fused residual add + RMSNorm / NormRC of the Caduceus blocks.

At the PS-131k block shape (batch 4, 131,072 positions, 2 × 256 channels; bf16 block input, fp32
residual; NormRC with the "published" swap) and the Ph shape (one group of 256), it times with
``triton.testing.do_bench`` (median), forward and forward+backward:

* :func:`strandwise.kernels.add_rms_norm.add_rms_norm` (Triton on CUDA);
* the PyTorch reference :func:`~strandwise.kernels.add_rms_norm.add_rms_norm_reference`, eager
  and under ``torch.compile``;
* the floor: forward reads x (bf16) and the residual (fp32) and writes S (fp32) and the normed
  output (bf16); backward reads dy, dS, S and writes dx and dresidual; bytes / the
  device-to-device copy bandwidth measured in the same run.

    python benchmarks/bench_add_rms_norm.py --out bench_add_rms_norm.json [--no-compile]
"""

from __future__ import annotations

import argparse
import json

import torch

from strandwise.io.atomic import atomic_write_text

CASES = [("PS NormRC + swap", 4, 131072, 512, True, True), ("Ph RMSNorm", 8, 131072, 256, False, False)]


def copy_bandwidth():
    from triton.testing import do_bench

    src = torch.empty(2**29, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    return 2 * src.numel() * 2 / (do_bench(lambda: dst.copy_(src), return_mode="median") * 1e-3)


def main():
    from triton.testing import do_bench

    from strandwise.kernels.add_rms_norm import add_rms_norm, add_rms_norm_reference

    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    bw = copy_bandwidth()
    compiled = None if args.no_compile else torch.compile(add_rms_norm_reference, dynamic=False)
    rows = []
    for name, B, L, C, rc, swap in CASES:
        x = torch.randn(B, L, C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        r = torch.randn(B, L, C, device="cuda", requires_grad=True)
        w = (torch.rand(C // 2 if rc else C, device="cuda") + 0.5).requires_grad_(True)
        gy = torch.randn(B, L, C, device="cuda", dtype=torch.bfloat16)
        gs = torch.randn(B, L, C, device="cuda")
        n = B * L * C
        row = {"case": name, "batch": B, "L": L, "C": C,
               "floor_fwd_ms": n * (2 + 4 + 4 + 2) / bw * 1e3, "floor_bwd_ms": n * (2 + 4 + 4 + 2 + 4) / bw * 1e3}
        impls = [("triton", add_rms_norm), ("eager", add_rms_norm_reference)]
        if compiled is not None:
            impls.append(("compile", compiled))
        for impl, fn in impls:
            def fwd():
                return fn(x, r, w, 1e-5, rc=rc, swap=swap)

            def fb():
                y, s = fwd()
                torch.autograd.grad([y, s], [x, r, w], [gy, gs])

            try:
                fb()  # compile / autotune outside the timing
                f = do_bench(fwd, return_mode="median")
                t = do_bench(fb, return_mode="median")
                row[f"{impl}_fwd_ms"], row[f"{impl}_bwd_ms"] = f, t - f
            except Exception as e:  # noqa: BLE001 - a compile failure is a result, not a crash
                row[f"{impl}_error"] = repr(e)[:300]
        rows.append(row)
        print(row, flush=True)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "copy_bandwidth_TBps": bw / 1e12, "rows": rows}
    print(f"\n{res['device']}, copy bandwidth {bw / 1e12:.2f} TB/s (ms)")
    print(f"{'case':<20}{'impl':>9}{'fwd':>9}{'bwd':>9}")
    for r_ in rows:
        for impl in ("triton", "eager", "compile"):
            if f"{impl}_fwd_ms" in r_:
                print(f"{r_['case']:<20}{impl:>9}{r_[f'{impl}_fwd_ms']:>9.3f}{r_[f'{impl}_bwd_ms']:>9.3f}")
        print(f"{r_['case']:<20}{'floor':>9}{r_['floor_fwd_ms']:>9.3f}{r_['floor_bwd_ms']:>9.3f}")
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
