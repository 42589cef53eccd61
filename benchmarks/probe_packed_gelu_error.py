"""Errors of the Gluon pass's packed GELU against float64 beside the fp32-GELU pass (the inference
call, the Gluon kernel's default configuration), at the GPU tests' shapes::

    python benchmarks/probe_packed_gelu_error.py [--out x.json]
"""

import argparse
import json

import torch

from strandwise.io.atomic import atomic_write_text
from strandwise.kernels import cheri_infer as ci


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rows = []
    ci.set_gluon_inference(True)
    for N, L, C, H, d in [(2, 1024, 128, 256, 4), (3, 2114, 96, 192, 1), (2, 37, 32, 64, 256), (5, 300, 64, 80, 8)]:
        g = torch.Generator().manual_seed(0)
        cw = torch.randn(3, C, generator=g)
        w1 = torch.randn(H, C, generator=g) * 0.08
        w2 = torch.randn(C, H, generator=g) * 0.08
        x = torch.randn(N, L, C, generator=torch.Generator().manual_seed(1))
        for dt in (torch.bfloat16, torch.float16):
            xd = x.cuda().to(dt)
            ref = ci.cheri_block_reference(xd.double().cpu(), cw.double(), w1.double(), w2.double(), d, 0.15)
            out = {}
            for packed in (False, True):
                ci.GLUON_PACKED_GELU = packed
                with torch.no_grad():
                    out[packed] = ci.cheri_block_inference(xd, cw.cuda(), w1.cuda(), w2.cuda(), d, 0.15).double().cpu()
            ulp = 2.0**-7 if dt == torch.bfloat16 else 2.0**-10
            e0, e1 = (out[False] - ref).abs(), (out[True] - ref).abs()
            diff = (out[True] - out[False]).abs()
            # error beyond the output's own rounding (half a step of |ref|)
            row = {"shape": [N, L, C, H, d], "dtype": str(dt).split(".")[-1],
                   "err_fp32_gelu": e0.max().item(), "err_packed": e1.max().item(),
                   "rel_err_fp32_gelu": (e0 / (ref.abs() + 1e-3)).max().item(),
                   "rel_err_packed": (e1 / (ref.abs() + 1e-3)).max().item(),
                   "mean_err_fp32_gelu": e0.mean().item(), "mean_err_packed": e1.mean().item(),
                   "max_diff": diff.max().item(), "frac_differ": (diff > 0).double().mean().item(),
                   "max_diff_in_steps": (diff / (ulp * ref.abs().clamp_min(2**-6))).max().item()}
            rows.append(row)
            print(json.dumps(row))
    if a.out:
        atomic_write_text(a.out, json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
