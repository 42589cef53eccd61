"""Benchmark one Cheri Block: strandwise Triton paths vs plain PyTorch (eager, torch.compile).

Shape defaults to upstream's published one (N=512, L=1024, C=128, dilation 4). Rows:
inference (no grad), training forward (grad enabled), forward + backward, for fp32 with TF32
matmuls off (PyTorch's default), fp32 with TF32 on, and bf16 under ``torch.autocast``. Prints a
table with upstream 0.3.1's H200 figures (spec §8.2) and the floors (bytes moved / measured
device-to-device bandwidth; matmul FLOPs / measured matmul rate), and writes JSON.

Usage::

    python benchmarks/bench_cheri_block.py --out bench_block.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch
import torch.nn.functional as F

from strandwise.io.atomic import atomic_write_text

# upstream 0.3.1, one H200, ms (spec §8.2)
UPSTREAM = {
    ("fp32", "inference"): 0.421, ("fp32", "train_fwd"): 1.287, ("fp32", "fwd_bwd"): 3.826,
    ("bf16", "inference"): 0.327, ("bf16", "train_fwd"): 0.684, ("bf16", "fwd_bwd"): 3.132,
}
TARGET_H200 = {("bf16", "inference"): 0.20, ("fp32", "inference"): 0.30,
               ("bf16", "fwd_bwd"): 1.6, ("fp32", "fwd_bwd"): 3.5}


def plain_block(x, cw, w1, w2, d, s=0.15, eps=1e-3):
    """The block in standard PyTorch ops (what a user would write without custom kernels)."""
    C = x.shape[-1]
    y = F.conv1d(x.transpose(1, 2), cw.t().unsqueeze(1).to(x.dtype), padding=d, dilation=d, groups=C)
    y = y.float()
    mean = y.mean(dim=(1, 2), keepdim=True)
    var = y.var(dim=(1, 2), unbiased=False, keepdim=True)
    h = ((y - mean) * torch.rsqrt(var + eps)).to(x.dtype).transpose(1, 2)
    h = F.linear(F.gelu(F.linear(h, w1), approximate="tanh"), w2)
    return x + s * h


def seeded_block_weights(C: int, device: str = "cuda"):
    """``(conv taps (3, C), W1 (2C, C), W2 (C, 2C))`` of the inference benchmarks, drawn right
    after ``torch.manual_seed(0)`` (projections with std 0.02), so every script times the same
    block."""
    H = 2 * C
    torch.manual_seed(0)
    cw = torch.randn(3, C, device=device)
    w1 = torch.randn(H, C, device=device) * 0.02
    w2 = torch.randn(C, H, device=device) * 0.02
    return cw, w1, w2


def _fused_fp32_on() -> bool:
    from strandwise.kernels.cheri_train import _FP32

    return bool(_FP32["on"])


def bench(fn, rep=200):
    import triton

    return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")


def measure_ceilings():
    n = 256 * 1024 * 1024  # 1 GiB fp32
    a = torch.empty(n, device="cuda")
    b = torch.empty_like(a)
    a.normal_()
    t = bench(lambda: b.copy_(a))
    bw = 2 * a.numel() * 4 / (t * 1e-3)
    del a, b
    res = {"d2d_bytes_per_s": bw}
    m = 8192
    for name, dt, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
        A = torch.randn(m, m, device="cuda", dtype=dt)
        B = torch.randn(m, m, device="cuda", dtype=dt)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        t = bench(lambda: A @ B, rep=100)
        torch.backends.cuda.matmul.allow_tf32 = prev
        res[f"matmul_{name}_flop_per_s"] = 2 * m**3 / (t * 1e-3)
        del A, B
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=512)
    ap.add_argument("--L", type=int, default=1024)
    ap.add_argument("--C", type=int, default=128)
    ap.add_argument("--dilation", type=int, default=4)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--dtypes", default="fp32,fp32+tf32,bf16",
                    help="rows to run, comma-separated (fp32, fp32+tf32, bf16)")
    ap.add_argument("--out", default="bench_cheri_block.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_cheri_block needs a CUDA GPU")

    from strandwise.kernels import conv_norm_triton as cnt
    from strandwise.kernels.cheri_infer import cheri_block_inference, inference_mlp_pass
    from strandwise.kernels.cheri_train import cheri_block_train
    from strandwise.kernels.conv_norm import fused_dilated_conv_norm

    N, L, C, d = args.N, args.L, args.C, args.dilation
    H = 2 * C
    torch.manual_seed(0)
    ceil = measure_ceilings()
    dev = "cuda"
    cw = torch.randn(3, C, device=dev, requires_grad=True)
    w1 = (torch.randn(H, C, device=dev) * 0.02).requires_grad_(True)
    w2 = (torch.randn(C, H, device=dev) * 0.02).requires_grad_(True)
    params = [cw, w1, w2]

    def ours(x):  # CheriBlock.forward's CUDA training path (residual scale folded into W2)
        h = fused_dilated_conv_norm(x, cw, d)
        h = F.gelu(F.linear(h, w1), approximate="tanh")
        return torch.add(x, F.linear(h, w2 * 0.15))

    compiled_plain = None if args.no_compile else torch.compile(plain_block)
    rows = []
    errors = []
    elems = N * L * C
    mm_flops = 2 * N * L * C * H * 2  # two projections, forward

    wanted = set(args.dtypes.split(","))
    for label, dt, tf32 in (("fp32", torch.float32, False), ("fp32+tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
        if label not in wanted:
            continue
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=(dt == torch.bfloat16))
        x = torch.randn(N, L, C, device=dev).to(dt)
        g = torch.randn(N, L, C, device=dev).to(dt)
        xg = x.clone().requires_grad_(True)
        esize = x.element_size()
        rate = ceil["matmul_bf16_flop_per_s"] if dt == torch.bfloat16 else (
            ceil["matmul_tf32_flop_per_s"] if tf32 else ceil["matmul_fp32_flop_per_s"])
        floors = {
            "inference": (3 * elems * esize, mm_flops),
            "train_fwd": (3 * elems * esize, mm_flops),
            "fwd_bwd": (8 * elems * esize, 3 * mm_flops),
        }
        impls = {"plain_eager": lambda x: plain_block(x, cw, w1, w2, d)}
        if compiled_plain is not None:
            impls["plain_compile"] = lambda x: compiled_plain(x, cw, w1, w2, d)
        impls["strandwise"] = ours
        # the fused training block: bf16/fp16 activations, and fp32 where STRANDWISE_FUSED_FP32 is on
        if dt == torch.bfloat16 or (dt == torch.float32 and _fused_fp32_on()):
            impls["strandwise_fused"] = lambda x: cheri_block_train(x, cw, w1, w2, d)
        for impl, fn in impls.items():
            try:
                with autocast:
                    with torch.no_grad():
                        if impl == "strandwise_fused":
                            pass  # inference is the megakernel, timed in the "strandwise" rows
                        elif impl == "strandwise":
                            modes = {"tf32": "tf32", "bf16dot": "bf16"} if dt == torch.float32 else {"": "tf32"}
                            for tag, mode in modes.items():
                                def inf(mode=mode):
                                    return cheri_block_inference(x, cw, w1, w2, d, fp32_dot=mode)
                                inf()
                                name = impl + ("_megakernel" + (f"[{tag}]" if tag else ""))
                                # which MLP pass the default dispatch took (Gluon: bf16/fp16 on sm_90)
                                mlp = inference_mlp_pass(x, w1.shape[0], mode)
                                rows.append(dict(dtype=label, case="inference", impl=name, ms=bench(inf), mlp_pass=mlp))
                        else:
                            fn(x)
                            rows.append(dict(dtype=label, case="inference", impl=impl, ms=bench(lambda: fn(x))))
                        if impl == "strandwise":  # the unfused training path under no-grad
                            rows.append(dict(dtype=label, case="inference", impl="strandwise_trainpath",
                                             ms=bench(lambda: fn(x))))
                    fn(xg)
                    rows.append(dict(dtype=label, case="train_fwd", impl=impl, ms=bench(lambda: fn(xg))))

                    def fb():
                        out = fn(xg)
                        return torch.autograd.grad(out, [xg] + params, g)

                    fb()
                    rows.append(dict(dtype=label, case="fwd_bwd", impl=impl, ms=bench(fb)))
            except Exception as exc:  # e.g. torch.compile failing: record it and go on
                print(f"{label} {impl} failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                errors.append(dict(dtype=label, impl=impl, error=f"{type(exc).__name__}: {str(exc)[:2000]}"))
        for r in rows:
            if r["dtype"] == label and "floor_ms" not in r:
                nbytes, flops = floors[r["case"]]
                mem_ms = nbytes / ceil["d2d_bytes_per_s"] * 1e3
                # megakernel with bf16 operands uses the bf16 rate; tf32 dots the tf32 rate
                r_rate = rate
                if "megakernel" in r["impl"] and dt == torch.float32:
                    r_rate = ceil["matmul_bf16_flop_per_s"] if "bf16dot" in r["impl"] else ceil["matmul_tf32_flop_per_s"]
                flop_ms = flops / r_rate * 1e3
                r.update(mem_floor_ms=mem_ms, flop_floor_ms=flop_ms, floor_ms=max(mem_ms, flop_ms))
                base = label.split("+")[0]
                if "+" not in label:
                    r["upstream_h200_ms"] = UPSTREAM.get((base, r["case"]))
                    r["target_h200_ms"] = TARGET_H200.get((base, r["case"])) if r["impl"].startswith("strandwise") else None
        del x, g, xg
        torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True

    # backward plan comparison: recompute-δ (default: comb main pass; per-tile main pass) vs fp32 scratch
    x = torch.randn(N, L, C, device=dev)
    g = torch.randn(N, L, C, device=dev)
    _, mean, rstd = cnt.conv_norm_fwd(x, cw.detach(), d, 1e-3)
    plans = {
        "recompute": lambda: cnt.conv_norm_bwd(g, x, cw.detach(), mean, rstd, d),
        "recompute_tile": lambda: cnt.conv_norm_bwd_tile(g, x, cw.detach(), mean, rstd, d),
        "scratch": lambda: cnt.conv_norm_bwd_scratch(g, x, cw.detach(), mean, rstd, d),
        "fwd_only": lambda: cnt.conv_norm_fwd(x, cw.detach(), d, 1e-3),
    }
    plan_ms = {}
    for k, f in plans.items():
        f()
        plan_ms[k] = bench(f)

    from strandwise.kernels import _host, cheri_infer_triton, cheri_train_triton

    chosen = {}
    # megakernel: one entry per SAVE (0 inference, 1 training forward); mlp_bwd: the fused backward
    for kname, kern in (("megakernel", cheri_infer_triton.mlp_kernel_tuned),
                        ("mlp_bwd", cheri_train_triton.mlp_bwd_kernel_tuned), ("fwd_stats", cnt._fwd_stats_tuned),
                        ("fwd_norm", cnt._fwd_norm_tuned), ("bwd_stats", cnt._bwd_stats_tuned),
                        ("bwd_main", cnt._bwd_main_tuned), ("bwd_comb", cnt._bwd_comb_tuned)):
        chosen[kname] = {str(k): str(v) for k, v in kern.cache.items()}
    print("autotuned configs:", json.dumps(chosen, indent=1))
    gpu = torch.cuda.get_device_name()
    print(f"\nCheri block N={N} L={L} C={C} d={d} on {gpu}; D2D {ceil['d2d_bytes_per_s'] / 1e12:.2f} TB/s, "
          f"matmul fp32 {ceil['matmul_fp32_flop_per_s'] / 1e12:.0f} / tf32 {ceil['matmul_tf32_flop_per_s'] / 1e12:.0f} "
          f"/ bf16 {ceil['matmul_bf16_flop_per_s'] / 1e12:.0f} TFLOP/s")
    hdr = f"{'dtype':10} {'case':10} {'impl':30} {'ms':>8} {'floor':>7} {'(mem/flop)':>14} {'upstr':>7} {'target':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        up = "" if r.get("upstream_h200_ms") is None else f"{r['upstream_h200_ms']:.3f}"
        tg = "" if r.get("target_h200_ms") is None else f"{r['target_h200_ms']:.2f}"
        print(f"{r['dtype']:10} {r['case']:10} {r['impl']:30} {r['ms']:8.3f} {r['floor_ms']:7.3f} "
              f"{r['mem_floor_ms']:6.3f}/{r['flop_floor_ms']:6.3f} {up:>7} {tg:>7}")
    print("conv-norm fp32 backward plans (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in plan_ms.items()))
    result = {
        "gpu": gpu, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
        "shape": dict(N=N, L=L, C=C, dilation=d), "ceilings": ceil, "rows": rows,
        "conv_norm_bwd_plans_fp32_ms": plan_ms, "errors": errors, "autotuned_configs": chosen,
        "fused_fp32": os.environ.get("STRANDWISE_FUSED_FP32", "0"),
        "capped_configs": str(int(_host.CAPPED_CONFIGS)),
    }
    import triton

    result["triton"] = triton.__version__
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
