"""Attribution throughput: DeepLIFT/SHAP (dinucleotide shuffles) and ISM for a Cherimoya, GPU or CPU.

Model: ``Cherimoya(preset="upstream")`` (128 filters, 9 blocks), 2,114 bp inputs, log-counts
output; random one-hot loci (time does not depend on the values). DeepLIFT/SHAP: ``n_shuffles``
references per locus, attributions over the whole input. ISM: every base of the central 400 bp.
Reports loci per second of the second of two runs (the first autotunes). Prints a table and writes JSON::

    python benchmarks/bench_attribution.py --out bench_attribution.json            # CUDA
    python benchmarks/bench_attribution.py --cpu --loci 2 --ism-loci 1              # this CPU
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from strandwise import Cherimoya
from strandwise.io.atomic import atomic_write_text
from strandwise.interpret import LogCountWrapper, deep_lift_shap, saturation_mutagenesis


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--loci", type=int, default=64)
    ap.add_argument("--ism-loci", type=int, default=8)
    ap.add_argument("--n-shuffles", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out")
    args = ap.parse_args()
    dev = torch.device("cpu" if args.cpu else "cuda")
    model = Cherimoya(preset="upstream", random_state=0).to(dev).eval()
    wrap = LogCountWrapper(model)
    g = torch.Generator().manual_seed(0)
    X = torch.zeros(args.loci, 4, 2114)
    X.scatter_(1, torch.randint(0, 4, (args.loci, 1, 2114), generator=g), 1.0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    Xi = X[: args.ism_loci].to(dev)
    # Each case runs twice and the second run is timed: the first one autotunes the Triton kernels
    # for every batch shape it meets (the full batch and the last, partial one).
    for rep in range(2):
        sync()
        t = time.perf_counter()
        deep_lift_shap(wrap, X.to(dev), n_shuffles=args.n_shuffles, batch_size=args.batch_size, warning_threshold=1e9)
        sync()
        t_dls = time.perf_counter() - t
        t = time.perf_counter()
        saturation_mutagenesis(wrap, Xi, start=857, end=1257, batch_size=args.batch_size)
        sync()
        t_ism = time.perf_counter() - t
        print(f"run {rep}: DeepLIFT/SHAP {t_dls:.2f} s, ISM {t_ism:.2f} s", flush=True)
    rows.append({"case": f"DeepLIFT/SHAP, {args.n_shuffles} shuffles, 2114 bp", "loci": args.loci, "s": t_dls,
                 "loci_per_s": args.loci / t_dls})
    rows.append({"case": "ISM, central 400 bp (1,200 variants per locus)", "loci": args.ism_loci, "s": t_ism,
                 "loci_per_s": args.ism_loci / t_ism})
    name = "CPU" if args.cpu else torch.cuda.get_device_name()
    res = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    print(f"\n{name} ({torch.get_num_threads()} threads), Cherimoya upstream preset, log-counts")
    for r in rows:
        print(f"{r['case']:<52}{r['loci']:>6} loci {r['s']:>9.2f} s {r['loci_per_s']:>9.2f} loci/s")
    if args.out:
        atomic_write_text(args.out, json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
