"""CPU inference A/B: the compiled selective scan (``strandwise.kernels.selective_scan_cpu``)
against the chunked PyTorch reference, alternated in one process so both sides see the same
machine load (``STRANDWISE_CPU_SCAN_COMPILE`` is switched between calls).

Measured, fp32: the scan alone at ``--scan-shape`` (default 2 × 512 × 1,024, d_state 16, z gate,
softplus, D, delta_bias: one strand of the Caduceus-PS mixer as the model's CPU batches of two
sequences call it), no grad in both directions, and forward + backward (the gradient of ``u`` is
compared); a no-grad Caduceus-PS 131k forward (``--layers`` of its 16 layers) on ``--batch`` ×
``--length`` tokens; and a training forward + backward (no optimizer step) of the CPU training
config of docs/caduceus_training.md (Caduceus-Ph, d_model 64, 2 layers, 32 × 128 bp). Also the first compiled call's wall time (compile,
or load from TorchInductor's disk cache), and the largest output differences.

    python benchmarks/cpu_scan_compile_ab.py [--rounds 5 --layers 16 --batch 4 --length 1024]
        [--out ab.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from strandwise.io.atomic import atomic_write_text
from strandwise.kernels import selective_scan_cpu
from strandwise.kernels.selective_scan import selective_scan_fn
from strandwise.models.caduceus import CaduceusConfig, CaduceusForMaskedLM, published_config

SIDES = {"chunked": "0", "compiled": "1"}


def _set(side):
    os.environ["STRANDWISE_CPU_SCAN_COMPILE"] = SIDES[side]


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--scan-shape", default="2,512,1024,16", help="b,d_inner,L,d_state")
    ap.add_argument("--out")
    args = ap.parse_args()

    torch.manual_seed(0)
    b, d, L, N = (int(v) for v in args.scan_shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = dict(u=torch.randn(b, d, L, generator=g), delta=torch.randn(b, d, L, generator=g),
             A=-torch.rand(d, N, generator=g) * 4, B=torch.randn(b, N, L, generator=g),
             C=torch.randn(b, N, L, generator=g), D=torch.randn(d, generator=g),
             z=torch.randn(b, d, L, generator=g), delta_bias=torch.randn(d, generator=g))
    cfg = published_config("caduceus-ps_seqlen-131k_d_model-256_n_layer-16")
    cfg.n_layer = args.layers
    model = CaduceusForMaskedLM(cfg).eval()
    ids = torch.randint(7, 11, (args.batch, args.length))

    xg = {k: v.clone().requires_grad_(True) for k, v in x.items()}

    def scan_fwd_bwd():
        for v in xg.values():
            v.grad = None
        with torch.enable_grad():
            out = selective_scan_fn(**xg, delta_softplus=True)
            out.backward(torch.ones_like(out))
        return xg["u"].grad

    # the CPU training config of docs/caduceus_training.md (Caduceus-Ph, d_model 64, 2 layers)
    small = CaduceusForMaskedLM(CaduceusConfig(d_model=64, n_layer=2, vocab_size=12, rcps=False,
                                               ssm_cfg={"d_state": 16})).train()
    opt = torch.optim.AdamW(small.parameters(), lr=1e-3)
    sids = torch.randint(7, 11, (32, 128))

    def train_step():
        with torch.enable_grad():
            opt.zero_grad(set_to_none=True)
            logits = small(sids).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), sids.reshape(-1))
            loss.backward()
        return loss.detach()

    cases = {
        "scan forward": lambda: selective_scan_fn(**x, delta_softplus=True),
        "scan reverse": lambda: selective_scan_fn(**x, delta_softplus=True, reverse=True),
        f"Caduceus-PS forward, {args.layers} layers, {args.batch} x {args.length} bp":
            lambda: model(ids).logits,
        "scan forward + backward": scan_fwd_bwd,
        "Caduceus-Ph d64 2 layers, training step (no optimizer), 32 x 128 bp": train_step,
    }
    rows, first, diffs = {k: {s: [] for s in SIDES} for k in cases}, {}, {}
    with torch.no_grad():  # the training cases turn grad on themselves
        for name, fn in cases.items():  # warm-up; the compiled side's first call compiles
            outs = {}
            for side in SIDES:
                _set(side)
                first[f"{name}, {side}"], outs[side] = _timed(fn)
            if name.startswith("Caduceus-Ph"):  # two different steps: no output to compare
                continue
            diffs[name] = {"max_abs_diff": (outs["compiled"] - outs["chunked"]).abs().max().item(),
                           "max_abs": outs["chunked"].abs().max().item()}
        for r in range(args.rounds):
            order = list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]
            for name, fn in cases.items():
                for side in order:
                    _set(side)
                    rows[name][side].append(_timed(fn)[0])
    os.environ.pop("STRANDWISE_CPU_SCAN_COMPILE", None)

    result = {
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds,
        "chunk": selective_scan_cpu.CHUNK, "scan_shape": [b, d, L, N],
        "first_call_s": first, "differences": diffs,
        "median_s": {k: {s: statistics.median(v) for s, v in sides.items()} for k, sides in rows.items()},
        "all_s": rows,
    }
    print(f"{'case':<62}{'chunked s':>12}{'compiled s':>12}{'speed-up':>10}")
    for k, sides in result["median_s"].items():
        print(f"{k:<62}{sides['chunked']:>12.4f}{sides['compiled']:>12.4f}"
              f"{sides['chunked'] / sides['compiled']:>9.2f}x")
    print("first calls (s):", {k: round(v, 2) for k, v in first.items()})
    print("largest differences:", diffs)
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
