"""Sweep the inference megakernel's MLP-kernel configs one by one (no autotuner) and time the
stats prepass alone, at one block shape; prints a sorted table and writes JSON.

Used to choose the autotuner's search space (``cheri_infer_triton.prune``) from measurements.
``--space full`` (default) sweeps ``prune_full`` of the whole space, ``--space tuned`` only what
the autotuner tries (``prune``). The register-capped configs are in the space unless
``STRANDWISE_CAPPED_CONFIGS=0``; ``--even`` also times each config with ``EVEN=1`` (no tile
masks) where the shape allows it. ``--gelu-ab`` also times each run with the GELU(tanh) as
written before 2026-12-07 (``0.5·z·(1 + tanh(√(2/π)·z·(1 + 0.044715·z²)))``, seven ALU
instructions per element against five), alternating the two kernels in one process. Every run is
checked against the fp32 reference block.

Usage::

    python benchmarks/sweep_cheri_infer.py --out sweep.json [--N 512 --L 1024 --C 128 --dilation 4]
        [--space tuned] [--even] [--stages 2,3,4] [--twins] [--gelu-ab]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import types

import torch

from strandwise.io.atomic import atomic_write_text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--dilation", type=int, default=4)
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--rep", type=int, default=60)
    ap.add_argument("--stages", default="2,3", help="num_stages values to sweep")
    ap.add_argument("--space", choices=("full", "tuned"), default="full")
    ap.add_argument("--even", action="store_true", help="also run each config with EVEN=1")
    ap.add_argument("--twins", action="store_true",
                    help="also time each register-capped config without its cap (what the cap alone buys)")
    ap.add_argument("--gelu-ab", action="store_true",
                    help="also time each run with the earlier GELU form (A/B, alternating)")
    ap.add_argument("--out", default="sweep_cheri_infer.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    import triton

    from strandwise.kernels import cheri_infer as ci
    from strandwise.kernels import cheri_infer_triton as k
    from strandwise.kernels import conv_norm_triton as cnt

    from bench_cheri_block import seeded_block_weights

    N, L, C, d = args.N, args.L, args.C, args.dilation
    H = 2 * C
    cw, w1, w2 = seeded_block_weights(C)
    bc = max(16, triton.next_power_of_2(C))
    NL = N * L
    results = {"gpu": torch.cuda.get_device_name(), "shape": dict(N=N, L=L, C=C, dilation=d), "rows": []}

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=10, rep=args.rep, return_mode="median")

    for tag in args.dtypes.split(","):
        dt = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[tag]
        x = torch.randn(N, L, C, device="cuda").to(dt)
        with torch.no_grad():
            ref = ci.cheri_block_reference(x.float(), cw, w1, w2, d).to(dt)
            mean, rstd = cnt.conv_norm_stats(x, cw, d, 1e-3)
            t_stats = bench(lambda: cnt.conv_norm_stats(x, cw, d, 1e-3))
            t_full = bench(lambda: ci.cheri_block_inference(x, cw, w1, w2, d))
        wdt = torch.bfloat16 if dt == torch.float32 else dt
        w1t, w2t = ci._derived_weights(w1, w2, 0.15, wdt)
        out = torch.empty_like(x)
        stages = {int(v) for v in args.stages.split(",")}
        space = k.prune_full if args.space == "full" else k.prune
        cfgs = [c for c in space(k.configs(), {"H": H}, BLOCK_C=bc) if c.num_stages in stages]
        if args.twins:
            cfgs += [triton.Config(dict(c.kwargs), num_warps=c.num_warps, num_stages=c.num_stages)
                     for c in cfgs if c.maxnreg]
        evens = (0, 1) if args.even and ci.full_tiles(NL, C) else (0,)
        runs = [(c, e) for c in cfgs for e in evens]
        # compile every config first, in threads (Triton's compiler releases the GIL in its
        # native passes), so the sweep is not dominated by one-by-one compilation
        from concurrent.futures import ThreadPoolExecutor

        def launch_opts(cfg, even):
            # the kernel's arguments after the pointers; xn/z/h are not written with SAVE=0
            opts = dict(BLOCK_C=bc, DOT=0, PRECISION="ieee", FAST_GELU=True, SAVE=0, EVEN=even,
                        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **cfg.kwargs)
            if cfg.maxnreg:
                opts["maxnreg"] = cfg.maxnreg
            return opts

        tensors = (x, cw, w1t, w2t, mean, rstd, out, out, out, out, NL, L, C, H, d)
        kernels = {"new": k.mlp_kernel}
        if args.gelu_ab:
            kernels["old"] = _kernel_with_old_gelu(k)

        def warm(run_spec):
            for kern in kernels.values():
                try:
                    kern.warmup(*tensors, grid=(1,), **launch_opts(*run_spec))
                except Exception:  # compiled (or reported) again at the first launch below
                    pass

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(warm, runs))
        print(f"[{tag}] stats prepass {t_stats:.4f} ms; full call (current default) {t_full:.4f} ms; "
              f"{len(runs)} MLP runs", flush=True)
        rows = []
        for cfg, even in runs:
            meta = dict(cfg.kwargs, maxnreg=cfg.maxnreg, EVEN=even)

            def run(cfg=cfg, even=even, kern=k.mlp_kernel):
                kern[(triton.cdiv(NL, cfg.kwargs["BLOCK_M"]),)](*tensors, **launch_opts(cfg, even))

            base = dict(dtype=tag, **meta, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
            try:
                row = dict(base)
                for name, kern in kernels.items():
                    run(kern=kern)
                    row["max_abs_vs_fp32_reference" + ("" if name == "new" else "_old_gelu")] = (
                        out.float() - ref.float()).abs().max().item()
                if args.gelu_ab:  # alternate, three times each; the medians
                    times = {name: [] for name in kernels}
                    for _ in range(3):
                        for name, kern in kernels.items():
                            times[name].append(bench(lambda kern=kern: run(kern=kern)))
                    row["ms"] = statistics.median(times["new"])
                    row["ms_old_gelu"] = statistics.median(times["old"])
                else:
                    row["ms"] = bench(run)
            except Exception as exc:  # a config that fails to compile is a result too
                rows.append(dict(base, error=f"{type(exc).__name__}: {str(exc)[:300]}"))
                continue
            rows.append(row)
        rows_ok = sorted([r for r in rows if "ms" in r], key=lambda r: r["ms"])
        for r in rows_ok[:16]:
            print(f"  {r['ms']:.4f} ms  BM={r['BLOCK_M']} BH={r['BLOCK_H']} RR={r['RELOAD_RES']} "
                  f"w={r['num_warps']} s={r['num_stages']} maxnreg={r['maxnreg']} EVEN={r['EVEN']} "
                  f"err={r['max_abs_vs_fp32_reference']:.2e}"
                  + (f"  old GELU {r['ms_old_gelu']:.4f} ms" if "ms_old_gelu" in r else ""), flush=True)
        for r in rows:
            if "error" in r:
                print("  failed:", r, flush=True)
        results["rows"] += rows
        results[f"{tag}_stats_ms"] = t_stats
        results[f"{tag}_full_default_ms"] = t_full
        del x, out
        # written after each dtype, so a run cut short by a time limit keeps what it measured
        atomic_write_text(args.out, json.dumps(results, indent=1))


def _kernel_with_old_gelu(k):
    """A copy of ``k.mlp_kernel`` whose fast ``gelu_tanh`` is the form used up to 2026-12-07 (the
    exact form is unchanged and shared)."""
    import triton
    import triton.language as tl

    from strandwise.kernels._triton_ops import gelu_tanh

    @triton.jit
    def gelu_tanh_old(z, FAST: tl.constexpr):
        if FAST:
            u = 0.7978845608028654 * z * (1.0 + 0.044715 * z * z)
            th = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [u], dtype=tl.float32,
                                           is_pure=True, pack=1)
            g = 0.5 * z * (1.0 + th)
        else:
            g = gelu_tanh(z, FAST)
        return g

    fn = k.mlp_kernel.fn
    glb = dict(fn.__globals__, gelu_tanh=gelu_tanh_old)
    copy = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__module__, copy.__qualname__ = fn.__module__, fn.__qualname__ + "_old_gelu"
    return triton.jit(copy)


if __name__ == "__main__":
    main()
