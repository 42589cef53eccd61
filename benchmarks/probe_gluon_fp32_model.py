"""Why the whole model's fp32 inference was slower with the Gluon MLP pass forced (Cherimoya round
17: 38.4k against 46.2k seq/s on an H100, while the block alone was faster): the upstream-size
model at batch 512 × 2,114 bp, fp32 (and bf16 under autocast for comparison), inference with the
Gluon pass forced on and off, each profiled with ``torch.profiler``; prints the GPU time per
kernel name, summed over the profiled calls, side by side::

    python benchmarks/probe_gluon_fp32_model.py [--batch 512 --calls 5 --dtypes fp32,bf16]
"""

from __future__ import annotations

import argparse
import contextlib

import torch

from _profiling import cuda_kernel_ms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--dtypes", default="fp32,bf16")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    from strandwise.kernels import cheri_infer as ci
    from strandwise.models import Cherimoya

    print(torch.cuda.get_device_name())
    model = Cherimoya(preset="upstream", random_state=0).cuda().eval()
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (args.batch, 2114), generator=g), 4)
    X = X.permute(0, 2, 1).float().cuda()
    saved = ci._GLUON["on"]
    try:
        for dt in args.dtypes.split(","):
            ac = torch.autocast("cuda", dtype=torch.bfloat16) if dt == "bf16" else contextlib.nullcontext()

            def fwd():
                with torch.no_grad(), ac:
                    return model(X)

            res = {}
            for label, on in (("gluon", True), ("triton", False)):
                ci.set_gluon_inference(on)
                res[label] = cuda_kernel_ms(fwd, args.calls)
            names = sorted(set(res["gluon"]) | set(res["triton"]),
                           key=lambda k: -max(res["gluon"].get(k, 0), res["triton"].get(k, 0)))
            print(f"\n{dt}: ms per call   gluon   triton   kernel")
            for k in names[:16]:
                print(f"{'':18s}{res['gluon'].get(k, 0):8.3f} {res['triton'].get(k, 0):8.3f}   {k}")
            print(f"{'total':18s}{sum(res['gluon'].values()):8.3f} {sum(res['triton'].values()):8.3f}")
    finally:
        ci.set_gluon_inference(saved)


if __name__ == "__main__":
    main()
