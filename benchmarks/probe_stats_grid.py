"""The conv-norm statistics pass alone, with the example or the row tile varying fastest over the
grid, across dilations (Cherimoya round 16): what the dilation threshold of
``conv_norm_triton._STATS_ROWS_FIRST_MIN_D`` rests on. Prints one line per (shape, dtype,
dilation)::

    python benchmarks/probe_stats_grid.py [--dilations 1,8,16,32,64,128,256]
"""

from __future__ import annotations

import argparse

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="512,2114,96;512,1024,128")
    ap.add_argument("--dilations", default="1,8,16,32,64,128,256")
    ap.add_argument("--dtypes", default="bf16,fp32")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    import triton

    from strandwise.kernels import conv_norm_triton as cnt

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")

    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    saved = cnt._STATS["rows_first"]
    try:
        for shape in args.shapes.split(";"):
            N, L, C = (int(v) for v in shape.split(","))
            for label in args.dtypes.split(","):
                x = torch.randn(N, L, C, device="cuda").to(dtypes[label])
                w = torch.randn(3, C, device="cuda")
                for d in (int(v) for v in args.dilations.split(",")):
                    times = []
                    for rows_first in (False, True):
                        cnt._STATS["rows_first"] = rows_first
                        cnt.conv_norm_stats(x, w, d, 1e-3)
                        times.append(bench(lambda: cnt.conv_norm_stats(x, w, d, 1e-3)))
                    print(f"{N} {L} {C} {label} d={d} examples-first {times[0]:.4f} rows-first "
                          f"{times[1]:.4f} ms", flush=True)
                del x
    finally:
        cnt._STATS["rows_first"] = saved


if __name__ == "__main__":
    main()
