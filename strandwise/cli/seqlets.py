"""``strandwise seqlets CONFIG`` — seqlets from the ``attribute`` outputs, optionally annotated.

Reads ``NAME.attributions.{ohe,attr}.npz`` and ``NAME.attributions.loci.bed`` and writes:

* ``NAME.seqlets.bed`` — headerless BED ``chrom start end example_idx attribution p_value``, genome
  coordinates from the **attribution** window (spec §7.4 #1), highest attribution first;
* with ``--motifs FILE.meme`` (or ``--motifs jaspar:fungi``): ``NAME.seqlets_annotated.bed`` (+ best
  tomtom match and its p-value), ``NAME.motif_seqlet_count.tsv`` (seqlets per motif), and
  ``NAME.seqlet_clusters.tsv``: seqlets grouped by their match, each group's contribution matrix
  aligned on the motif and matched again against the whole database (p- and q-values), with logos
  in ``NAME.seqlet_clusters/``.
"""

from __future__ import annotations

import os

import numpy as np

from strandwise.cli.interpret_common import (
    Context, add_common_arguments, clear_pictures, load_attributions, resolve_motifs, write_report,
)

CLUSTER_COLUMNS = ("motif", "n_seqlets", "mean_attribution", "cluster_match", "cluster_p", "cluster_q",
                   "match_rank", "logo")


def register(sub) -> None:
    p = sub.add_parser("seqlets", help="seqlets from attributions; BED, tomtom annotation, per-motif counts",
                       description=__doc__)
    add_common_arguments(p, model=False)
    p.add_argument("--motifs", help="MEME motif database, or jaspar[:TAX_GROUP[:RELEASE]] "
                   "(JASPAR CORE from pyjaspar, e.g. jaspar:fungi)")
    p.add_argument("--threshold", type=float, default=0.01, help="seqlet p-value threshold")
    p.add_argument("--min-len", type=int, default=4)
    p.add_argument("--max-len", type=int, default=25)
    p.add_argument("--flanks", type=int, default=3, help="bases added on each side")
    p.add_argument("--p-threshold", type=float, default=0.05, help="tomtom p-value for a match")
    p.add_argument("--min-cluster", type=int, default=5, help="seqlets a motif group needs for a logo")
    p.add_argument("--n-clusters", type=int, default=20, help="motif groups to align and draw")
    p.set_defaults(func=run)


def run(args) -> int:
    ctx = Context(args)
    run_seqlets(ctx, motifs=args.motifs, threshold=args.threshold, min_len=args.min_len,
                max_len=args.max_len, flanks=args.flanks, p_threshold=args.p_threshold,
                min_cluster=args.min_cluster, n_clusters=args.n_clusters)
    return 0


def run_seqlets(ctx: Context, motifs=None, threshold=0.01, min_len=4, max_len=25, flanks=3,
                p_threshold=0.05, min_cluster=5, n_clusters=20):
    """Call, place, annotate and group seqlets; returns ``(seqlets, clusters)`` records."""
    from strandwise.interpret.seqlets import (
        annotate_seqlets, call_seqlets, motif_seqlet_counts, seqlets_to_genome, write_motif_counts,
        write_seqlets_bed,
    )

    ohe, attr, chroms, mids = load_attributions(ctx)
    W = ohe.shape[-1]
    ctx.say(f"calling seqlets on {ohe.shape[0]} loci × {W} bp")
    seqlets = call_seqlets(attr, ohe, threshold=threshold, min_seqlet_len=min_len,
                           max_seqlet_len=max_len, additional_flanks=flanks)
    placed = seqlets_to_genome(seqlets, chroms, mids, attr_window=W)
    write_seqlets_bed(placed, ctx.path(".seqlets.bed"))
    ctx.say(f"{len(placed)} seqlets -> {ctx.path('.seqlets.bed')}")
    clusters = []
    meme = resolve_motifs(motifs, ctx)
    if meme is not None:
        ctx.say(f"annotating with tomtom against {meme}")
        annotated = annotate_seqlets(placed, ohe, meme, p_threshold=p_threshold)
        write_seqlets_bed(annotated, ctx.path(".seqlets_annotated.bed"), annotated=True)
        counts = motif_seqlet_counts(annotated)
        write_motif_counts(counts, ctx.path(".motif_seqlet_count.tsv"))
        clusters = seqlet_clusters(ctx, annotated, ohe, attr, meme, min_cluster, n_clusters)
        for c in clusters[:10]:
            ctx.say(f"  {c['motif']}: {c['n_seqlets']} seqlets; aligned CWM best match "
                    f"{c['cluster_match']} (q = {c['cluster_q']:.2g})")
    write_report(ctx)
    return placed, clusters


def seqlet_clusters(ctx, annotated, ohe, attr, meme, min_cluster=5, n_clusters=20):
    """Group annotated seqlets by motif, align each group on its motif, match the group CWM."""
    from strandwise.interpret.motifs_db import tomtom_matches, trim_motif
    from strandwise.interpret.plots import plot_motif_match
    from strandwise.interpret.report import write_tsv
    from strandwise.interpret.seqlets import motif_aligned_cwm, read_meme

    db = read_meme(meme)
    groups: dict[str, list] = {}
    for r in annotated:
        if r["motif"] != "NA":
            groups.setdefault(r["motif"], []).append(r)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ranked = [(m, g) for m, g in ranked if len(g) >= min_cluster][:n_clusters]
    out_dir = ctx.path(".seqlet_clusters")
    os.makedirs(out_dir, exist_ok=True)
    clear_pictures(out_dir)
    cwms = {}
    for motif, group in ranked:
        cwm, _ = motif_aligned_cwm(group, ohe, attr, db[motif])
        a, b = trim_motif(cwm, 0.3)
        cwms[motif] = cwm[:, a:b]
    matches = tomtom_matches(cwms, db, top_k=len(db)) if cwms else []
    records = []
    for k, ((motif, group), m) in enumerate(zip(ranked, matches)):
        names = [m[f"match{j}"] for j in range(len(db))]
        rank = names.index(motif) + 1 if motif in names else -1
        png = os.path.join(out_dir, f"{k:02d}_{_safe(motif)}.png")
        plot_motif_match(cwms[motif], db[motif], query_name=f"{len(group)} seqlets (aligned CWM)",
                         target_name=motif, p_value=None, path=png)
        records.append({
            "motif": motif, "n_seqlets": len(group),
            "mean_attribution": float(np.mean([r["attribution"] for r in group])),
            "cluster_match": m["match0"], "cluster_p": m["p0"], "cluster_q": m["q0"],
            "match_rank": rank, "logo": os.path.relpath(png, ctx.out_dir),
        })
    write_tsv(records, ctx.path(".seqlet_clusters.tsv"), CLUSTER_COLUMNS)
    return records


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]
