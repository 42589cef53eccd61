"""Benchmark the whole Cherimoya model: training step and inference throughput (sequences/s).

GPU (default): ``preset="upstream"`` (128 filters, 9 blocks, k=75 head), one training step on
64 × 2114 bp with Muon (block ``linear1``/``linear2`` weights) + AdamW (everything else), fp32
(TF32 off) and bf16 autocast, eager and ``torch.compile``; peak GPU memory of the step; inference at
batch 512 (eager, CUDA graph replay, ``torch.compile``), fp32 and bf16. A plain-PyTorch baseline
(same model with the Triton kernels switched off, i.e. the CPU reference ops run on the GPU) is
measured beside. Upstream 0.3.1's H200 figures (spec §8.2) are printed for comparison.

CPU (``--cpu``): the default (description) model on this machine's cores, small batch.

Usage::

    python benchmarks/bench_cherimoya_model.py --out bench_model.json [--profile prof.txt]
    python benchmarks/bench_cherimoya_model.py --cpu --out bench_model_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from strandwise.models.cherimoya import Cherimoya

UPSTREAM = {  # seq/s on one H200 (spec §8.2)
    ("train", "fp32", "eager"): 4330, ("train", "fp32", "compile"): 5230,
    ("infer", "fp32", "eager"): 29338, ("infer", "bf16", "eager"): 42136,
}
TARGET = {("train", "bf16"): 10000, ("train", "fp32"): 5500, ("infer", "bf16"): 90000, ("infer", "fp32"): 45000}


MUON_IMPL = {"name": "batched"}  # set from --muon


def _muon_cls(impl=None):
    impl = impl or MUON_IMPL["name"]
    if impl == "torch":
        return torch.optim.Muon
    from strandwise.train.muon import BatchedMuon

    return BatchedMuon


def make_optimizers(model, impl=None, capturable=False):
    """Muon on block MLP matrices, AdamW (fused on CUDA) on the rest (spec §4.1 description routing).

    ``impl``: ``"batched"`` (:class:`strandwise.train.muon.BatchedMuon`) or ``"torch"``.
    """
    muon, adam = [], []
    for name, p in model.named_parameters():
        (muon if name.startswith("blocks.") and name.endswith(("linear1.weight", "linear2.weight")) else adam).append(p)
    cuda = next(model.parameters()).is_cuda
    extra = {"capturable": True} if capturable else {}
    opts = [torch.optim.AdamW(adam, lr=1e-3, weight_decay=0.0, fused=cuda, **extra)]
    opts.append(_muon_cls(impl)(muon, lr=0.025, weight_decay=0.03))
    return opts


def loss_fn(y_profile, y_counts, counts):
    """Multinomial profile NLL (without the count-only constant) + log1p count MSE."""
    logp = F.log_softmax(y_profile.float().flatten(1), dim=-1)
    prof = -(counts.flatten(1) * logp).sum(-1).mean()
    cnt = (y_counts.float().squeeze(-1) - torch.log1p(counts.sum(dim=(1, 2)))).pow(2).mean()
    return prof + cnt


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(fn, device, iters, warmup):
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / iters


def train_case(model, X, counts, dtype, device, iters, warmup, impl=None):
    opts = make_optimizers(model, impl)
    ac = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def step():
        with ac:
            yp, yc = model(X)
        loss = loss_fn(yp, yc, counts)
        loss.backward()
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time_loop(step, device, iters, warmup)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return t, peak


def train_parts(model, X, counts, dtype, device, iters, warmup):
    """Split the step: forward+backward alone, and the two optimizer steps alone (ms each)."""
    opts = make_optimizers(model)
    ac = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def fb():
        for o in opts:
            o.zero_grad(set_to_none=True)
        with ac:
            yp, yc = model(X)
        loss_fn(yp, yc, counts).backward()

    t_fb = time_loop(fb, device, iters, warmup)
    t_opt = {}
    for o in opts:
        t_opt[type(o).__name__] = time_loop(o.step, device, iters, warmup)
    return t_fb, t_opt


def train_graph_case(model, X, counts, dtype, device, iters, warmup):
    """Whole training step (forward, backward, Muon + AdamW) captured once in a CUDA graph.

    The learning rates are baked into the graph (Muon reads them as Python floats), so
    this is the throughput of steps between learning-rate changes, not a drop-in training loop.
    """
    opts = make_optimizers(model, capturable=True)
    # autocast's weight-cast cache must be off under graph capture
    ac = (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False) if dtype == "bf16"
          else nullcontext())

    def step():
        with ac:
            yp, yc = model(X)
        loss_fn(yp, yc, counts).backward()
        for o in opts:
            o.step()

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            for o in opts:
                o.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(s)
    for o in opts:
        o.zero_grad(set_to_none=True)
    g = torch.cuda.CUDAGraph()
    torch.cuda.reset_peak_memory_stats()
    with torch.cuda.graph(g):
        step()
    t = time_loop(g.replay, device, iters, warmup)
    return t, torch.cuda.max_memory_allocated()


def infer_case(model, X, dtype, device, iters, warmup, graph=False):
    ac = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def fwd():
        with torch.no_grad(), ac:
            return model(X)

    if not graph:
        return time_loop(fwd, device, iters, warmup)
    for _ in range(3):  # autotune + caches before capture
        fwd()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fwd()
        with torch.cuda.graph(g):
            fwd()
    torch.cuda.current_stream().wait_stream(s)
    return time_loop(g.replay, device, iters, warmup)


class _PlainKernels:
    """Context manager: route the blocks through the pure-PyTorch ops even on CUDA."""

    def __enter__(self):
        from strandwise.kernels import conv_norm

        self.mod = conv_norm
        self.prev = conv_norm.triton_available
        conv_norm.triton_available = lambda: False
        import strandwise.kernels.cheri_infer as ci

        self.ci, self.prev_ci = ci, ci.triton_available
        ci.triton_available = lambda: False
        return self

    def __exit__(self, *exc):
        self.mod.triton_available = self.prev
        self.ci.triton_available = self.prev_ci


def run_gpu(args):
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    gen = torch.Generator().manual_seed(0)
    L = 2114

    def onehot(n):
        idx = torch.randint(0, 4, (n, L), generator=gen)
        return F.one_hot(idx, 4).transpose(1, 2).float().to(device)

    Xt = onehot(args.train_batch)
    counts = torch.poisson(torch.full((args.train_batch, 1, 1000), 0.5), generator=gen).to(device)
    Xi = onehot(args.infer_batch)
    errors = []
    muon_tag = "" if MUON_IMPL["name"] == "batched" else "+torchMuon"
    dtypes = args.dtypes.split(",")

    def set_tf32(on):
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on

    for mode in args.modes.split(","):
        compile_ = mode == "compile"
        for dtype in dtypes:
            tf32 = dtype == "fp32+tf32"
            base = dtype.split("+")[0]
            set_tf32(tf32)

            def new_model(**kw):
                m = Cherimoya(preset="upstream", random_state=0, **kw).to(device)
                # bf16 training runs the fused block (the default); "+unfused" measures the
                # conv-norm Function + cuBLAS path it replaced ("+fused" is bf16 itself, kept
                # for older command lines)
                m.set_fused_training(not dtype.endswith("+unfused"))
                return m

            model = new_model(compile=compile_, compile_mode="default")
            if dtype == "fp32+ieee":  # exact fp32 products in inference too (default: bf16 operands)
                model.set_inference_fp32_dot("ieee")
            try:
                if not args.infer_only:
                    t, peak = train_case(model, Xt, counts, base, device, args.iters, args.compile_warmup if compile_ else 2)
                    rows.append(dict(case="train", dtype=dtype, impl=f"strandwise_{mode}{muon_tag}", ms=t * 1e3,
                                     seq_per_s=args.train_batch / t, peak_mem_gib=peak / 2**30))
                    if args.muon_compare and not compile_:
                        t, _ = train_case(model, Xt, counts, base, device, args.iters, 2,
                                          impl="torch" if MUON_IMPL["name"] == "batched" else "batched")
                        other = "+torchMuon" if MUON_IMPL["name"] == "batched" else ""
                        rows.append(dict(case="train", dtype=dtype, impl=f"strandwise_{mode}{other}", ms=t * 1e3,
                                         seq_per_s=args.train_batch / t))
                if not args.train_only:
                    model.eval()
                    t = infer_case(model, Xi, base, device, args.iters, 2)
                    rows.append(dict(case="infer", dtype=dtype, impl=f"strandwise_{mode}", ms=t * 1e3,
                                     seq_per_s=args.infer_batch / t))
            except Exception as exc:  # a compile failure is a result too: record it, go on
                print(f"{mode} {dtype} failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                errors.append(dict(mode=mode, dtype=dtype, error=f"{type(exc).__name__}: {str(exc)[:2000]}"))
                del model
                torch.cuda.empty_cache()
                continue
            if not compile_:
                if not args.train_only and not args.no_graph:
                    t = infer_case(model, Xi, base, device, args.iters, 2, graph=True)
                    rows.append(dict(case="infer", dtype=dtype, impl="strandwise_cudagraph", ms=t * 1e3,
                                     seq_per_s=args.infer_batch / t))
                if not args.infer_only:
                    model.train()
                    t_fb, t_opt = train_parts(model, Xt, counts, base, device, args.iters, 2)
                    rows.append(dict(case="fwd+bwd", dtype=dtype, impl="strandwise_eager", ms=t_fb * 1e3,
                                     seq_per_s=args.train_batch / t_fb))
                    for name, t in t_opt.items():
                        rows.append(dict(case=f"{name}.step", dtype=dtype, impl="torch", ms=t * 1e3,
                                         seq_per_s=float("nan")))
                if not args.infer_only and not args.no_graph:
                    try:
                        model = new_model()
                        t, peak = train_graph_case(model, Xt, counts, base, device, args.iters, 2)
                        rows.append(dict(case="train", dtype=dtype, impl=f"strandwise_graph_step{muon_tag}",
                                         ms=t * 1e3, seq_per_s=args.train_batch / t, peak_mem_gib=peak / 2**30))
                    except Exception as exc:
                        print(f"graph-captured step {dtype} failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                        errors.append(dict(mode="graph_step", dtype=dtype, error=f"{type(exc).__name__}: {str(exc)[:2000]}"))
            del model
            torch.cuda.empty_cache()
    set_tf32(False)
    if not args.no_plain:
        with _PlainKernels():
            for dtype in ("fp32", "bf16"):
                model = Cherimoya(preset="upstream", random_state=0).to(device)
                t, peak = train_case(model, Xt, counts, dtype, device, max(3, args.iters // 3), 1)
                rows.append(dict(case="train", dtype=dtype, impl="plain_eager", ms=t * 1e3,
                                 seq_per_s=args.train_batch / t, peak_mem_gib=peak / 2**30))
                model.eval()
                t = infer_case(model, Xi, dtype, device, max(3, args.iters // 3), 1)
                rows.append(dict(case="infer", dtype=dtype, impl="plain_eager", ms=t * 1e3,
                                 seq_per_s=args.infer_batch / t))
                del model
                torch.cuda.empty_cache()

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        model = Cherimoya(preset="upstream", random_state=0).to(device)
        lines = []
        for dtype in ("bf16", "fp32"):
            opts_case = lambda: train_case(model, Xt, counts, dtype, device, 1, 0)  # noqa: E731
            opts_case()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                opts_case()
            lines.append(f"== training step {dtype} eager, batch {args.train_batch} ==")
            lines.append(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
            model.eval()
            infer_case(model, Xi, dtype, device, 1, 1)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                infer_case(model, Xi, dtype, device, 1, 0)
            lines.append(f"== inference {dtype} eager, batch {args.infer_batch} ==")
            lines.append(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))
            model.train()
        with open(args.profile, "w") as fh:
            fh.write("\n".join(lines))
    for r in rows:
        mode = "compile" if "compile" in r["impl"] else "eager"
        if r["impl"].startswith("strandwise"):
            r["target_h200_seq_per_s"] = TARGET.get((r["case"], r["dtype"]))
        r["upstream_h200_seq_per_s"] = UPSTREAM.get((r["case"], r["dtype"], mode)) if r["impl"].startswith("strandwise") else None
    for e in errors:
        rows.append(dict(case="error", dtype=e["dtype"], impl=e["mode"], ms=float("nan"), seq_per_s=float("nan"), error=e["error"]))
    return rows, torch.cuda.get_device_name()


def run_cpu(args):
    device = torch.device("cpu")
    rows = []
    gen = torch.Generator().manual_seed(0)
    L = 2114
    model = Cherimoya(random_state=0)  # description preset (96 filters, 1x1 head)
    idx = torch.randint(0, 4, (args.cpu_batch, L), generator=gen)
    X = F.one_hot(idx, 4).transpose(1, 2).float()
    counts = torch.poisson(torch.full((args.cpu_batch, 1, 1000), 0.5), generator=gen)
    t, _ = train_case(model, X, counts, "fp32", device, args.cpu_iters, 1)
    rows.append(dict(case="train", dtype="fp32", impl="cpu_reference", ms=t * 1e3, seq_per_s=args.cpu_batch / t))
    model.eval()
    t = infer_case(model, X, "fp32", device, args.cpu_iters, 1)
    rows.append(dict(case="infer", dtype="fp32", impl="cpu_reference", ms=t * 1e3, seq_per_s=args.cpu_batch / t))
    return rows, f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="measure the CPU path (description preset)")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--infer-batch", type=int, default=512)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--cpu-batch", type=int, default=8)
    ap.add_argument("--cpu-iters", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="same as --modes eager")
    ap.add_argument("--modes", default="eager,compile", help="comma list of eager,compile")
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16,fp32+tf32,fp32+ieee,bf16+unfused "
                    "(fp32+ieee: inference with exact fp32 products instead of bf16 operands; "
                    "bf16+unfused: training without the fused block)")
    ap.add_argument("--muon", choices=("batched", "torch"), default="batched",
                    help="Muon implementation of the training step")
    ap.add_argument("--muon-compare", action="store_true",
                    help="also time the eager step with the other Muon implementation")
    ap.add_argument("--compile-warmup", type=int, default=3, help="untimed steps before timing compiled rows")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--infer-only", action="store_true")
    ap.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph rows")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-PyTorch baseline")
    ap.add_argument("--profile", default=None, help="write a torch.profiler table to this file")
    ap.add_argument("--out", default="bench_cherimoya_model.json")
    args = ap.parse_args(argv)
    MUON_IMPL["name"] = args.muon
    if args.no_compile:
        args.modes = "eager"
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: use --cpu")
    rows, device_name = run_cpu(args) if args.cpu else run_gpu(args)
    print(f"\nCherimoya whole model on {device_name}")
    hdr = f"{'case':6} {'dtype':5} {'impl':22} {'ms':>9} {'seq/s':>9} {'peak GiB':>8} {'upstr':>7} {'target':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        pk = "" if r.get("peak_mem_gib") is None else f"{r['peak_mem_gib']:.2f}"
        up = "" if r.get("upstream_h200_seq_per_s") is None else str(r["upstream_h200_seq_per_s"])
        tg = "" if r.get("target_h200_seq_per_s") is None else str(r["target_h200_seq_per_s"])
        print(f"{r['case']:6} {r['dtype']:5} {r['impl']:22} {r['ms']:9.2f} {r['seq_per_s']:9.0f} {pk:>8} {up:>7} {tg:>7}")
    result = {"device": device_name, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "rows": rows, "args": vars(args)}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, args.out)
    return result


if __name__ == "__main__":
    main()
