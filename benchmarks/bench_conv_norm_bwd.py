"""Conv-norm backward main pass: the comb kernel (default) against the per-tile kernel it replaced.

    python benchmarks/bench_conv_norm_bwd.py [--N 512 --L 1024 --C 128] [--dilations 1,2,...,256]
                                             [--dtypes bf16,fp32] [--residual both|yes|no]
                                             [--json out.json]

For each dtype, dilation and with / without the residual add (the fused Cheri training block
adds it), times ``conv_norm_bwd`` (comb) and ``conv_norm_bwd_tile`` (both autotuned, each
including the same stats pass and dw sum) and, from one ``torch.profiler`` pass, the main
kernel alone. The memory floor of the main kernel is its unique traffic (read x and g, and the
residual when added; write dx) over the card's device-to-device copy rate. Medians of
``triton.testing.do_bench``.
"""

import argparse
import json
import sys

import torch


def _kernel_us(fn, name):
    """Mean CUDA time (µs) of the kernels whose name contains ``name`` over 5 calls of fn."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    tot = [e.device_time_total for e in prof.key_averages() if name in e.key]
    return sum(tot) / 5 if tot else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--dilations", default="1,2,4,8,16,32,64,128,256")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--residual", choices=("both", "yes", "no"), default="both")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_conv_norm_bwd needs a CUDA GPU")
    import triton

    from strandwise.io.atomic import atomic_write_text
    from strandwise.kernels import conv_norm_triton as cnt

    dts = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    N, L, C = args.N, args.L, args.C
    src = torch.empty(N * L * C // 2, device="cuda")
    d2d = 2 * src.numel() * 4 / (triton.testing.do_bench(lambda: src.clone(), rep=100) * 1e-3)
    del src
    gpu = torch.cuda.get_device_name()
    print(f"{gpu}: N={N} L={L} C={C}, D2D {d2d / 1e12:.2f} TB/s")
    print(f"{'dtype':5} {'d':>4} {'res':>3} {'comb ms':>8} {'tile ms':>8} {'comb main us':>12} "
          f"{'tile main us':>12} {'floor us':>8} {'comb cfg':>16}")
    rows = []
    torch.manual_seed(0)
    for dname in args.dtypes.split(","):
        dt = dts[dname]
        x = torch.randn(N, L, C, device="cuda", dtype=dt)
        g = torch.randn_like(x)
        r = torch.randn_like(x)
        w = torch.randn(3, C, device="cuda")
        for d in (int(v) for v in args.dilations.split(",")):
            _, mean, rstd = cnt.conv_norm_fwd(x, w, d, 1e-3)
            for res in {"both": (None, r), "yes": (r,), "no": (None,)}[args.residual]:
                comb = lambda: cnt.conv_norm_bwd(g, x, w, mean, rstd, d, residual=res)  # noqa: E731
                tile = lambda: cnt.conv_norm_bwd_tile(g, x, w, mean, rstd, d, residual=res)  # noqa: E731
                a, b = comb(), tile()
                err = (a[0].float() - b[0].float()).abs().max().item()
                cfg = cnt._bwd_comb_tuned.best_config
                row = {
                    "dtype": dname, "dilation": d, "residual": res is not None,
                    "comb_ms": triton.testing.do_bench(comb, warmup=10, rep=100),
                    "tile_ms": triton.testing.do_bench(tile, warmup=10, rep=100),
                    "comb_main_us": _kernel_us(comb, "_bwd_comb_kernel"),
                    "tile_main_us": _kernel_us(tile, "_bwd_main_kernel"),
                    "floor_us": (3 + (res is not None)) * x.numel() * x.element_size() / d2d * 1e6,
                    "comb_config": {**cfg.kwargs, "num_warps": cfg.num_warps},
                    "max_abs_dx_diff": err,
                }
                rows.append(row)
                c = row["comb_config"]
                print(f"{dname:5} {d:4d} {int(res is not None):3d} {row['comb_ms']:8.3f} {row['tile_ms']:8.3f} "
                      f"{row['comb_main_us']:12.1f} {row['tile_main_us']:12.1f} {row['floor_us']:8.1f} "
                      f"{c['BLOCK_L']:>4}x{c['K']:<3}w{c['num_warps']:<2}", flush=True)
        del x, g, r
    if args.json:
        out = {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__,
               "shape": dict(N=N, L=L, C=C), "d2d_bytes_per_s": d2d, "rows": rows}
        atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
