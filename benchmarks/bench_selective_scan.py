"""Benchmark the Triton Mamba-1 selective scan (spec ``caduceus.md`` §5.8).

Shapes are the spec's: bf16 u/Δ/z/B/C, fp32 A/D/delta_bias, z gate and softplus on, d_state 16.
For each shape it times, with ``triton.testing.do_bench`` (median):

* the Triton scan forward under ``torch.no_grad()`` (the inference call: no autograd node, no
  chunk-start states), the training forward (autograd records, the states are written), and
  forward+backward (backward = fwd+bwd − training forward);
* a plain-PyTorch chunked reference (chunks of 256 positions, a log-depth scan inside each);
* the memory floor: bytes that must cross HBM / device-to-device copy bandwidth measured in the
  same run (forward: read u, Δ, z, B, C and write out; backward: also read dout and write
  du, dΔ, dz, dB, dC);

next to the upstream CUDA kernel's figures on an H200 (from the spec). It prints a table and
writes JSON.

Usage::

    python benchmarks/bench_selective_scan.py --out bench_selective_scan.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from _profiling import cuda_kernel_ms

SHAPES = [(4, 512, 1024), (2, 512, 16384), (2, 512, 131072), (8, 1024, 4096)]
UPSTREAM_H200 = {  # (fwd ms, bwd ms), upstream selective_scan_cuda on one H200
    (4, 512, 1024): (0.049, 0.185),
    (2, 512, 16384): (0.379, 1.423),
    (2, 512, 131072): (2.966, 10.98),
    (8, 1024, 4096): (0.597, 2.340),
}
D_STATE = 16


def chunked_reference(u, delta, A, B, C, D, z, delta_bias, chunk=256):
    """Plain-PyTorch scan: materialises (batch, d_inner, chunk, N) per chunk only.

    Inside a chunk, a Hillis–Steele scan over (a, b) pairs (log2(chunk) shifted combines);
    the state is carried across chunks. fp32 throughout, output cast to u's dtype.
    """
    f = torch.float32
    dt = F.softplus(delta.to(f) + delta_bias[:, None])
    batch, di, L = u.shape
    h = torch.zeros(batch, di, A.shape[1], device=u.device, dtype=f)
    ys = []
    for s in range(0, L, chunk):
        d = dt[:, :, s:s + chunk]
        a = torch.exp(d[..., None] * A[:, None, :])  # (b, di, l, N)
        b = (d * u[:, :, s:s + chunk].to(f))[..., None] * B[:, None, :, s:s + chunk].to(f).transpose(-1, -2)
        b[:, :, 0] += a[:, :, 0] * h
        step = 1
        while step < a.shape[2]:
            a_prev = F.pad(a[:, :, :-step], (0, 0, step, 0), value=1.0)
            b_prev = F.pad(b[:, :, :-step], (0, 0, step, 0), value=0.0)
            b = a * b_prev + b
            a = a * a_prev
            step *= 2
        ys.append((b * C[:, None, :, s:s + chunk].to(f).transpose(-1, -2)).sum(-1))
        h = b[:, :, -1]
    y = torch.cat(ys, -1) + D[:, None] * u.to(f)
    return (y * F.silu(z.to(f))).to(u.dtype)


def make_inputs(batch, di, L, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    bf = torch.bfloat16

    def r(*s, dtype=bf):
        return torch.randn(*s, generator=g, device=device).to(dtype)

    return dict(
        u=r(batch, di, L), delta=(0.5 * r(batch, di, L, dtype=torch.float32) - 1.0).to(bf),
        A=-torch.arange(1, D_STATE + 1, device=device, dtype=torch.float32).repeat(di, 1),
        B=r(batch, D_STATE, L), C=r(batch, D_STATE, L), D=r(di, dtype=torch.float32),
        z=r(batch, di, L), delta_bias=0.1 * r(di, dtype=torch.float32),
    )


def copy_bandwidth(device, nbytes=2 << 30):
    from triton.testing import do_bench

    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=25, rep=200, return_mode="median")
    del x, y
    return 2 * nbytes / (ms * 1e-3)  # bytes read + written per second


def floor_ms(batch, di, L, bw, backward=False):
    act = batch * di * L * 2  # one bf16 (B, di, L) tensor
    bc = batch * D_STATE * L * 2
    if backward:  # read u, Δ, z, dout, B, C; write du, dΔ, dz, dB, dC
        nbytes = 7 * act + 4 * bc
    else:  # read u, Δ, z, B, C; write out
        nbytes = 4 * act + 2 * bc
    return nbytes / bw * 1e3


def kernel_profile(fwd, fwd_bwd, iters=20):
    """GPU kernel time per call (ms), by kernel name, for the forward and forward+backward.

    Set beside the wall-clock medians it separates kernel time from launch (host) overhead.
    """
    out = {}
    for name, fn, grad in (("fwd", fwd, False), ("fwd_bwd", fwd_bwd, True)):
        with torch.set_grad_enabled(grad):
            per = {k: round(v, 4) for k, v in cuda_kernel_ms(fn, iters).items()}
        out[name] = dict(total_kernel_ms=round(sum(per.values()), 4), kernels=per)
    return out


def host_profile(fn, iters=200, top=25):
    """Host (Python) time per call in ms, with the most expensive functions (cProfile, tottime)."""
    import cProfile
    import io
    import pstats

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    host_ms = (time.perf_counter() - t0) / iters * 1e3
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(iters):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(top)
    return dict(host_ms_per_call=round(host_ms, 4), cprofile_top=buf.getvalue().splitlines()[-top - 3:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_selective_scan.json", help="JSON output path")
    ap.add_argument("--skip-reference", action="store_true", help="do not time the PyTorch reference")
    ap.add_argument("--shapes", default="all",
                    help="comma-separated indices into the spec's shape list (default: all)")
    ap.add_argument("--profile", action="store_true",
                    help="also record GPU kernel time per call (torch.profiler) next to the wall time")
    args = ap.parse_args(argv)

    from triton.testing import do_bench

    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    dev = torch.device("cuda")
    bw = copy_bandwidth(dev)
    rows = []
    shapes = SHAPES if args.shapes == "all" else [SHAPES[int(i)] for i in args.shapes.split(",")]
    from strandwise.kernels import selective_scan_triton as sst

    for batch, di, L in shapes:
        ins = make_inputs(batch, di, L, dev)
        leaves = {k: v.requires_grad_() for k, v in ins.items()}
        kw = dict(delta_softplus=True)

        def fwd():
            return selective_scan_triton(**leaves, **kw)

        out = fwd()
        dout = torch.randn_like(out)
        params = list(leaves.values())

        def fwd_bwd():
            o = selective_scan_triton(**leaves, **kw)
            return torch.autograd.grad(o, params, dout)

        t0 = time.time()
        fwd_bwd()  # autotunes the backward on first use
        torch.cuda.synchronize()
        tune_s = time.time() - t0
        with torch.no_grad():
            f_ms = do_bench(fwd, warmup=25, rep=200, return_mode="median")
        ft_ms = do_bench(fwd, warmup=25, rep=200, return_mode="median")  # graph built, states kept
        fb_ms = do_bench(fwd_bwd, warmup=25, rep=200, return_mode="median")
        row = dict(batch=batch, d_inner=di, L=L, d_state=D_STATE,
                   triton_fwd_ms=f_ms, triton_fwd_train_ms=ft_ms, triton_fwd_bwd_ms=fb_ms,
                   triton_bwd_ms=fb_ms - ft_ms,
                   floor_fwd_ms=floor_ms(batch, di, L, bw),
                   floor_bwd_ms=floor_ms(batch, di, L, bw, backward=True),
                   upstream_h200_fwd_ms=UPSTREAM_H200[(batch, di, L)][0],
                   upstream_h200_bwd_ms=UPSTREAM_H200[(batch, di, L)][1],
                   first_call_with_autotune_s=tune_s,
                   plan=dict(zip(("T", "n_chunks", "n_seg", "seg_chunks"),
                                 sst._plan(batch, di, L, dev))),
                   fwd_config=str(getattr(sst._fwd_kernel_tuned, "best_config", None)),
                   bwd_config=str(getattr(sst._bwd_kernel_tuned, "best_config", None)))
        # parity spot check of the timed configuration against the PyTorch reference
        with torch.no_grad():
            ref = chunked_reference(**{k: v.detach() for k, v in ins.items()})
            got = fwd()
            row["rel_err_vs_reference"] = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
        if not args.skip_reference:
            with torch.no_grad():
                row["torch_ref_fwd_ms"] = do_bench(
                    lambda: chunked_reference(**{k: v.detach() for k, v in ins.items()}),
                    warmup=5, rep=100, return_mode="median")
            if batch * di * L * D_STATE * 4 * 12 < 0.5 * torch.cuda.get_device_properties(dev).total_memory:
                ref_leaves = {k: v.detach().clone().requires_grad_() for k, v in ins.items()}
                rp = list(ref_leaves.values())

                def ref_fb():
                    o = chunked_reference(**ref_leaves)
                    return torch.autograd.grad(o, rp, dout)

                row["torch_ref_fwd_bwd_ms"] = do_bench(ref_fb, warmup=5, rep=100, return_mode="median")
                row["torch_ref_bwd_ms"] = row["torch_ref_fwd_bwd_ms"] - row["torch_ref_fwd_ms"]
        if args.profile:
            # host first: torch.profiler leaves Triton launch hooks behind that slow every launch
            host = host_profile(fwd_bwd)
            row["profile"] = kernel_profile(fwd, fwd_bwd)
            row["profile"]["host"] = host
            print(f"  {batch}x{di}x{L}: kernels fwd {row['profile']['fwd']['total_kernel_ms']} ms, "
                  f"fwd+bwd {row['profile']['fwd_bwd']['total_kernel_ms']} ms; host fwd+bwd "
                  f"{row['profile']['host']['host_ms_per_call']} ms per call")
        rows.append(row)
        del ins, leaves, out, dout, params
        torch.cuda.empty_cache()

    result = dict(
        gpu=torch.cuda.get_device_name(dev), torch=torch.__version__,
        triton=__import__("triton").__version__, copy_bandwidth_TBps=bw / 1e12,
        date=time.strftime("%Y-%m-%d"), rows=rows,
    )
    hdr = (f"{'batch':>5} {'d_inner':>7} {'L':>7} | {'fwd ms':>7} {'fwd tr':>7} {'bwd ms':>7} | "
           f"{'upstr fwd':>9} {'upstr bwd':>9} | {'floor fwd':>9} {'floor bwd':>9} | "
           f"{'torch fwd':>9} {'torch bwd':>9} | {'rel err':>8}")
    print(f"GPU: {result['gpu']}  copy bandwidth {bw / 1e12:.2f} TB/s")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        tf = r.get("torch_ref_fwd_ms", math.nan)
        tb = r.get("torch_ref_bwd_ms", math.nan)
        print(f"{r['batch']:>5} {r['d_inner']:>7} {r['L']:>7} | {r['triton_fwd_ms']:>7.3f} "
              f"{r['triton_fwd_train_ms']:>7.3f} {r['triton_bwd_ms']:>7.3f} | {r['upstream_h200_fwd_ms']:>9.3f} "
              f"{r['upstream_h200_bwd_ms']:>9.3f} | {r['floor_fwd_ms']:>9.3f} "
              f"{r['floor_bwd_ms']:>9.3f} | {tf:>9.2f} {tb:>9.2f} | {r['rel_err_vs_reference']:>8.1e}")
        print(f"      plan {r['plan']}  fwd {r['fwd_config']}  bwd {r['bwd_config']}")
    from strandwise.io.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
