"""Caduceus-PS 131k (d_model 256, 16 layers) throughput and memory, GPU or CPU.

    python benchmarks/bench_caduceus_model.py [--out results.json]          # GPU: 131,072 bp
    python benchmarks/bench_caduceus_model.py --ckpt-blocks all,10,8 --conv-compare --profile prof.txt
    python benchmarks/bench_caduceus_model.py --ckpt-blocks all,8 --fast-path on,off
    python benchmarks/bench_caduceus_model.py --cpu --length 1024 --batch 8  # this CPU

Training step = forward + masked-LM loss + backward + AdamW step, bf16 autocast on GPU (fp32 on
CPU), with per-block activation checkpointing of every block ("all"), of the first k blocks only
(``--ckpt-blocks``: ``gradient_checkpointing_blocks = k``), and without; inference = no-grad
forward. ``--fast-path on,off`` runs every case with and without ``Mamba.use_fast_path`` (the fused
inner function that recomputes the conv and projections in backward). ``--conv-compare`` also times the all-blocks step with PyTorch's depthwise conv in place
of the Triton causal-conv kernel; ``--profile`` writes the CUDA-kernel table of one step. Prints a
table and writes JSON.
"""

import argparse
import json
import time

import torch

from strandwise.models.caduceus import CaduceusForMaskedLM, published_config
from strandwise.io.atomic import atomic_write_text


def set_checkpointing(model, on: bool, blocks=None):
    for m in model.modules():
        if hasattr(m, "gradient_checkpointing"):
            m.gradient_checkpointing = on
            m.gradient_checkpointing_blocks = blocks


def set_fast_path(model, on: bool):
    """``Mamba.use_fast_path``: the fused inner function (recompute in backward) on CUDA."""
    from strandwise.models.mamba import Mamba

    for m in model.modules():
        if isinstance(m, Mamba):
            m.use_fast_path = on


class torch_conv:
    """Context: PyTorch's depthwise conv instead of the Triton causal-conv kernel."""

    def __enter__(self):
        from strandwise.kernels import causal_conv

        self.mod, self.prev = causal_conv, causal_conv.triton_available
        causal_conv.triton_available = lambda: False

    def __exit__(self, *exc):
        self.mod.triton_available = self.prev


def timed(fn, iters, cuda):
    fn()  # warm-up (autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--ckpt-blocks", default="all",
                    help="comma list of 'all' or k (checkpoint the first k of 16 blocks)")
    ap.add_argument("--no-ckpt-off", action="store_true", help="skip the (OOM at 4 x 131k) no-checkpointing row")
    ap.add_argument("--conv-compare", action="store_true")
    ap.add_argument("--fast-path", default="on",
                    help="comma list of on/off: Mamba.use_fast_path (fused inner function) per case")
    ap.add_argument("--profile")
    ap.add_argument("--out")
    args = ap.parse_args()
    cuda = not args.cpu
    dev = torch.device("cuda" if cuda else "cpu")
    model = CaduceusForMaskedLM(published_config("caduceus-ps_seqlen-131k_d_model-256_n_layer-16")).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=8e-3, fused=cuda)
    B, L = args.batch, args.length
    ids = torch.randint(7, 11, (B, L), device=dev)
    labels = torch.where(torch.rand(B, L, device=dev) < 0.15, ids, torch.full_like(ids, -100))
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda)
    results = {"device": torch.cuda.get_device_name() if cuda else "CPU", "batch": B, "length": L,
               "torch": torch.__version__, "rows": []}

    def train_step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(**amp):
            logits = model(ids).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        opt.step()

    cases = []  # (label, checkpointing on, blocks, PyTorch conv, fast path)
    for fp in args.fast_path.split(","):
        if fp not in ("on", "off"):
            raise SystemExit(f"--fast-path takes on/off values; got {fp!r}")
        fast = fp == "on"
        tag = f", fused inner {fp}"
        for k in args.ckpt_blocks.split(","):
            blocks = None if k == "all" else int(k)
            what = "all blocks" if blocks is None else f"first {blocks} blocks"
            cases.append((f"checkpointing {what}{tag}", True, blocks, False, fast))
            if blocks is None and args.conv_compare and cuda:
                cases.append((f"checkpointing all blocks, PyTorch conv{tag}", True, None, True, fast))
        if not args.no_ckpt_off:
            cases.append((f"checkpointing off{tag}", False, None, False, fast))
    for label, ckpt, blocks, plain_conv, fast in cases:
        set_checkpointing(model, ckpt, blocks)
        set_fast_path(model, fast)
        model.train()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            if plain_conv:
                with torch_conv():
                    sec = timed(train_step, args.iters, cuda)
            else:
                sec = timed(train_step, args.iters, cuda)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            row = {"case": f"train step, {label}", "ms": sec * 1e3, "tokens_per_s": B * L / sec, "peak_GiB": peak}
        except torch.OutOfMemoryError:
            row = {"case": f"train step, {label}", "ms": None, "tokens_per_s": None, "peak_GiB": "OOM"}
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.empty_cache()
        results["rows"].append(row)
        print(row, flush=True)

    if args.profile and cuda:
        from torch.profiler import ProfilerActivity, profile

        set_checkpointing(model, True, None)
        set_fast_path(model, True)
        torch.cuda.empty_cache()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            train_step()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
        with open(args.profile, "w") as fh:
            fh.write(table)
        print(table[:6000], flush=True)

    model.eval()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    @torch.no_grad()
    def infer():
        with torch.autocast(**amp):
            model(ids)

    sec = timed(infer, args.iters, cuda)
    row = {"case": "inference (no grad)", "ms": sec * 1e3, "tokens_per_s": B * L / sec,
           "peak_GiB": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")}
    results["rows"].append(row)
    print(row, flush=True)
    print(f"\n{results['device']}, batch {B} x {L} bp, PS-131k (d_model 256, 16 layers)")
    print(f"{'case':<60}{'ms':>10}{'tokens/s':>14}{'peak GiB':>10}")
    for r in results["rows"]:
        ms = "—" if r["ms"] is None else f"{r['ms']:.1f}"
        tps = "—" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}"
        pk = r["peak_GiB"] if isinstance(r["peak_GiB"], str) else f"{r['peak_GiB']:.1f}"
        print(f"{r['case']:<60}{ms:>10}{tps:>14}{pk:>10}")
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
