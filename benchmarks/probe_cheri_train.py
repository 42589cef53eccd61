"""Cheri Block training step at one shape, fused vs unfused, with a per-kernel CUDA time table.

    python benchmarks/probe_cheri_train.py [--N 512 --L 1024 --C 128 --dilation 4] [--json out.json]

bf16 activations (autocast for the unfused path's products), fp32 parameters, forward +
``autograd.grad`` of x and the three weights; medians of ``triton.testing.do_bench``; then one
``torch.profiler`` pass of each, CUDA kernels sorted by time.
"""

import argparse
import json
import sys

import torch
import torch.nn.functional as F


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--dilation", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("probe_cheri_train needs a CUDA GPU")
    import triton
    from torch.profiler import ProfilerActivity, profile

    from strandwise.io.atomic import atomic_write_text
    from strandwise.kernels.cheri_train import cheri_block_train
    from strandwise.kernels.conv_norm import fused_dilated_conv_norm

    N, L, C, d = args.N, args.L, args.C, args.dilation
    torch.manual_seed(0)
    cw = torch.randn(3, C, device="cuda", requires_grad=True)
    w1 = (torch.randn(2 * C, C, device="cuda") * 0.02).requires_grad_()
    w2 = (torch.randn(C, 2 * C, device="cuda") * 0.02).requires_grad_()
    x = torch.randn(N, L, C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn_like(x)

    def unfused(x):
        h = fused_dilated_conv_norm(x, cw, d)
        h = F.gelu(F.linear(h, w1), approximate="tanh")
        return torch.add(x, F.linear(h, w2 * 0.15))

    def fused(x):
        return cheri_block_train(x, cw, w1, w2, d)

    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "shape": vars(args)}
    tables = []
    for name, fn in (("unfused", unfused), ("fused", fused)):
        def fwd():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return fn(x)

        def fb():
            return torch.autograd.grad(fwd(), [x, cw, w1, w2], g)

        fb()
        res[f"{name}_fwd_ms"] = triton.testing.do_bench(fwd, warmup=25, rep=200)
        res[f"{name}_fwd_bwd_ms"] = triton.testing.do_bench(fb, warmup=25, rep=200)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fb()
            torch.cuda.synchronize()
        tables.append(f"== {name}: fwd+bwd x5 ==\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=20))
        print(name, f"fwd {res[f'{name}_fwd_ms']:.3f} ms, fwd+bwd {res[f'{name}_fwd_bwd_ms']:.3f} ms", flush=True)
    print("\n".join(tables))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
