"""Shared pieces of the interpretation commands (``attribute``, ``seqlets``, ``motifs``,
``marginalize``, ``variants``): the fit config gives the genome, loci, splits, windows and the
default model path; outputs go to ``output_dir`` (or ``--output-dir``) as ``NAME.*``; every command
refreshes the report page ``NAME.interpret.html`` that links whatever outputs exist.
"""

from __future__ import annotations

import os

import numpy as np

from strandwise.cli.profile_config import load_fit_config

#: Files written by ``attribute`` (relative to the output folder, NAME-prefixed).
ATTR_OHE = ".attributions.ohe.npz"
ATTR_ATTR = ".attributions.attr.npz"
ATTR_LOCI = ".attributions.loci.bed"
ATTR_MASK = ".attributions.idxs.npy"


def add_common_arguments(p, model: bool = True) -> None:
    p.add_argument("config", help="the config used for fit (genome, loci, splits, windows)")
    if model:
        p.add_argument("--model", help="checkpoint (default: output_dir/NAME.torch)")
    p.add_argument("--output-dir", help="where outputs go (default: the config's output_dir)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")


class Context:
    """The config, the output folder and small helpers every command uses."""

    def __init__(self, args):
        self.cfg = load_fit_config(args.config)
        self.out_dir = os.path.abspath(getattr(args, "output_dir", None) or self.cfg.out_dir)
        self.name = self.cfg.name
        self.quiet = bool(getattr(args, "quiet", False))
        self.model_path = getattr(args, "model", None) or self.cfg.path(".torch")
        self.command = getattr(args, "command", "interpret")

    def path(self, suffix: str) -> str:
        return os.path.join(self.out_dir, f"{self.name}{suffix}")

    def say(self, *a) -> None:
        if not self.quiet:
            print(f"[{self.command}]", *a)

    def load_model(self):
        from strandwise.cli.evaluate import pick_device
        from strandwise.io.fasta import require_file
        from strandwise.models.cherimoya import Cherimoya

        require_file(self.model_path, "model checkpoint")
        model = Cherimoya.load(self.model_path, device=pick_device(self.cfg.evaluate.device))
        model.eval()
        in_w, out_w = self.cfg.data.in_window, self.cfg.data.out_window
        if in_w - 2 * model.trimming != out_w:
            raise ValueError(f"the model maps {in_w} bp to {in_w - 2 * model.trimming} outputs, "
                             f"not the config's out_window {out_w}")
        return model

    def default_chroms(self) -> list[str]:
        """Held-out chromosomes: validation + test."""
        d = self.cfg.data
        return list(dict.fromkeys(list(d.validation_chroms) + list(d.test_chroms)))


def kept_rows(in_chrom, in_mid, out_chrom, out_mid) -> np.ndarray:
    """Boolean mask over the input loci of the rows an order-preserving filter kept.

    ``extract_loci`` keeps an order-preserving subsequence of its input; rows with the same
    ``(chrom, mid)`` share every filter decision (same windows, same signal), so greedy matching
    recovers the kept rows exactly, whatever was dropped (chromosome ends, exclusion, counts).

    Raises
    ------
    ValueError
        If the output is not a subsequence of the input (would mean a filter reordered rows).
    """
    mask = np.zeros(len(in_chrom), bool)
    j, n_out = 0, len(out_chrom)
    for i in range(len(in_chrom)):
        if j < n_out and in_chrom[i] == out_chrom[j] and int(in_mid[i]) == int(out_mid[j]):
            mask[i] = True
            j += 1
    if j != n_out:
        raise ValueError("internal error: extracted loci are not an ordered subset of the loci file")
    return mask


def load_peaks(ctx: Context, chroms, max_loci: int | None = None, negatives: bool = False):
    """Extract the peaks (or the negatives) on ``chroms`` as ``ProfileLoci`` without jitter.

    Returns
    -------
    loci : ProfileLoci
    mask : np.ndarray of bool, shape (rows of the loci file,)
        ``True`` for the rows in ``loci`` (chromosome-end / exclusion / count drops and the
        ``max_loci`` cap composed into one mask over the file's rows).
    """
    from strandwise.data.loci import extract_loci
    from strandwise.io.bigwig import SignalTracks
    from strandwise.io.fasta import Genome
    from strandwise.io.intervals import read_exclusion_lists, read_peaks

    d = ctx.cfg.data
    if negatives:
        if not d.negatives:
            raise ValueError("the config has no data.negatives file (backgrounds for marginalize)")
        iv = read_peaks(d.negatives, what="negatives file")
        iv.summit[:] = -1
    else:
        iv = read_peaks(d.loci)
    if max_loci is not None and max_loci < 1:
        raise ValueError(f"--max-loci must be >= 1; got {max_loci}")
    tracks, groups = d.signal_spec
    ctl_tracks, cgroups = d.control_spec
    genome, signals = Genome(d.sequences), SignalTracks(tracks)
    controls = SignalTracks(ctl_tracks) if ctl_tracks else None
    try:
        genome.check_chroms(chroms, "--chroms")
        loci = extract_loci(
            genome, iv, signals, controls, in_window=d.in_window, out_window=d.out_window,
            max_jitter=0, summits=d.summits and not negatives, chroms=chroms,
            exclusion=read_exclusion_lists(d.exclusion_lists),
            min_counts=None if negatives else d.min_counts, max_counts=None if negatives else d.max_counts,
            labels=np.full(len(iv), 0 if negatives else 1, np.int8),
            signal_groups=groups, control_groups=cgroups, verbose=not ctx.quiet,
            what="negatives" if negatives else "peaks")
    finally:
        genome.close()
        signals.close()
        if controls is not None:
            controls.close()
    mids = iv.centers(d.summits and not negatives)
    mask = kept_rows(iv.chrom, mids, loci.chrom, loci.center)
    if max_loci is not None and len(loci) > max_loci:
        loci = loci.subset(np.arange(max_loci))
        mask[np.flatnonzero(mask)[max_loci:]] = False
    if len(loci) == 0:
        raise ValueError(f"no {'negatives' if negatives else 'peaks'} left on {', '.join(chroms)} "
                         f"after dropping {loci.dropped}")
    return loci, mask


def clear_pictures(folder: str) -> None:
    """Remove the PNGs an earlier run wrote into ``folder`` (other files stay), so pictures of a
    previous run never pass for this run's."""
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            if f.endswith(".png"):
                os.remove(os.path.join(folder, f))


def load_npz(path) -> np.ndarray:
    from strandwise.io.fasta import require_file

    with np.load(require_file(path, "attribution file (run strandwise attribute first)")) as z:
        if "arr_0" not in z:
            raise ValueError(f"{path} has no array 'arr_0'")
        return z["arr_0"]


def read_attr_loci(path):
    """``(chroms, mids, rows)`` of an ``attribute`` loci BED (mid = start + width//2)."""
    from strandwise.io.fasta import require_file

    chroms, mids, rows = [], [], []
    with open(require_file(path, "attribution loci BED (run strandwise attribute first)")) as fh:
        for line in fh:
            f = line.split("\t")
            s, e = int(f[1]), int(f[2])
            chroms.append(f[0])
            mids.append(s + (e - s) // 2)
            rows.append(int(f[3]))
    return chroms, np.array(mids, np.int64), np.array(rows, np.int64)


def load_attributions(ctx: Context):
    """``ohe, attr (n, 4, W)`` float32 and ``chroms, mids`` from the ``attribute`` outputs."""
    ohe = load_npz(ctx.path(ATTR_OHE)).astype(np.float32)
    attr = load_npz(ctx.path(ATTR_ATTR)).astype(np.float32)
    if ohe.shape != attr.shape or ohe.ndim != 3 or ohe.shape[1] != 4:
        raise ValueError(f"{ctx.path(ATTR_OHE)} {ohe.shape} and {ctx.path(ATTR_ATTR)} {attr.shape} "
                         "must both be (n, 4, W)")
    chroms, mids, _ = read_attr_loci(ctx.path(ATTR_LOCI))
    if len(chroms) != ohe.shape[0]:
        raise ValueError(f"{ctx.path(ATTR_LOCI)} has {len(chroms)} loci but the attributions {ohe.shape[0]}")
    return ohe, attr, chroms, mids


def resolve_motifs(spec: str | None, ctx: Context) -> str | None:
    """A MEME path from ``--motifs``: a file, or ``jaspar[:TAX_GROUP[:RELEASE]]`` (pyjaspar's
    offline JASPAR CORE, written to ``output_dir/jaspar_TAXGROUP_RELEASE.meme``)."""
    if spec is None:
        return None
    if spec.lower().startswith("jaspar") and not os.path.exists(spec):
        from strandwise.interpret.motifs_db import DEFAULT_JASPAR_RELEASE, jaspar_meme

        parts = spec.split(":")
        if parts[0].lower() != "jaspar" or len(parts) > 3:
            raise ValueError(f"--motifs {spec!r}: use a MEME file or jaspar[:TAX_GROUP[:RELEASE]]")
        tax = parts[1] if len(parts) > 1 and parts[1] else "fungi"
        release = parts[2] if len(parts) > 2 else DEFAULT_JASPAR_RELEASE
        path = os.path.join(ctx.out_dir, f"jaspar_{tax}_{release}.meme")
        if not os.path.exists(path):
            os.makedirs(ctx.out_dir, exist_ok=True)
            jaspar_meme(path, tax_group=None if tax == "all" else tax, release=release)
            ctx.say(f"wrote {path}")
        return path
    from strandwise.io.fasta import require_file

    return require_file(spec, "MEME motif file")


# ------------------------------------------------------------------------------------- report
def _read_tsv(path, max_rows=None):
    with open(path) as fh:
        lines = [l.rstrip("\n").split("\t") for l in fh if l.strip()]
    if not lines:
        return [], []
    head, rows = lines[0], lines[1:]
    return head, [dict(zip(head, r)) for r in rows[:max_rows]]


def write_report(ctx: Context) -> str:
    """(Re)write ``NAME.interpret.html`` linking every interpretation output that exists."""
    from strandwise.interpret.report import HTMLReport

    p = ctx.path
    rep = HTMLReport(f"{ctx.name}: what did the model learn?")
    rep.add_text(f"Model: {ctx.model_path}. Pages and files below are written by strandwise "
                 "attribute / seqlets / motifs / marginalize / variants; rerun any of them to refresh.")
    if os.path.exists(p(ATTR_ATTR)) or os.path.isdir(p(".attributions_logos")):
        rep.add_heading("Attributions")
        for s in (ATTR_OHE, ATTR_ATTR, ATTR_LOCI, ATTR_MASK):
            if os.path.exists(p(s)):
                rep.add_link(p(s))
        logos = p(".attributions_logos")
        profiles = p(".attributions_profiles")
        if os.path.isdir(logos):
            for f in sorted(os.listdir(logos))[:6]:
                rep.add_image(os.path.join(logos, f), caption=f"{f[:-4]}: contributions")
                if os.path.exists(os.path.join(profiles, f)):
                    rep.add_image(os.path.join(profiles, f), caption=f"{f[:-4]}: predicted vs observed")
    if os.path.exists(p(".seqlets.bed")):
        rep.add_heading("Seqlets")
        rep.add_link(p(".seqlets.bed"))
        if os.path.exists(p(".seqlets_annotated.bed")):
            rep.add_link(p(".seqlets_annotated.bed"))
        if os.path.exists(p(".seqlet_clusters.tsv")):
            head, rows = _read_tsv(p(".seqlet_clusters.tsv"), 25)
            rep.add_text("Seqlets grouped by their best tomtom match; each group's contribution "
                         "matrix (aligned on the motif) is matched again against the whole database.")
            rep.add_table(rows, [c for c in head if c != "logo"], tsv=p(".seqlet_clusters.tsv"),
                          max_rows=25)
            for r in rows[:12]:
                if r.get("logo") and os.path.exists(os.path.join(ctx.out_dir, r["logo"])):
                    rep.add_image(os.path.join(ctx.out_dir, r["logo"]), caption=r["motif"])
        if os.path.exists(p(".motif_seqlet_count.tsv")):
            rep.add_link(p(".motif_seqlet_count.tsv"), "seqlets per motif (TSV)")
    # the results file is linked with or without a database (no --motifs: no pattern table)
    if os.path.exists(p(".modisco_patterns.tsv")) or os.path.exists(p("_modisco_results.h5")):
        rep.add_heading("TF-MoDISco patterns")
        if os.path.exists(p(".modisco_patterns.tsv")):
            head, rows = _read_tsv(p(".modisco_patterns.tsv"), 40)
            rep.add_table(rows, [c for c in head if c != "logo"], tsv=p(".modisco_patterns.tsv"))
            for r in rows[:20]:
                if r.get("logo") and os.path.exists(os.path.join(ctx.out_dir, r["logo"])):
                    rep.add_image(os.path.join(ctx.out_dir, r["logo"]), caption=r["pattern"])
        if os.path.exists(os.path.join(ctx.out_dir, f"{ctx.name}_modisco", "motifs.html")):
            rep.add_link(os.path.join(ctx.out_dir, f"{ctx.name}_modisco", "motifs.html"),
                         "modisco-lite's own report")
        if os.path.exists(p("_modisco_results.h5")):
            rep.add_link(p("_modisco_results.h5"))
    marg = os.path.join(ctx.out_dir, f"{ctx.name}_marginalize", f"{ctx.name}.marginalize.html")
    if os.path.exists(marg):
        rep.add_heading("Marginalization")
        rep.add_link(marg, "motifs inserted into negatives")
    var = os.path.join(ctx.out_dir, f"{ctx.name}_variants", f"{ctx.name}.variants.html")
    if os.path.exists(var):
        rep.add_heading("Variant effects")
        rep.add_link(var, "variant effects")
    return rep.write(p(".interpret.html"))
