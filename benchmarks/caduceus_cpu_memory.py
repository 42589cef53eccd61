"""Peak CPU memory and time of a Caduceus forward (no grad) at long L, pure-PyTorch path.

Builds a published architecture from its config alone (random weights: the memory and time do
not depend on the weight values), runs ``CaduceusForMaskedLM`` on one random ACGT sequence and
reports the process's peak resident memory (``ru_maxrss``) before and after the forward.

Usage::

    python benchmarks/caduceus_cpu_memory.py --config caduceus-ps_seqlen-131k_d_model-256_n_layer-16 \
        --length 131072 --threads 2 --json runs/caduceus_cpu_memory.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main(argv=None):
    from strandwise.models.caduceus import CaduceusForMaskedLM, published_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="caduceus-ps_seqlen-131k_d_model-256_n_layer-16")
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(published_config(args.config)).eval()
    ids = torch.randint(7, 11, (1, args.length))
    base = peak_rss_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model(ids).logits
    secs = time.perf_counter() - t0
    peak = peak_rss_mib()
    res = {
        "config": args.config, "length": args.length, "threads": args.threads,
        "logits_shape": list(logits.shape), "finite": bool(torch.isfinite(logits).all()),
        "rss_before_forward_mib": round(base, 1), "peak_rss_mib": round(peak, 1),
        "forward_seconds": round(secs, 1), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        from strandwise.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
