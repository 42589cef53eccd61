"""The conv-norm statistics pass alone, with the example or the row tile varying fastest over the
grid, across dilations (Cherimoya round 16): what the dilation threshold of
``conv_norm_triton._STATS_ROWS_FIRST_MIN_D`` rests on; with ``--loops`` also the looped variant
(``STRANDWISE_STATS_LOOP``: k row tiles a program). Prints one line per (shape, dtype, dilation),
ms, and the DRAM rate the time implies for one read of x (``--out``: the rows as JSON)::

    python benchmarks/probe_stats_grid.py [--dilations 1,8,16,32,64,128,256] [--loops 2,4,8]
"""

from __future__ import annotations

import argparse
import json

import torch

from strandwise.io.atomic import atomic_write_text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="512,2114,96;512,1024,128")
    ap.add_argument("--dilations", default="1,8,16,32,64,128,256")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--loops", default="", help="row tiles a program for the looped variant, comma-separated")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    loops = [int(v) for v in args.loops.split(",") if v.strip()]
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    import triton

    from strandwise.kernels import conv_norm_triton as cnt

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")

    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    saved = dict(cnt._STATS)
    rows = []
    try:
        for shape in args.shapes.split(";"):
            N, L, C = (int(v) for v in shape.split(","))
            for label in args.dtypes.split(","):
                x = torch.randn(N, L, C, device="cuda").to(dtypes[label])
                w = torch.randn(3, C, device="cuda")
                for d in (int(v) for v in args.dilations.split(",")):
                    times = {}
                    for name, rows_first, loop in ([("examples-first", False, 0), ("rows-first", True, 0)]
                                                   + [(f"loop{k}", None, k) for k in loops]):
                        cnt._STATS["rows_first"], cnt._STATS["loop"] = rows_first, loop
                        cnt.conv_norm_stats(x, w, d, 1e-3)
                        times[name] = bench(lambda: cnt.conv_norm_stats(x, w, d, 1e-3))
                    tb = x.numel() * x.element_size() / 1e12
                    print(f"{N} {L} {C} {label} d={d} " + " ".join(
                        f"{k} {v:.4f} ({tb / (v / 1e3):.2f} TB/s)" for k, v in times.items()) + " ms", flush=True)
                    rows.append({"N": N, "L": L, "C": C, "dtype": label, "d": d, "ms": times})
                del x
    finally:
        cnt._STATS.update(saved)
    if args.out:
        atomic_write_text(args.out, json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
