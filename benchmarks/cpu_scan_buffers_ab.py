"""CPU path A/B: the chunked reference scan writing each chunk's decays and states into scratch
tensors reused by every chunk of a call (the library's code) against fresh tensors per chunk (the
code before 2026-12-07), alternated in one process so both sides see the same machine load.

Two measurements, both without autograd (the "fresh" side cannot run the backward, which now
indexes its third buffer):

* the scan alone at (4, 512, 1,024), d_state 16, z gate and softplus (Caduceus-PS' mixer shape
  with both strands of two sequences), seconds per call;
* a Caduceus-PS 131k forward (``--layers`` of its 16 layers) on ``--batch`` × ``--length`` tokens.

The outputs of the two sides are compared bit for bit.

    python benchmarks/cpu_scan_buffers_ab.py [--rounds 5 --layers 16 --batch 4 --length 1024] [--out ab.json]
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


def _timed_sides(fn, rounds):
    """{"fresh": [s...], "reused": [s...]} and whether the two sides' outputs were equal."""
    reused = S._chunk_buffers
    times = {"fresh": [], "reused": []}
    outs = {}
    try:
        for _ in range(rounds):
            for side in times:
                S._chunk_buffers = (lambda *a: None) if side == "fresh" else reused
                t0 = time.perf_counter()
                outs[side] = fn()
                times[side].append(round(time.perf_counter() - t0, 4))
    finally:
        S._chunk_buffers = reused
    return times, bool(torch.equal(outs["fresh"], outs["reused"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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

    res = dict(machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
               torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    with torch.no_grad():
        scan(), forward()  # warm-up
        for name, fn, rounds in (("scan_4x512x1024", scan, args.rounds),
                                 (f"caduceus_ps_{args.layers}_layers_{args.batch}x{args.length}",
                                  forward, max(2, args.rounds // 2))):
            times, equal = _timed_sides(fn, rounds)
            res[name] = dict(seconds=times, equal=equal,
                             median={k: statistics.median(v) for k, v in times.items()})
            print(f"{name}: fresh {res[name]['median']['fresh']:.3f} s, reused "
                  f"{res[name]['median']['reused']:.3f} s (medians of {rounds}), outputs equal: {equal}")
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
