"""CPU path A/Bs of the chunked reference scan, the two sides alternated in one process so both
see the same machine load.

``--what buffers`` (default): each chunk's decays and states in scratch tensors reused by every
chunk of a call (the library's code) against fresh tensors per chunk (the code before
2026-12-07). Without autograd (the "fresh" side cannot run the backward, which indexes its third
buffer); the outputs are compared bit for bit.

``--what contract``: ``y_t = Σ_n h_t[n]·C_t[n]`` as an elementwise product into a free chunk buffer
and a sum (the library's code since 2026-12-08) against the batched mat-vec ``matmul(hs, C[...,
None])`` it replaced; also the scan's forward + backward. The outputs differ by fp32 rounding:
the largest difference is reported.

Measured: the scan alone at (4, 512, 1,024), d_state 16, z gate and softplus (Caduceus-PS' mixer
shape with both strands of two sequences), seconds per call, and a Caduceus-PS 131k forward
(``--layers`` of its 16 layers) on ``--batch`` × ``--length`` tokens.

    python benchmarks/cpu_scan_buffers_ab.py [--what buffers|contract] [--rounds 5 --layers 16
        --batch 4 --length 1024] [--out ab.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import strandwise.kernels.selective_scan as S
from strandwise.io.atomic import atomic_write_text
from strandwise.models.caduceus import CaduceusForMaskedLM, published_config


def _matmul_contract(hs, CT, out=None, scratch=None):
    """The contraction as it was before 2026-12-08 (for ``--what contract``)."""
    y = torch.matmul(hs, CT[..., None]).squeeze(-1)
    return y if out is None else out.copy_(y)


def _sides(what):
    """{side name: function that switches the library to that side}; the library's side last."""
    if what == "buffers":
        reused = S._chunk_buffers
        return {"fresh": lambda: setattr(S, "_chunk_buffers", lambda *a: None),
                "reused": lambda: setattr(S, "_chunk_buffers", reused)}
    current = S._contract_C
    return {"matmul": lambda: setattr(S, "_contract_C", _matmul_contract),
            "mulsum": lambda: setattr(S, "_contract_C", current)}


def _timed_sides(fn, rounds, sides):
    """{side: [s...]} and the two sides' outputs' largest absolute difference (0.0 = equal)."""
    times = {k: [] for k in sides}
    outs = {}
    try:
        for _ in range(rounds):
            for side, switch in sides.items():
                switch()
                t0 = time.perf_counter()
                outs[side] = fn()
                times[side].append(round(time.perf_counter() - t0, 4))
    finally:
        list(sides.values())[-1]()  # back to the library's side
    a, b = outs.values()
    return times, float((a.double() - b.double()).abs().max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", choices=("buffers", "contract"), default="buffers")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    b, di, L, N = 4, 512, 1024, 16
    u, z = torch.randn(b, di, L, generator=g), torch.randn(b, di, L, generator=g)
    delta = torch.randn(b, di, L, generator=g) * 0.5 - 1
    A = -torch.rand(di, N, generator=g) - 0.5
    B, C = torch.randn(b, N, L, generator=g), torch.randn(b, N, L, generator=g)
    D, db = torch.randn(di, generator=g), torch.randn(di, generator=g) * 0.1

    def scan():
        return S.selective_scan_chunked(u, delta, A, B, C, D=D, z=z, delta_bias=db, delta_softplus=True)

    cfg = published_config("caduceus-ps_seqlen-131k_d_model-256_n_layer-16")
    cfg.n_layer = args.layers
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(cfg).eval()
    ids = torch.randint(7, 11, (args.batch, args.length), generator=torch.Generator().manual_seed(1))

    def forward():
        out = model(ids)
        return out.logits if hasattr(out, "logits") else out

    def scan_fwd_bwd():
        leaves = [t.detach().requires_grad_() for t in (u, delta, B, C)]
        with torch.enable_grad():
            y = S.selective_scan_chunked(leaves[0], leaves[1], A, leaves[2], leaves[3], D=D, z=z,
                                         delta_bias=db, delta_softplus=True)
            grads = torch.autograd.grad(y, leaves, torch.ones_like(y))
        return torch.cat([y.flatten()] + [gr.flatten() for gr in grads])

    sides = _sides(args.what)
    res = dict(what=args.what, machine=platform.processor() or platform.machine(),
               threads=torch.get_num_threads(), torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    cases = [("scan_4x512x1024", scan, args.rounds)]
    if args.what == "contract":
        cases.append(("scan_fwd_bwd_4x512x1024", scan_fwd_bwd, args.rounds))
    cases.append((f"caduceus_ps_{args.layers}_layers_{args.batch}x{args.length}", forward,
                  max(2, args.rounds // 2)))
    with torch.no_grad():
        scan(), forward()  # warm-up
        for name, fn, rounds in cases:
            times, diff = _timed_sides(fn, rounds, sides)
            res[name] = dict(seconds=times, max_abs_diff=diff, equal=diff == 0.0,
                             median={k: statistics.median(v) for k, v in times.items()})
            print(f"{name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in res[name]["median"].items())
                  + f" (medians of {rounds}), largest output difference {diff:.3g}")
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
