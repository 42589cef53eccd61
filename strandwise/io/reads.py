"""Reads → base-resolution tracks (Tn5 insertions or coverage) and peak calling.

Supported inputs
----------------
* **Fragments** (``chrom start end [...]``, BED-like, optional gzip): one row per sequenced
  fragment, as in 10x ``fragments.tsv.gz`` or MACS' 3-column ``BEDPE`` files.
* **BEDPE** with ≥ 6 columns (``chrom1 start1 end1 chrom2 start2 end2 ...``): the fragment spans
  ``min(start1, start2)`` to ``max(end1, end2)``; pairs on different chromosomes are skipped.
* **BAM/SAM/CRAM** (pysam): every mapped primary read, not a duplicate nor QC-failed, with
  MAPQ ≥ ``min_mapq``, contributes its 5' end; for paired-end data the two 5' ends are the two
  fragment ends, so the same rule gives Tn5 insertions for both layouts.

Insertion positions (0-based)
-----------------------------
A fragment ``[start, end)`` has its ``+`` end at ``start`` and its ``−`` end at ``end − 1``; a read
on ``+`` has its 5' end at ``reference_start``, on ``−`` at ``reference_end − 1``. ``shift =
(pos_shift, neg_shift)`` is added to the ``+`` and ``−`` positions; ``shift="atac"`` is the ATAC
convention ``(+4, −4)`` of spec §5.5 (centres the insertion on the Tn5 dimer). Positions that fall
outside the chromosome after shifting are dropped and counted.

Peak calling
------------
:func:`call_peaks` runs MACS3 when it is installed (``method="auto"``) and otherwise a small
built-in caller, :func:`call_peaks_pileup` (documented in ``docs/data.md``): a smoothed insertion
pileup tested against a Poisson background ``max(genome mean, 10 kb local mean)``, Benjamini–Hochberg
q-values over positions, significant runs merged into peaks with their summit at the pileup maximum.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import shutil
import subprocess
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np

from strandwise.io.fasta import check_chroms_present, read_chrom_sizes, require_file
from strandwise.io.intervals import Intervals, read_bed, write_narrowpeak

__all__ = [
    "ATAC_SHIFT",
    "TrackSummary",
    "count_insertions",
    "fragment_coverage",
    "mask_tracks",
    "reads_to_bigwig",
    "stranded_paths",
    "call_peaks",
    "call_peaks_pileup",
    "call_peaks_macs3",
    "macs3_available",
]

#: ``(pos_shift, neg_shift)`` of the ATAC convention (spec §5.5).
ATAC_SHIFT = (4, -4)


@dataclasses.dataclass
class TrackSummary:
    """What a conversion did.

    Attributes
    ----------
    paths : list[str]
        Files written (``[unstranded]`` or ``[plus, minus]``); empty when nothing was written.
    n_records : int
        Fragments or reads used.
    n_events : int
        Insertions (or covered bases, for coverage) added to the tracks before masking.
    n_out_of_bounds : int
        Insertions dropped because the shifted position left the chromosome.
    n_unknown_chrom : int
        Records on chromosomes not in ``chrom_sizes`` (only with ``skip_unknown_chroms=True``).
    n_masked : float
        Signal removed by masking (sum of values zeroed).
    """

    paths: list
    n_records: int = 0
    n_events: int = 0
    n_out_of_bounds: int = 0
    n_unknown_chrom: int = 0
    n_masked: float = 0.0


def _parse_shift(shift) -> tuple[int, int]:
    if shift is None:
        return 0, 0
    if isinstance(shift, str):
        if shift.lower() == "atac":
            return ATAC_SHIFT
        raise ValueError(f"shift must be 'atac' or a (pos_shift, neg_shift) pair; got {shift!r}")
    try:
        a, b = shift
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(
            f"shift must be 'atac' or a (pos_shift, neg_shift) pair of ints; got {shift!r}") from None


def _detect_format(path: str) -> str:
    low = path.lower()
    if low.endswith((".bam", ".sam", ".cram")):
        return "bam"
    with _open_text(path) as fh:
        for line in fh:
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            parts = line.split()
            if len(parts) >= 6 and parts[4].lstrip("-").isdigit() and parts[5].lstrip("-").isdigit() \
                    and not parts[3].lstrip("-").isdigit():
                return "bedpe"
            return "fragments"
    return "fragments"


def _open_text(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rt") if magic == b"\x1f\x8b" else open(path)


def _iter_fragment_chunks(path: str, fmt: str, chunk: int = 1_000_000):
    """Yield ``(chroms list, starts int64, ends int64)`` chunks of fragments."""
    chroms, starts, ends = [], [], []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            p = line.split("\t") if "\t" in line else line.split()
            try:
                if fmt == "bedpe":
                    if len(p) < 6:
                        raise IndexError
                    if p[0] != p[3]:
                        continue  # mates on different chromosomes: no fragment
                    s = min(int(p[1]), int(p[4]))
                    e = max(int(p[2]), int(p[5]))
                else:
                    s, e = int(p[1]), int(p[2])
            except (ValueError, IndexError):
                raise ValueError(
                    f"{path}:{lineno}: cannot parse as {fmt} (expected "
                    f"{'chrom1 start1 end1 chrom2 start2 end2' if fmt == 'bedpe' else 'chrom start end'})"
                ) from None
            if e <= s:
                raise ValueError(f"{path}:{lineno}: fragment end {e} is not after start {s}")
            chroms.append(p[0])
            starts.append(s)
            ends.append(e)
            if len(chroms) >= chunk:
                yield chroms, np.array(starts, np.int64), np.array(ends, np.int64)
                chroms, starts, ends = [], [], []
    if chroms:
        yield chroms, np.array(starts, np.int64), np.array(ends, np.int64)


def _group_by_chrom(chroms: list, *arrays):
    """Split parallel arrays by chromosome name: ``{chrom: (arr0[rows], arr1[rows], ...)}``."""
    names = np.asarray(chroms, dtype=object)
    uniq, inv = np.unique(names.astype(str), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    out = {}
    for k, c in enumerate(uniq):
        rows = order[bounds[k]:bounds[k + 1]]
        out[str(c)] = tuple(a[rows] for a in arrays)
    return out


class _Accumulator:
    """Per-chromosome integer count arrays, allocated on first use (float32 at the end)."""

    def __init__(self, chrom_sizes, rename, skip_unknown, source):
        self.sizes = chrom_sizes
        self.rename = dict(rename or {})
        self.skip_unknown = skip_unknown
        self.source = source
        self.counts: dict[str, np.ndarray] = {}
        self.n_out = 0
        self.n_unknown = 0
        self.n_events = 0

    def resolve(self, chrom: str, n: int) -> str | None:
        c = self.rename.get(chrom, chrom)
        if c not in self.sizes:
            if self.skip_unknown:
                self.n_unknown += n
                return None
            check_chroms_present([c], self.sizes, self.source, "the chromosome sizes / genome")
        return c

    def add_points(self, chrom: str, pos: np.ndarray):
        size = self.sizes[chrom]
        ok = (pos >= 0) & (pos < size)
        self.n_out += int((~ok).sum())
        pos = pos[ok]
        self.n_events += len(pos)
        arr = self.counts.get(chrom)
        if arr is None:
            arr = self.counts[chrom] = np.zeros(size, np.int64)
        arr += np.bincount(pos, minlength=size)

    def add_spans(self, chrom: str, starts: np.ndarray, ends: np.ndarray):
        size = self.sizes[chrom]
        s = np.clip(starts, 0, size)
        e = np.clip(ends, 0, size)
        self.n_events += int((e - s).sum())
        arr = self.counts.get(chrom)
        if arr is None:
            arr = self.counts[chrom] = np.zeros(size, np.int64)
        # Difference array: +1 at start, −1 at end, then cumsum gives coverage.
        diff = np.bincount(s, minlength=size + 1) - np.bincount(e, minlength=size + 1)
        arr += np.cumsum(diff[:size])

    def tracks(self) -> dict[str, np.ndarray]:
        return {c: self.counts[c].astype(np.float32) if c in self.counts else np.zeros(s, np.float32)
                for c, s in self.sizes.items()}


def _bam_reads(path: str, min_mapq: int):
    """Yield ``(chrom, five_prime_pos, is_minus, ref_start, ref_end, is_read1, tlen)`` chunks."""
    import pysam

    mode = "rb" if path.lower().endswith(".bam") else ("rc" if path.lower().endswith(".cram") else "r")
    try:
        fh = pysam.AlignmentFile(path, mode)
    except Exception as exc:
        raise ValueError(f"cannot read alignments from {path}: {exc}") from None
    with fh:
        for read in fh.fetch(until_eof=True):
            if (read.is_unmapped or read.is_secondary or read.is_supplementary or read.is_duplicate
                    or read.is_qcfail or read.mapping_quality < min_mapq):
                continue
            yield read


def count_insertions(
    inputs: str | Sequence[str],
    chrom_sizes,
    *,
    fmt: str = "auto",
    shift=(0, 0),
    stranded: bool = False,
    rename: Mapping[str, str] | None = None,
    skip_unknown_chroms: bool = False,
    min_mapq: int = 0,
) -> tuple[list[dict[str, np.ndarray]], TrackSummary]:
    """Count Tn5 insertions (read 5' ends / fragment ends) per base.

    Parameters
    ----------
    inputs : path or list of paths
        Fragments, BEDPE or BAM/SAM/CRAM files (mixed allowed).
    chrom_sizes : mapping, FASTA path, ``.fai`` or chrom.sizes
        Target chromosomes (after renaming).
    fmt : {'auto', 'fragments', 'bedpe', 'bam'}
    shift : (int, int) or 'atac'
        Added to ``+`` and ``−`` insertion positions; ``'atac'`` = ``(+4, −4)``.
    stranded : bool
        Separate ``+`` and ``−`` tracks (fragment start / end; read strand for BAM).
    rename : mapping, optional
        Input chromosome name → target name, e.g. ``{'chrI': 'I', 'chrM': 'Mito'}``.
    skip_unknown_chroms : bool
        Skip (and count) records whose chromosome is not in ``chrom_sizes`` instead of raising.
    min_mapq : int
        BAM only: minimum mapping quality.

    Returns
    -------
    tracks : list of dict chrom -> float32 array (chrom_size,)
        One dict (unstranded) or two (``+``, ``−``).
    summary : TrackSummary
        Counts (``paths`` empty).
    """
    return _convert(inputs, chrom_sizes, "insertion", fmt, shift, stranded, rename,
                    skip_unknown_chroms, min_mapq)


def fragment_coverage(
    inputs: str | Sequence[str],
    chrom_sizes,
    *,
    fmt: str = "auto",
    rename: Mapping[str, str] | None = None,
    skip_unknown_chroms: bool = False,
    min_mapq: int = 0,
) -> tuple[dict[str, np.ndarray], TrackSummary]:
    """Per-base fragment coverage (how many fragments span each base; unstranded).

    BAM input: proper pairs contribute their fragment (from the leftmost mate's start over the
    template length); unpaired reads contribute their aligned span.
    """
    tracks, summary = _convert(inputs, chrom_sizes, "coverage", fmt, (0, 0), False, rename,
                               skip_unknown_chroms, min_mapq)
    return tracks[0], summary


def _convert(inputs, chrom_sizes, mode, fmt, shift, stranded, rename, skip_unknown, min_mapq):
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [require_file(p, "reads file") for p in inputs]
    if not inputs:
        raise ValueError("no reads files given")
    if fmt not in ("auto", "fragments", "bedpe", "bam"):
        raise ValueError(f"fmt must be one of auto, fragments, bedpe, bam; got {fmt!r}")
    pos_shift, neg_shift = _parse_shift(shift)
    sizes = read_chrom_sizes(chrom_sizes)
    n_strands = 2 if stranded else 1
    accs = [_Accumulator(sizes, rename, skip_unknown, "") for _ in range(n_strands)]
    n_records = 0
    for path in inputs:
        f = _detect_format(path) if fmt == "auto" else fmt
        for a in accs:
            a.source = f"reads file {path}"
        if f == "bam":
            n_records += _convert_bam(path, accs, mode, pos_shift, neg_shift, min_mapq)
            continue
        for chroms, starts, ends in _iter_fragment_chunks(path, f):
            n_records += len(chroms)
            for chrom, (s, e) in _group_by_chrom(chroms, starts, ends).items():
                c = accs[0].resolve(chrom, len(s))
                if c is None:
                    continue
                if mode == "coverage":
                    accs[0].add_spans(c, s, e)
                else:
                    plus, minus = s + pos_shift, e - 1 + neg_shift
                    if stranded:
                        accs[0].add_points(c, plus)
                        accs[1].add_points(c, minus)
                    else:
                        accs[0].add_points(c, np.concatenate([plus, minus]))
    summary = TrackSummary(
        paths=[], n_records=n_records, n_events=sum(a.n_events for a in accs),
        n_out_of_bounds=sum(a.n_out for a in accs), n_unknown_chrom=accs[0].n_unknown)
    if summary.n_out_of_bounds:
        warnings.warn(f"{summary.n_out_of_bounds} insertions fell outside their chromosome after "
                      f"shifting and were dropped", stacklevel=3)
    if summary.n_unknown_chrom:
        warnings.warn(f"{summary.n_unknown_chrom} records on chromosomes not in the genome were "
                      f"skipped", stacklevel=3)
    return [a.tracks() for a in accs], summary


def _convert_bam(path, accs, mode, pos_shift, neg_shift, min_mapq) -> int:
    n = 0
    buf: dict[str, list] = {}

    def flush():
        for chrom, rows in buf.items():
            c = accs[0].resolve(chrom, len(rows))
            if c is None:
                continue
            arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
            if mode == "coverage":
                accs[0].add_spans(c, arr[:, 0], arr[:, 1])
            else:
                pos, minus = arr[:, 0], arr[:, 2].astype(bool)
                if len(accs) == 2:
                    accs[0].add_points(c, pos[~minus])
                    accs[1].add_points(c, pos[minus])
                else:
                    accs[0].add_points(c, pos)
        buf.clear()

    for k, read in enumerate(_bam_reads(path, min_mapq), 1):
        chrom = read.reference_name
        if mode == "coverage":
            if read.is_paired:
                # One fragment per proper pair, taken from the leftmost mate.
                if not read.is_proper_pair or read.template_length <= 0:
                    continue
                row = (read.reference_start, read.reference_start + read.template_length, 0)
            else:
                row = (read.reference_start, read.reference_end, 0)
        else:
            if read.is_reverse:
                row = (read.reference_end - 1 + neg_shift, 0, 1)
            else:
                row = (read.reference_start + pos_shift, 0, 0)
        buf.setdefault(chrom, []).extend(row)
        n += 1
        if k % 1_000_000 == 0:
            flush()
    flush()
    return n


def mask_tracks(tracks: Mapping[str, np.ndarray], regions=None, chroms: Iterable[str] = ()) -> float:
    """Zero ``tracks`` in place inside ``regions`` and on whole ``chroms``.

    Parameters
    ----------
    tracks : mapping chrom -> array
    regions : Intervals, BED path, or list of ``(chrom, start, end)``, optional
        Base-exact regions (e.g. the yeast chrXII rDNA repeat).
    chroms : iterable of str
        Chromosomes zeroed entirely (e.g. ``chrM``).

    Returns
    -------
    float
        Total signal removed.
    """
    removed = 0.0
    for c in chroms:
        if c in tracks:
            removed += float(tracks[c].sum())
            tracks[c][:] = 0
    if regions is None:
        return removed
    if isinstance(regions, (str, os.PathLike)):
        regions = read_bed(regions, what="mask BED")
    if not isinstance(regions, Intervals):
        rows = list(regions)
        regions = Intervals([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    for c, s, e in zip(regions.chrom, regions.start, regions.end):
        if c in tracks:
            seg = tracks[c][max(0, s):max(0, e)]
            removed += float(seg.sum())
            seg[:] = 0
    return removed


def stranded_paths(output: str | os.PathLike) -> tuple[str, str]:
    """``name.bw`` → ``(name.+.bw, name.-.bw)`` (the spec's stranded pair naming)."""
    out = os.fspath(output)
    stem = out[:-3] if out.endswith(".bw") else (out[:-7] if out.endswith(".bigWig") else out)
    return stem + ".+.bw", stem + ".-.bw"


def reads_to_bigwig(
    inputs: str | Sequence[str],
    output: str | os.PathLike,
    chrom_sizes,
    *,
    mode: str = "insertion",
    fmt: str = "auto",
    shift=(0, 0),
    stranded: bool = False,
    rename: Mapping[str, str] | None = None,
    mask=None,
    mask_chroms: Iterable[str] = (),
    scale: float = 1.0,
    skip_unknown_chroms: bool = False,
    min_mapq: int = 0,
) -> TrackSummary:
    """Convert fragments / BEDPE / BAM into a base-resolution bigWig (atomic writes).

    Parameters
    ----------
    inputs, chrom_sizes, fmt, shift, stranded, rename, skip_unknown_chroms, min_mapq
        As in :func:`count_insertions`.
    output : path
        ``name.bw``; with ``stranded=True`` the pair ``name.+.bw`` / ``name.-.bw`` is written.
    mode : {'insertion', 'coverage'}
        Tn5 insertion counts (5' ends) or fragment coverage (unstranded only).
    mask : Intervals, BED path or list of (chrom, start, end), optional
        Regions set to 0 (e.g. yeast chrXII rDNA ``chrXII:450000-470000``).
    mask_chroms : iterable of str
        Chromosomes set to 0 entirely (e.g. ``['chrM']``); they stay in the header so the bigWig's
        chromosomes still match the genome.
    scale : float
        Multiply all values (e.g. reads-per-million normalisation).

    Returns
    -------
    TrackSummary
    """
    from strandwise.io.bigwig import write_bigwig

    if mode not in ("insertion", "coverage"):
        raise ValueError(f"mode must be 'insertion' or 'coverage'; got {mode!r}")
    if mode == "coverage" and stranded:
        raise ValueError("coverage tracks are unstranded; use mode='insertion' for stranded tracks")
    sizes = read_chrom_sizes(chrom_sizes)
    if mode == "coverage":
        track, summary = fragment_coverage(inputs, sizes, fmt=fmt, rename=rename,
                                           skip_unknown_chroms=skip_unknown_chroms, min_mapq=min_mapq)
        tracks = [track]
    else:
        tracks, summary = count_insertions(inputs, sizes, fmt=fmt, shift=shift, stranded=stranded,
                                           rename=rename, skip_unknown_chroms=skip_unknown_chroms,
                                           min_mapq=min_mapq)
    for t in tracks:
        summary.n_masked += mask_tracks(t, mask, mask_chroms)
        if scale != 1.0:
            for v in t.values():
                v *= np.float32(scale)
    paths = [os.fspath(output)] if len(tracks) == 1 else list(stranded_paths(output))
    for p, t in zip(paths, tracks):
        write_bigwig(p, sizes, t)
    summary.paths = paths
    return summary


# ----------------------------------------------------------------------------------------------
# Peak calling


def macs3_available() -> bool:
    """Whether the ``macs3`` executable is on PATH."""
    return shutil.which("macs3") is not None


def call_peaks_macs3(
    inputs: str | Sequence[str],
    outdir: str | os.PathLike,
    name: str,
    *,
    fmt: str = "BEDPE",
    genome_size: str | float = "hs",
    qvalue: float = 0.05,
    controls: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> str:
    """Run ``macs3 callpeak`` (spec §5.5) and return the path of ``NAME_peaks.narrowPeak``.

    ``fmt`` is MACS3's ``-f`` (``BEDPE`` for fragment-pair files, ``FRAG`` for 10x fragments,
    ``BAMPE``, ``BAM``...); ``genome_size`` its ``-g`` (``'hs'`` or a number, ~1.2e7 for yeast).
    """
    if not macs3_available():
        raise FileNotFoundError("macs3 is not installed (pip install macs3), or use method='pileup'")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [require_file(p, "reads file") for p in inputs]
    os.makedirs(outdir, exist_ok=True)
    gsize = genome_size if isinstance(genome_size, str) else f"{float(genome_size):.6g}"
    cmd = ["macs3", "callpeak", "-f", fmt, "-g", gsize, "-n", name, "-q", str(qvalue),
           "--outdir", os.fspath(outdir), "-t", *inputs]
    if controls:
        cmd += ["-c", *controls]
    if fmt == "FRAG":
        cmd += ["--max-count", "1"]
    cmd += list(extra_args)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise RuntimeError(f"macs3 callpeak failed (exit {res.returncode}): {tail[0]}")
    return os.path.join(os.fspath(outdir), f"{name}_peaks.narrowPeak")


def _box_sum(x: np.ndarray, width: int) -> np.ndarray:
    """Sum of ``x`` over ``[i − width//2, i − width//2 + width)`` for every ``i`` (zero padded)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    n = len(x)
    lo = np.clip(np.arange(n) - width // 2, 0, n)
    hi = np.clip(np.arange(n) - width // 2 + width, 0, n)
    return c[hi] - c[lo]


def call_peaks_pileup(
    tracks: Mapping[str, np.ndarray],
    *,
    smooth: int = 150,
    local: int = 10_000,
    qvalue: float = 0.05,
    min_length: int = 100,
    max_gap: int = 50,
    exclude_chroms: Iterable[str] = (),
) -> tuple[Intervals, dict]:
    """Built-in peak caller on a per-base insertion (or coverage) track.

    Algorithm (no control track):

    1. Pileup ``p(x)`` = insertions in a ``smooth``-bp window centred on ``x``.
    2. Expected ``λ(x) = max(λ_genome, λ_local(x))`` where ``λ_genome`` is the mean pileup over
       the callable genome (non-excluded chromosomes, masked zeros included) and ``λ_local`` the
       mean insertion rate over a ``local``-bp window times ``smooth`` — the MACS idea of a local
       Poisson background, which stops broad enriched domains from calling as one peak each base.
    3. p-value ``P(Poisson(λ) ≥ p)`` per base; Benjamini–Hochberg q-values over all bases.
    4. Bases with ``q ≤ qvalue`` form runs; runs closer than ``max_gap`` merge; runs shorter than
       ``min_length`` are dropped. The summit is the pileup maximum (first on ties).

    Parameters
    ----------
    tracks : mapping chrom -> array
        Per-base insertion counts (masked regions already zero).

    Returns
    -------
    peaks : Intervals
        Sorted by chromosome (input order) then start; ``summit`` set.
    stats : dict
        ``'fold'``, ``'mlog10p'``, ``'mlog10q'`` arrays at the summits, and ``'lambda_genome'``.
    """
    from scipy.stats import poisson

    chroms = [c for c in tracks if c not in set(exclude_chroms)]
    if not chroms:
        raise ValueError("no chromosomes to call peaks on")
    piles = {c: _box_sum(np.asarray(tracks[c], np.float64), smooth) for c in chroms}
    total_len = sum(len(tracks[c]) for c in chroms)
    lam_g = sum(float(np.asarray(tracks[c], np.float64).sum()) for c in chroms) * smooth / total_len
    logp = {}
    lams = {}
    for c in chroms:
        loc = _box_sum(np.asarray(tracks[c], np.float64), local) * (smooth / local)
        lam = np.maximum(lam_g, loc)
        lams[c] = lam
        # −log10 P(X ≥ k) = −log10 sf(k − 1); logsf keeps precision in the far tail. Only bases
        # with pileup above λ can be significant (their p < ~0.5); the rest get p = 1, which
        # leaves every BH q-value below 0.4 unchanged (they rank after all candidates) and saves
        # evaluating the tail on most of the genome.
        mlp = np.zeros(len(lam))
        cand = piles[c] > lam
        mlp[cand] = -poisson.logsf(piles[c][cand] - 1, lam[cand]) / math.log(10)
        logp[c] = mlp
    # Benjamini–Hochberg over all m bases: q_(i) = min_{j ≥ i} p_(j) · m / j (ranks by increasing
    # p), done in −log10 space on the candidates only (non-candidates rank last with p = 1).
    m = sum(len(logp[c]) for c in chroms)
    cand_vals = np.concatenate([logp[c][logp[c] > 0] for c in chroms])
    order = np.argsort(-cand_vals, kind="stable")
    ranks = np.empty(len(order), np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    q_sorted = cand_vals[order] - np.log10(m / np.arange(1, len(order) + 1))
    # q_(i) = min_{j >= i} (...) in p-space is a running max from the end in −log10 space.
    q_sorted = np.maximum.accumulate(q_sorted[::-1])[::-1]
    q_cand = np.clip(q_sorted[ranks - 1], 0, None)
    q_all = np.zeros(m)
    q_all[np.concatenate([logp[c] > 0 for c in chroms])] = q_cand
    thr = -math.log10(qvalue)
    out_c, out_s, out_e, out_sum, fold, mlp, mlq = [], [], [], [], [], [], []
    off = 0
    for c in chroms:
        n = len(tracks[c])
        q = q_all[off:off + n]
        off += n
        sig = q >= thr
        if not sig.any():
            continue
        edges = np.diff(np.concatenate([[0], sig.astype(np.int8), [0]]))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        # merge runs separated by small gaps
        keep = np.concatenate([[True], starts[1:] - ends[:-1] > max_gap])
        ms = starts[keep]
        me = np.maximum.reduceat(ends, np.flatnonzero(keep))
        long_enough = me - ms >= min_length
        for s, e in zip(ms[long_enough], me[long_enough]):
            seg = piles[c][s:e]
            k = int(np.argmax(seg))
            out_c.append(c)
            out_s.append(int(s))
            out_e.append(int(e))
            out_sum.append(k)
            fold.append(float(seg[k] / lams[c][s + k]))
            mlp.append(float(logp[c][s + k]))
            mlq.append(float(q[s + k]))
    peaks = Intervals(np.array(out_c, dtype=object), out_s, out_e, out_sum)
    stats = {"fold": np.array(fold), "mlog10p": np.array(mlp), "mlog10q": np.array(mlq),
             "lambda_genome": lam_g}
    return peaks, stats


def call_peaks(
    inputs: str | Sequence[str],
    output: str | os.PathLike,
    chrom_sizes,
    *,
    method: str = "auto",
    fmt: str = "auto",
    genome_size: float | str = "hs",
    qvalue: float = 0.05,
    rename: Mapping[str, str] | None = None,
    mask=None,
    mask_chroms: Iterable[str] = (),
    **pileup_kwargs,
) -> tuple[str, str]:
    """Call peaks on reads and write a narrowPeak file (atomically).

    Parameters
    ----------
    inputs : path(s)
        Fragments / BEDPE / BAM.
    output : path
        narrowPeak to write.
    method : {'auto', 'macs3', 'pileup'}
        ``'auto'`` uses MACS3 when installed, else the built-in :func:`call_peaks_pileup`.
    genome_size : float or str
        MACS3 ``-g``.
    rename, mask, mask_chroms
        For the built-in caller: as in :func:`reads_to_bigwig`. (MACS3 reads the input as is;
        peaks in ``mask``/``mask_chroms`` are removed from its output.)

    Returns
    -------
    (path, method_used)
    """
    if method not in ("auto", "macs3", "pileup"):
        raise ValueError(f"method must be auto, macs3 or pileup; got {method!r}")
    use = "macs3" if method == "macs3" or (method == "auto" and macs3_available()) else "pileup"
    output = os.fspath(output)
    sizes = read_chrom_sizes(chrom_sizes)
    if use == "macs3":
        import tempfile

        f = _detect_format(inputs if isinstance(inputs, str) else list(inputs)[0]) \
            if fmt == "auto" else fmt
        macs_fmt = {"bedpe": "BEDPE", "fragments": "BEDPE", "bam": "BAMPE"}.get(f, f.upper())
        with tempfile.TemporaryDirectory() as tmp:
            path = call_peaks_macs3(inputs, tmp, "peaks", fmt=macs_fmt, genome_size=genome_size,
                                    qvalue=qvalue)
            peaks = read_bed(path, what="MACS3 output", keep_extra=True)
        peaks = _drop_masked(peaks, mask, mask_chroms, rename)
        lines = [f"{peaks.chrom[i]}\t{peaks.start[i]}\t{peaks.end[i]}\t" + "\t".join(peaks.extra[i])
                 + "\n" for i in range(len(peaks))]
        from strandwise.io.atomic import atomic_write_text

        atomic_write_text(output, "".join(lines))
        return output, "macs3"
    tracks, _ = count_insertions(inputs, sizes, fmt=fmt, rename=rename)
    mask_tracks(tracks[0], mask, mask_chroms)
    peaks, st = call_peaks_pileup(tracks[0], qvalue=qvalue, exclude_chroms=mask_chroms,
                                  **pileup_kwargs)
    score = np.clip(np.round(10 * st["mlog10q"]), 0, 1000) if len(peaks) else None
    write_narrowpeak(output, peaks, scores=score, signal=st["fold"], pvalues=st["mlog10p"],
                     qvalues=st["mlog10q"])
    return output, "pileup"


def _drop_masked(peaks: Intervals, mask, mask_chroms, rename) -> Intervals:
    from strandwise.io.intervals import ExclusionList

    rename = dict(rename or {})
    if rename:
        peaks.chrom = np.array([rename.get(c, c) for c in peaks.chrom], dtype=object)
    keep = ~np.isin(peaks.chrom.astype(str), list(mask_chroms))
    if mask is not None:
        if isinstance(mask, (str, os.PathLike)):
            mask = read_bed(mask, what="mask BED")
        elif not isinstance(mask, Intervals):
            rows = list(mask)
            mask = Intervals([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        ex = ExclusionList(mask, bin_size=1)
        keep &= ~ex.overlaps(peaks.chrom, peaks.start, peaks.end)
    return peaks.subset(keep)
