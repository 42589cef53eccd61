"""Did a yeast ATAC-seq Cherimoya learn the general regulatory factors (GRFs)?

Two measurements, both independent of seqlet calling and clustering:

1. **Ground truth from the data, no model.** Every JASPAR fungi matrix is scanned over the central
   ``--width`` bp of the peaks (at their summits) and of the GC-matched negatives of the example;
   motifs are ranked by enrichment of hits in peaks (one-sided Fisher test, BH q-values;
   :func:`strandwise.interpret.motif_enrichment`). In yeast open chromatin Abf1, Reb1 and Rap1
   should come first.
2. **Does the model use them?** For each output folder of ``strandwise attribute`` given, the mean
   attribution per base inside the motif hits over the mean absolute attribution per base
   (:func:`strandwise.interpret.motif_hit_attribution`), for the top enriched motifs. The control
   for base composition (a GC-rich motif scores well on a model that just likes GC): the same
   ratio for ``--n-controls`` column-shuffled copies of each matrix (same composition, no motif),
   averaged over the copies that have hits.

Usage::

    python benchmarks/yeast_grf_recovery.py --out docs/examples/yeast_atac_motifs \\
        --attributions /path/to/output_dir [/path/to/other_output_dir ...]

Writes ``grf_enrichment.tsv`` and, with ``--attributions``, ``grf_hit_attribution.tsv`` (one
column per attribution folder) and prints both as Markdown.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "yeast_atac")
GRFS = ("ABF1", "REB1", "RAP1", "CBF1", "MCM1", "TBF1", "RSC3", "RSC30")


def windows(genome, intervals, width, summits):
    from strandwise.io.sequence import one_hot_encode

    centres = intervals.centers(summits=summits)
    out = []
    for c, m in zip(intervals.chrom, centres):
        a = int(m) - width // 2
        if a < 0 or a + width > genome.chrom_sizes[c]:
            continue
        out.append(one_hot_encode(genome.fetch(c, a, a + width), strict=False))
    return torch.stack(out)


def short(name):
    return name.split(" ", 1)[-1].upper()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--example-dir", default=EXAMPLE, help="folder of the yeast ATAC example")
    ap.add_argument("--motifs", default="jaspar:fungi",
                    help="MEME file, or jaspar:<tax_group> (pyjaspar, offline)")
    ap.add_argument("--width", type=int, default=400, help="central bp scanned per peak/negative")
    ap.add_argument("--p-hit", type=float, default=1e-4, help="per-window p-value of a motif hit")
    ap.add_argument("--top", type=int, default=15, help="enriched motifs listed and tested on attributions")
    ap.add_argument("--attributions", nargs="*", default=[],
                    help="output folders holding <name>.attributions.{ohe,attr}.npz")
    ap.add_argument("--n-controls", type=int, default=5, help="column-shuffled copies per motif")
    ap.add_argument("--out", default=None, help="folder for the TSVs (default: print only)")
    args = ap.parse_args(argv)

    from strandwise.interpret import motif_enrichment, motif_hit_attribution
    from strandwise.interpret.seqlets import read_meme
    from strandwise.io.fasta import Genome
    from strandwise.io.intervals import read_bed, read_peaks

    ex = args.example_dir
    genome = Genome(os.path.join(ex, "sacCer3.fa.gz"))
    peaks = read_peaks([os.path.join(ex, "yeast_atac.macs3_peaks.narrowPeak")])
    negs = read_bed(os.path.join(ex, "yeast_atac.negatives.bed"))
    pos = windows(genome, peaks, args.width, summits=True)
    neg = windows(genome, negs, args.width, summits=False)
    if args.motifs.startswith("jaspar:"):
        from strandwise.interpret.motifs_db import jaspar_motifs

        motifs = jaspar_motifs(tax_group=args.motifs.split(":", 1)[1])
    else:
        motifs = read_meme(args.motifs)
    print(f"{len(pos)} peaks, {len(neg)} negatives, central {args.width} bp, {len(motifs)} motifs, "
          f"hit p < {args.p_hit:g}", file=sys.stderr)

    enr = motif_enrichment(pos, neg, motifs, p_hit=args.p_hit)
    for rank, r in enumerate(enr, 1):
        r["rank"] = rank
    shown = [r for r in enr if r["rank"] <= args.top or short(r["motif"]) in GRFS]
    lines = ["| rank | motif | peaks with a hit | negatives with a hit | odds ratio | q |",
             "|---|---|---|---|---|---|"]
    for r in shown:
        lines.append(f"| {r['rank']} | {r['motif']} | {100 * r['frac_pos']:.1f} % | "
                     f"{100 * r['frac_neg']:.1f} % | {r['odds_ratio']:.2f} | {r['q_value']:.2g} |")
    print("\n".join(lines))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "grf_enrichment.tsv"), "w") as fh:
            cols = ["rank", "motif", "width", "threshold", "frac_pos", "frac_neg", "odds_ratio",
                    "log2_enrichment", "p_value", "q_value"]
            fh.write("\t".join(cols) + "\n")
            for r in enr:
                fh.write("\t".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + "\n")

    if not args.attributions:
        return 0
    chosen = {r["motif"]: motifs[r["motif"]] for r in shown}
    rng = np.random.RandomState(0)
    controls = {f"{n} #{k}": chosen[n][:, rng.permutation(chosen[n].shape[1])]
                for n in chosen for k in range(args.n_controls)}
    table, ctl = {}, {}
    for d in args.attributions:
        ohe = sorted(glob.glob(os.path.join(d, "*.attributions.ohe.npz")))
        if len(ohe) != 1:
            raise SystemExit(f"{d}: expected one *.attributions.ohe.npz, found {len(ohe)}")
        X = np.load(ohe[0])["arr_0"]
        A = np.load(ohe[0].replace(".ohe.npz", ".attr.npz"))["arr_0"]
        table[d] = {r["motif"]: r for r in motif_hit_attribution(X, A, chosen, p_hit=args.p_hit)}
        res = {r["motif"]: r for r in motif_hit_attribution(X, A, controls, p_hit=args.p_hit)}
        ctl[d] = {}
        for n in chosen:
            v = [res[f"{n} #{k}"]["ratio"] for k in range(args.n_controls)]
            v = [x for x in v if np.isfinite(x)]
            ctl[d][n] = float(np.mean(v)) if v else float("nan")
    names = [os.path.basename(os.path.normpath(d)) for d in args.attributions]
    lines = ["| motif (enrichment rank) | " + " | ".join(f"{n}: hits, ratio (shuffled)" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for r in shown:
        cells = [f"{table[d][r['motif']]['n_hits']}, {table[d][r['motif']]['ratio']:.2f} ({ctl[d][r['motif']]:.2f})"
                 for d in args.attributions]
        lines.append(f"| {r['motif']} ({r['rank']}) | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.out:
        with open(os.path.join(args.out, "grf_hit_attribution.tsv"), "w") as fh:
            fh.write("motif\tenrichment_rank\t" + "\t".join(f"{n}_n_hits\t{n}_ratio\t{n}_frac_positive\t{n}_shuffled_ratio" for n in names) + "\n")
            for r in shown:
                vals = []
                for d in args.attributions:
                    t = table[d][r["motif"]]
                    vals += [str(t["n_hits"]), f"{t['ratio']:.4f}", f"{t['frac_positive']:.4f}",
                             f"{ctl[d][r['motif']]:.4f}"]
                fh.write(f"{r['motif']}\t{r['rank']}\t" + "\t".join(vals) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
