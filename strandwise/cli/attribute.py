"""``strandwise attribute CONFIG`` — DeepLIFT/SHAP or in-silico mutagenesis of the peaks.

Writes, into output_dir:

* ``NAME.attributions.ohe.npz`` / ``NAME.attributions.attr.npz`` — one-hot and hypothetical
  attributions over the central attribution window, ``(n, 4, attr_window)`` float32, saved with
  ``numpy.savez_compressed`` under key ``arr_0`` (modisco-lite reads them as is);
* ``NAME.attributions.loci.bed`` — the attribution window of each row: ``chrom start end row``
  where ``row`` is the 0-based row of the locus in the config's loci file;
* ``NAME.attributions.idxs.npy`` — boolean mask over the loci file's rows: ``True`` for the rows
  attributed (split chromosomes, then chromosome-end / exclusion / count drops, then
  ``--max-loci``, composed into one mask — spec §7.4 #13);
* ``NAME.attributions_logos/`` — contribution logos of the loci with the largest total
  attribution, and ``NAME.attributions_profiles/`` — the same loci's predicted (expected counts)
  vs observed profiles over the output window (same file names), both shown on the report page
  ``NAME.interpret.html``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from strandwise.cli.interpret_common import (
    ATTR_ATTR, ATTR_LOCI, ATTR_MASK, ATTR_OHE, Context, add_common_arguments, clear_pictures, load_peaks,
    write_report,
)


def register(sub) -> None:
    p = sub.add_parser("attribute", help="attributions (DeepLIFT/SHAP or ISM) of the peaks on some chromosomes",
                       description=__doc__)
    add_common_arguments(p)
    p.add_argument("--chroms", nargs="+", help="chromosomes whose peaks to attribute "
                   "(default: the validation and test chromosomes)")
    p.add_argument("--algorithm", default="deep_lift_shap", choices=["deep_lift_shap", "saturation_mutagenesis"])
    p.add_argument("--output", default="logcounts", choices=["logcounts", "profile", "counts"],
                   help="what to explain ('counts' is a deprecated alias of 'logcounts')")
    p.add_argument("--group", type=int, default=0, help="signal group to explain")
    p.add_argument("--attr-window", type=int, default=400, help="width of the central window")
    p.add_argument("--n-shuffles", type=int, default=20, help="dinucleotide-shuffled references per locus")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--max-loci", type=int, help="attribute at most the first N loci")
    p.add_argument("--n-logos", type=int, default=6, help="contribution logos to draw")
    p.set_defaults(func=run)


def run(args) -> int:
    ctx = Context(args)
    run_attribute(ctx, chroms=args.chroms, algorithm=args.algorithm, output=args.output, group=args.group,
                  attr_window=args.attr_window, n_shuffles=args.n_shuffles, batch_size=args.batch_size,
                  random_state=args.random_state, max_loci=args.max_loci, n_logos=args.n_logos)
    return 0


def run_attribute(ctx: Context, chroms=None, algorithm="deep_lift_shap", output="logcounts", group=0,
                  attr_window=400, n_shuffles=20, batch_size=64, random_state=0, max_loci=None, n_logos=6):
    """Attribute the peaks on ``chroms`` and write the files listed in the module docstring."""
    from strandwise.interpret.attribution import attribute
    from strandwise.cli.evaluate import _track_names
    from strandwise.evaluate.predict import expected_counts, predict
    from strandwise.interpret.plots import plot_attribution_logo, plot_profiles
    from strandwise.io.atomic import atomic_path, atomic_write_text

    if n_shuffles < 1:
        raise ValueError(f"--n-shuffles must be >= 1; got {n_shuffles}")
    model = ctx.load_model()
    chroms = list(chroms or ctx.default_chroms())
    loci, mask = load_peaks(ctx, chroms, max_loci)
    ctx.say(f"{len(loci)} peaks on {', '.join(chroms)} (dropped {loci.dropped}); "
            f"{algorithm} of {output}, window {attr_window} bp")
    X = loci.X.float()
    ohe, attr = attribute(model, X, loci.X_ctl, algorithm=algorithm, output=output, group=group,
                          attr_window=attr_window, n_shuffles=n_shuffles, batch_size=batch_size,
                          random_state=random_state, progress=not ctx.quiet)
    os.makedirs(ctx.out_dir, exist_ok=True)
    for suffix, arr in ((ATTR_OHE, ohe), (ATTR_ATTR, attr)):
        with atomic_path(ctx.path(suffix), suffix=".npz") as tmp:
            np.savez_compressed(tmp, arr.numpy().astype(np.float32))
    rows = np.flatnonzero(mask)
    half = attr_window // 2
    lines = [f"{c}\t{m - half}\t{m - half + attr_window}\t{r}\n"
             for c, m, r in zip(loci.chrom.tolist(), loci.center.tolist(), rows.tolist())]
    atomic_write_text(ctx.path(ATTR_LOCI), "".join(lines))
    with atomic_path(ctx.path(ATTR_MASK), suffix=".npy") as tmp:
        np.save(tmp, mask)
    # Logos of the loci with the largest total contribution.
    logo_dir = ctx.path(".attributions_logos")
    prof_dir = ctx.path(".attributions_profiles")
    for d in (logo_dir, prof_dir):
        clear_pictures(d)
    imp = (ohe * attr).sum(dim=1).numpy()  # (n, W) per-position contribution
    span = min(attr_window, 150)  # the most important 150 bp, so logos stay legible
    kernel = np.ones(span)
    top = np.argsort(-imp.sum(axis=1), kind="stable")[:n_logos].tolist()
    # Predicted (expected counts) vs observed reads over the output window of the same loci.
    idx = torch.as_tensor(top, dtype=torch.long)
    logits, logcounts = predict(model, loci.X[idx].float(), None if loci.X_ctl is None else loci.X_ctl[idx],
                                batch_size=batch_size)
    expected = expected_counts(logits, logcounts, model.signal_groups).numpy()
    observed = loci.y[idx].numpy()
    track_names = [str(t) for t in _track_names(ctx.cfg)]
    track_names = track_names if len(track_names) == observed.shape[1] else None
    out_half = observed.shape[-1] // 2
    for k, i in enumerate(top):
        c, m = loci.chrom[i], int(loci.center[i])
        lo = int(np.argmax(np.convolve(np.abs(imp[i]), kernel, mode="valid")))
        g0 = m - half + lo
        name = f"{k:02d}_{c}_{g0}.png"
        plot_attribution_logo(ohe[i].numpy(), attr[i].numpy(), start=lo, end=lo + span,
                              title=f"{c}:{g0}-{g0 + span} (peak row {int(rows[i])})", offset=m - half,
                              path=os.path.join(logo_dir, name))
        plot_profiles(expected[k], observed[k], offset=m - out_half, labels=track_names,
                      title=f"{c}:{m - out_half}-{m - out_half + observed.shape[-1]} predicted vs observed "
                            f"(peak row {int(rows[i])})",
                      path=os.path.join(prof_dir, name))
    for s in (ATTR_OHE, ATTR_ATTR, ATTR_LOCI, ATTR_MASK):
        ctx.say(f"wrote {ctx.path(s)}")
    write_report(ctx)
    return ohe, attr, mask
