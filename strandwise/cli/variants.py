"""``strandwise variants CONFIG --vcf FILE`` — predicted effects of variants.

Reads a VCF (``.vcf``, ``.vcf.gz``, ``.bcf``) or a TSV (``chrom pos ref alt [id]``, 1-based
``pos``; see :mod:`strandwise.io.variants`), checks every reference allele against the config's
genome, and scores alternate vs reference windows of the model's input length centred on the
variant (indels: the right flank is trimmed or extended to keep the length). Writes
``NAME_variants/``: ``NAME.variants.tsv`` sorted by |Δ log counts| (or ``--sort-by``),
``NAME.variants.skipped.tsv`` (reference mismatches, windows off a chromosome, symbolic alleles),
ref/alt profile plots of the top variants and ``NAME.variants.html``.
"""

from __future__ import annotations

import os

from strandwise.cli.interpret_common import Context, add_common_arguments, write_report


def register(sub) -> None:
    p = sub.add_parser("variants", help="score variants from a VCF/TSV: Δ log counts, profile JSD; TSV + plots",
                       description=__doc__)
    add_common_arguments(p)
    p.add_argument("--vcf", required=True, help="variants: .vcf, .vcf.gz, .bcf or .tsv")
    p.add_argument("--group", type=int, default=0)
    p.add_argument("--sort-by", default="delta_log_counts",
                   choices=["delta_log_counts", "profile_jsd", "delta_at_variant"])
    p.add_argument("--rc-average", action="store_true", help="average forward and reverse-complement predictions")
    p.add_argument("--strict", action="store_true", help="fail on the first reference mismatch instead of skipping")
    p.add_argument("--top-k", type=int, default=10, help="variants plotted")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=run)


def run(args) -> int:
    ctx = Context(args)
    run_variants(ctx, args.vcf, group=args.group, sort_by=args.sort_by, rc_average=args.rc_average,
                 strict=args.strict, top_k=args.top_k, batch_size=args.batch_size)
    return 0


def run_variants(ctx: Context, vcf, group=0, sort_by="delta_log_counts", rc_average=False, strict=False,
                 top_k=10, batch_size=64):
    """Score the variants of ``vcf``; returns the :class:`VariantEffects`."""
    from strandwise.interpret.variants import score_variants, write_variant_effects
    from strandwise.io.fasta import Genome
    from strandwise.io.variants import read_variants

    variants = read_variants(vcf)
    model = ctx.load_model()
    genome = Genome(ctx.cfg.data.sequences)
    sizes = genome.chrom_sizes

    def fetch(chrom, start, end):
        # Clipped at the chromosome end: the library sees the short window and skips the variant
        # as "window runs past the chromosome end" (starts before 0 are caught before fetching).
        if chrom not in sizes:
            raise KeyError(f"chromosome {chrom!r} not in the genome")
        return genome.fetch(chrom, max(0, start), min(end, sizes[chrom]))

    try:
        L = ctx.cfg.data.in_window
        ctx.say(f"{len(variants)} variant records from {vcf}; windows of {L} bp")
        effects = score_variants(model, fetch, variants, input_length=L, group=group, sort_by=sort_by,
                                 reverse_complement_average=rc_average, strict=strict, batch_size=batch_size,
                                 progress=not ctx.quiet)
        out = os.path.join(ctx.out_dir, f"{ctx.name}_variants")
        paths = write_variant_effects(effects, out, name=f"{ctx.name}.variants", model=model, fetch=fetch,
                                      input_length=L, top_k=top_k, group=group,
                                      reverse_complement_average=rc_average)
    finally:
        genome.close()
    ctx.say(f"{len(effects.records)} scored, {effects.n_skipped} skipped")
    for r in effects.records[:5]:
        ctx.say(f"  {r['chrom']}:{r['pos']} {r['ref']}>{r['alt']}: Δ log counts {r['delta_log_counts']:+.3f}, "
                f"JSD {r['profile_jsd']:.3f}")
    ctx.say(f"wrote {paths['tsv']}")
    write_report(ctx)
    return effects
