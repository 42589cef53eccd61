"""Does a classifier trained on a GUE TF task learn that task's motif? (issue #8)

Two independent answers, compared:

1. ``enrich`` — ground truth without a model: scan positives and negatives of each task's training
   set with JASPAR CORE vertebrate matrices (log-odds max-score scan, hit = per-window background
   p ≤ 1e-4, both strands) and rank motifs by one-sided Fisher enrichment.
2. ``recover`` — train a classifier on one task with ``strandwise finetune`` (CNN baseline by
   default), attribute test positives (DeepLIFT/SHAP with dinucleotide-shuffled references through
   :func:`strandwise.interpret.attribute_classifier`), call seqlets, annotate them by tomtom
   against the same JASPAR matrices, optionally run modisco-lite, and report whether the top
   seqlet groups / patterns match the top enriched motif.

Usage::

    python benchmarks/gue_tf_recovery.py enrich --tasks 0 1 2 3 4 --out OUT
    python benchmarks/gue_tf_recovery.py recover --task 2 --out OUT [--model cnn|caduceus]

Writes ``OUT/enrichment_tf{k}.tsv``, ``OUT/enrichment_summary.tsv`` and, for ``recover``,
``OUT/tf{k}_{model}/`` with ``seqlet_motifs.tsv``, ``groups.tsv``, ``modisco_patterns.tsv``,
``summary.json`` and logos.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

DATA = "/work/shared/data/gue_subset/tf"


def _onehot(seqs):
    from strandwise.io.sequence import one_hot_encode

    return torch.stack([one_hot_encode(s, dtype=torch.float32) for s in seqs])


def _read(task, split, data=DATA):
    from strandwise.data.labelled import read_labelled_table

    return read_labelled_table(os.path.join(data, str(task), f"{split}.csv"))


def _tsv(path, records, cols=None, fmt="{:.4g}"):
    from strandwise.io.atomic import atomic_write_text

    cols = cols or list(records[0])
    lines = ["\t".join(cols)]
    for r in records:
        lines.append("\t".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols))
    atomic_write_text(path, "\n".join(lines) + "\n")


def enrich(args):
    from strandwise.interpret import jaspar_motifs
    from strandwise.interpret.enrichment import motif_enrichment

    os.makedirs(args.out, exist_ok=True)
    motifs = jaspar_motifs(tax_group="vertebrates", release=args.release)
    summary = []
    for task in args.tasks:
        t0 = time.time()
        d = _read(task, "train", args.data)
        rng = np.random.RandomState(0)
        pos = np.flatnonzero(d.labels == 1)
        neg = np.flatnonzero(d.labels == 0)
        if args.max_per_class:
            pos = rng.choice(pos, min(len(pos), args.max_per_class), replace=False)
            neg = rng.choice(neg, min(len(neg), args.max_per_class), replace=False)
        recs = motif_enrichment(_onehot([d.sequences[i] for i in pos]), _onehot([d.sequences[i] for i in neg]),
                                motifs, p_hit=args.p_hit)
        _tsv(os.path.join(args.out, f"enrichment_tf{task}.tsv"), recs[: args.keep])
        top = recs[0]
        ctcf = next(i for i, r in enumerate(recs) if r["motif"].split()[1] == "CTCF")
        summary.append({"task": f"tf/{task}", "n_pos": len(pos), "n_neg": len(neg), "top_motif": top["motif"],
                        "frac_pos": top["frac_pos"], "frac_neg": top["frac_neg"],
                        "odds_ratio": top["odds_ratio"], "p_value": top["p_value"],
                        "top5": ", ".join(r["motif"].split()[1] for r in recs[:5]),
                        "ctcf_rank": ctcf + 1, "ctcf_frac_pos": recs[ctcf]["frac_pos"],
                        "ctcf_frac_neg": recs[ctcf]["frac_neg"], "seconds": round(time.time() - t0, 1)})
        print(json.dumps(summary[-1]), flush=True)
    _tsv(os.path.join(args.out, "enrichment_summary.tsv"), summary)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("enrich", help="JASPAR enrichment of positives vs negatives per task")
    e.add_argument("--tasks", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    e.add_argument("--max-per-class", type=int, default=0, help="subsample each class (0 = all)")
    e.add_argument("--keep", type=int, default=50, help="rows kept per task table")
    for p in (e,):
        p.add_argument("--out", required=True)
        p.add_argument("--data", default=DATA)
        p.add_argument("--release", default="JASPAR2024")
        p.add_argument("--p-hit", type=float, default=1e-4)
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    {"enrich": enrich}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
