"""Benchmark Mamba's causal depthwise conv + SiLU: Triton kernels vs PyTorch, and the floor.

At the shapes of one Mamba call inside the Caduceus-PS 131k model (d_inner 512, kernel 4, bf16
activations, fp32 weight and bias) and a few smaller ones. For each shape and direction
(causal / anti-causal) it times with ``triton.testing.do_bench`` (median):

* ``strandwise.kernels.causal_conv.causal_conv1d_silu`` (Triton on CUDA): forward and
  forward+backward;
* the reference, ``F.silu(causal_conv1d(...))`` (PyTorch's depthwise ``conv1d``) under the same
  dtypes;
* the floor: forward reads x and writes out (2 passes); backward reads x and dout and writes dx
  (3 passes; dw/db are tiny), over the device-to-device copy bandwidth measured in the same run.

Prints a table and writes JSON::

    python benchmarks/bench_causal_conv.py --out bench_causal_conv.json
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from strandwise.io.atomic import atomic_write_text

SHAPES = [(4, 512, 131072), (8, 512, 131072), (2, 512, 16384), (8, 1024, 4096)]


def copy_bandwidth():
    from triton.testing import do_bench

    a = torch.empty(2**30 // 2, dtype=torch.bfloat16, device="cuda").normal_()
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), return_mode="median")
    return 2 * a.numel() * a.element_size() / (ms * 1e-3)


def main():
    from triton.testing import do_bench

    from strandwise.kernels.causal_conv import causal_conv1d, causal_conv1d_silu

    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    bw = copy_bandwidth()
    rows = []
    for B, D, L in SHAPES:
        xz = torch.randn(B, 2 * D, L, device="cuda", dtype=torch.bfloat16)
        x = xz[:, :D].detach().requires_grad_(True)  # a channel slice, as Mamba's in_proj output
        w = (torch.randn(D, 1, 4, device="cuda") * 0.5).requires_grad_(True)
        b = (torch.randn(D, device="cuda") * 0.1).requires_grad_(True)
        g = torch.randn(B, D, L, device="cuda", dtype=torch.bfloat16)
        nbytes = B * D * L * 2
        for reverse in (False, True):
            def ours():
                return causal_conv1d_silu(x, w, b, reverse=reverse)

            def ref():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return F.silu(causal_conv1d(x, w, b, reverse=reverse))

            row = {"batch": B, "d_inner": D, "L": L, "reverse": reverse,
                   "floor_fwd_ms": 2 * nbytes / bw * 1e3, "floor_bwd_ms": 3 * nbytes / bw * 1e3}
            for name, fn in (("triton", ours), ("torch", ref)):
                fwd = do_bench(lambda: fn(), return_mode="median")
                fb = do_bench(lambda: torch.autograd.grad(fn(), [x, w, b], g), return_mode="median")
                row[f"{name}_fwd_ms"], row[f"{name}_bwd_ms"] = fwd, fb - fwd
            with torch.no_grad():
                err = ((ours().float() - ref().float()).abs().max() / ref().float().abs().max()).item()
            row["rel_err_vs_torch"] = err
            rows.append(row)
            print(row, flush=True)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "copy_bandwidth_TBps": bw / 1e12, "rows": rows}
    print(f"\n{res['device']}, copy bandwidth {bw / 1e12:.2f} TB/s; bf16 x, fp32 w/b, k=4 (ms)")
    print(f"{'B':>3}{'D':>6}{'L':>8}{'rev':>5} | {'triton fwd':>10}{'torch fwd':>10}{'floor':>7} | "
          f"{'triton bwd':>10}{'torch bwd':>10}{'floor':>7}")
    for r in rows:
        print(f"{r['batch']:>3}{r['d_inner']:>6}{r['L']:>8}{'y' if r['reverse'] else 'n':>5} | "
              f"{r['triton_fwd_ms']:>10.3f}{r['torch_fwd_ms']:>10.3f}{r['floor_fwd_ms']:>7.3f} | "
              f"{r['triton_bwd_ms']:>10.3f}{r['torch_bwd_ms']:>10.3f}{r['floor_bwd_ms']:>7.3f}")
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
