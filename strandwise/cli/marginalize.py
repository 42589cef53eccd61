"""``strandwise marginalize CONFIG --motifs FILE.meme`` — effect of inserting each motif.

Each motif's consensus is written over the centre of background sequences — the config's
**negatives** (never the peaks, spec §7.4 #7), permuted with ``--random-state`` before the
``--n-loci`` cap — and the model predicts before and after. Writes ``NAME_marginalize/``:
``NAME.marginalize.tsv`` (sorted by mean Δ log counts), one PNG per motif in ``figures/`` and
``NAME.marginalize.html``.
"""

from __future__ import annotations

import os

from strandwise.cli.interpret_common import Context, add_common_arguments, load_peaks, resolve_motifs, write_report


def register(sub) -> None:
    p = sub.add_parser("marginalize", help="insert each motif into negatives; Δ log counts and profiles",
                       description=__doc__)
    add_common_arguments(p)
    p.add_argument("--motifs", required=True, help="MEME motif file, or jaspar[:TAX_GROUP[:RELEASE]]")
    p.add_argument("--chroms", nargs="+", help="chromosomes of the negatives to use (default: all splits)")
    p.add_argument("--n-loci", type=int, default=100, help="backgrounds used (after shuffling)")
    p.add_argument("--no-shuffle", action="store_true", help="take the first negatives, not a random set")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--group", type=int, default=0, help="signal group that ranks the motifs")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func=run)


def run(args) -> int:
    ctx = Context(args)
    run_marginalize(ctx, args.motifs, chroms=args.chroms, n_loci=args.n_loci, shuffle=not args.no_shuffle,
                    random_state=args.random_state, group=args.group, batch_size=args.batch_size)
    return 0


def run_marginalize(ctx: Context, motifs, chroms=None, n_loci=100, shuffle=True, random_state=0, group=0,
                    batch_size=256):
    """Run :func:`strandwise.interpret.marginalize` on the negatives; returns its records."""
    from strandwise.interpret.marginalize import marginalize

    if n_loci < 1:
        raise ValueError(f"--n-loci must be >= 1; got {n_loci}")
    model = ctx.load_model()
    meme = resolve_motifs(motifs, ctx)
    d = ctx.cfg.data
    chroms = list(chroms or dict.fromkeys(list(d.training_chroms) + list(d.validation_chroms) + list(d.test_chroms)))
    neg, _ = load_peaks(ctx, chroms, negatives=True)
    ctx.say(f"{len(neg)} negatives on {len(chroms)} chromosomes; using {min(n_loci, len(neg))}")
    out = os.path.join(ctx.out_dir, f"{ctx.name}_marginalize")
    records = marginalize(model, neg.X.float(), meme, X_ctl=neg.X_ctl, n_loci=n_loci, shuffle=shuffle,
                          random_state=random_state, group=group, batch_size=batch_size,
                          output_dir=out, name=f"{ctx.name}.marginalize", progress=not ctx.quiet)
    for r in records[:10]:
        ctx.say(f"  {r['motif']} ({r['consensus']}): Δ log counts {r['delta_log_counts']:+.3f} "
                f"± {r['delta_log_counts_sd']:.3f}")
    ctx.say(f"wrote {os.path.join(out, ctx.name + '.marginalize.html')}")
    write_report(ctx)
    return records
