"""``strandwise motifs CONFIG`` — TF-MoDISco (modisco-lite) on the ``attribute`` outputs.

Reads ``NAME.attributions.{ohe,attr}.npz`` and writes ``NAME_modisco_results.h5`` and
modisco-lite's report folder ``NAME_modisco/`` (with ``--motifs``: its tomtom matches). With
``--motifs`` each pattern (its base-frequency matrix trimmed where the contribution is below 30 % of
its maximum, as modisco's report does) is also matched by tomtom against the whole database:
``NAME.modisco_patterns.tsv`` (best ``--top-k`` matches with p- and Benjamini–Hochberg q-values)
and logos ``NAME.modisco_patterns/`` (pattern CWM over its best match, oriented alike).
"""

from __future__ import annotations

import os

from strandwise.cli.interpret_common import (
    Context, add_common_arguments, clear_pictures, load_attributions, resolve_motifs, write_report,
)


def register(sub) -> None:
    p = sub.add_parser("motifs", help="TF-MoDISco patterns from attributions, matched to a motif database",
                       description=__doc__)
    add_common_arguments(p, model=False)
    p.add_argument("--motifs", help="MEME motif database, or jaspar[:TAX_GROUP[:RELEASE]]")
    p.add_argument("--max-seqlets", type=int, default=100_000, help="max seqlets per metacluster")
    p.add_argument("--window", type=int, default=None,
                   help="central bases modisco looks at (default: the whole attribution window)")
    p.add_argument("--top-k", type=int, default=3, help="database matches listed per pattern")
    p.add_argument("--trim", type=float, default=0.3, help="trim threshold (fraction of max contribution)")
    p.set_defaults(func=run)


def run(args) -> int:
    ctx = Context(args)
    run_motifs(ctx, motifs=args.motifs, max_seqlets=args.max_seqlets, window=args.window,
               top_k=args.top_k, trim=args.trim)
    return 0


def run_motifs(ctx: Context, motifs=None, max_seqlets=100_000, window=None, top_k=3, trim=0.3):
    """Run modisco-lite and match its patterns; returns the pattern records."""
    from strandwise.interpret.motifs_db import orient_like, tomtom_matches, trim_motif
    from strandwise.interpret.plots import plot_motif_match
    from strandwise.interpret.report import write_tsv
    from strandwise.interpret.seqlets import read_meme, run_modisco

    ohe, attr, _, _ = load_attributions(ctx)
    W = ohe.shape[-1]
    window = W if window is None else int(window)
    if not 2 <= window <= W:
        raise ValueError(f"--window must be in [2, {W}]; got {window}")
    meme = resolve_motifs(motifs, ctx)
    ctx.say(f"TF-MoDISco on {ohe.shape[0]} loci × {W} bp")
    if window < W:  # modisco's -w: only the central bases
        a = W // 2 - window // 2
        ohe, attr = ohe[:, :, a : a + window], attr[:, :, a : a + window]
    res = run_modisco(ohe, attr, ctx.out_dir, name=ctx.name, max_seqlets=max_seqlets,
                      motifs_meme=meme, verbose=not ctx.quiet)
    patterns = res["patterns"]
    ctx.say(f"{len(patterns)} patterns -> {res['h5']}")
    # an earlier run's table and logos must not pass for this run's
    logo_dir = ctx.path(".modisco_patterns")
    if os.path.exists(ctx.path(".modisco_patterns.tsv")):
        os.remove(ctx.path(".modisco_patterns.tsv"))
    clear_pictures(logo_dir)
    records = []
    if meme is not None and patterns:
        db = read_meme(meme)
        queries, cwms = {}, {}
        for pat in patterns:
            a, b = trim_motif(pat["cwm"], trim)
            queries[pat["pattern"]] = pat["ppm"][:, a:b]
            cwms[pat["pattern"]] = pat["cwm"][:, a:b]
        matches = tomtom_matches(queries, db, top_k=top_k)
        os.makedirs(logo_dir, exist_ok=True)
        for pat, m in zip(patterns, matches):
            rec = {"pattern": pat["pattern"], "n_seqlets": pat["n_seqlets"]}
            for j in range(top_k):
                if f"match{j}" in m:
                    rec.update({f"match{j}": m[f"match{j}"], f"p{j}": m[f"p{j}"], f"q{j}": m[f"q{j}"]})
            target, _ = orient_like(queries[pat["pattern"]], db[m["match0"]])
            png = os.path.join(logo_dir, f"{pat['pattern']}.png")
            plot_motif_match(cwms[pat["pattern"]], target,
                             query_name=f"{pat['pattern']} ({pat['n_seqlets']} seqlets, CWM)",
                             target_name=f"{m['match0']}  q = {m['q0']:.2g}", path=png)
            rec["logo"] = os.path.relpath(png, ctx.out_dir)
            records.append(rec)
            ctx.say(f"  {pat['pattern']}: {pat['n_seqlets']} seqlets, best match {m['match0']} "
                    f"(p = {m['p0']:.2g}, q = {m['q0']:.2g})")
        cols = ["pattern", "n_seqlets"]
        for j in range(top_k):
            cols += [f"match{j}", f"p{j}", f"q{j}"]
        write_tsv(records, ctx.path(".modisco_patterns.tsv"), cols + ["logo"])
    elif not patterns:
        ctx.say("modisco found no patterns (too few loci or seqlets?)")
    write_report(ctx)
    return records if records else patterns
