"""GC-matched background loci ("negatives", spec §5.6), seeded so the same seed gives the same BED.

Procedure
---------
1. Each peak's GC fraction is measured over an ``in_window``-wide window centred on it (``mid`` as
   in §5.3); peaks whose window has more than ``max_n_perc`` N (or other non-ACGT) bases, or runs
   off the chromosome, are not used for matching.
2. GC bins of width ``bin_width``: ``bin = floor((gc + bin_width/2) / bin_width)`` (51 bins for 0.02).
3. Candidates: the peaks' chromosomes tiled into non-overlapping ``in_window`` windows from
   position 0 (a trailing partial tile is not used), leaving out tiles that overlap any peak
   interval, tiles with more than ``max_n_perc`` N, and tiles touching an exclusion list. With
   ``signals``, only tiles whose signal over the central ``out_window`` is below
   ``beta × (1st percentile of the peaks' signal over their central out_window)`` are kept.
4. A ``numpy.random.RandomState(random_state)`` shuffles each bin's candidates (bins in increasing
   order); each bin takes ``min(candidates, peaks)`` of them; a bin left short is then filled from
   the unused candidates of neighbouring bins, searching outward ``b+1, b−1, b+2, b−2, …``.
5. Output: the chosen tiles as a 3-column BED, sorted (genome chromosome order, then start).
"""

from __future__ import annotations

import os

import numpy as np

from strandwise.io.intervals import ExclusionList, Intervals

__all__ = ["gc_matched_negatives", "write_negatives", "gc_bin"]


def gc_bin(gc: np.ndarray, bin_width: float = 0.02) -> np.ndarray:
    """``floor((gc + bin_width/2) / bin_width)`` as int64."""
    return np.floor((np.asarray(gc, np.float64) + bin_width / 2) / bin_width).astype(np.int64)


def _chrom_tables(seq: str) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums of G/C and of non-ACGT bases, each of length ``len(seq) + 1``."""
    raw = np.frombuffer(seq.encode("latin-1"), np.uint8)
    gc = (raw == ord("G")) | (raw == ord("C"))
    acgt = gc | (raw == ord("A")) | (raw == ord("T"))
    z = np.zeros(1, np.int64)
    return np.concatenate([z, np.cumsum(gc)]), np.concatenate([z, np.cumsum(~acgt)])


def gc_matched_negatives(
    peaks,
    genome,
    *,
    in_window: int = 2114,
    out_window: int = 1000,
    bin_width: float = 0.02,
    max_n_perc: float = 0.1,
    signals=None,
    beta: float = 0.5,
    random_state: int = 0,
    summits: bool = False,
    exclusion=None,
    verbose: bool = False,
) -> tuple[Intervals, dict]:
    """Pick background tiles whose GC distribution matches the peaks'.

    Parameters
    ----------
    peaks : Intervals, path or list of paths
    genome : Genome or FASTA path
    in_window, out_window : int
        Tile width / signal-filter width.
    bin_width : float
        GC bin width (0.02).
    max_n_perc : float
        Largest allowed fraction of N bases in a peak window or a tile (0.1).
    signals : path or list of paths, optional
        bigWig(s) for the low-signal filter (values summed over tracks).
    beta : float
        Low-signal filter factor (0.5).
    random_state : int
        Seeds the shuffle; the same value gives the same negatives.
    summits : bool
        Centre peaks on their summit when known.
    exclusion : ExclusionList, path or list of paths, optional
    verbose : bool
        Progress bar over chromosomes.

    Returns
    -------
    negatives : Intervals
        Sorted ``in_window``-wide tiles.
    stats : dict
        ``n_peaks``, ``n_peaks_used``, ``n_candidates``, ``n_negatives``, ``peak_hist`` and
        ``negative_hist`` (counts per GC bin), ``signal_threshold`` (or None).

    Raises
    ------
    ValueError
        Unknown chromosomes (mapping suggested), bad parameters, no usable peaks.
    """
    from strandwise.io.fasta import open_genome
    from strandwise.io.intervals import read_exclusion_lists, read_peaks

    if not 0 < bin_width <= 1:
        raise ValueError(f"bin_width must be in (0, 1]; got {bin_width}")
    if not 0 <= max_n_perc <= 1:
        raise ValueError(f"max_n_perc must be in [0, 1]; got {max_n_perc}")
    if in_window <= 0 or out_window <= 0 or out_window > in_window:
        raise ValueError("need 0 < out_window <= in_window")
    if random_state is None or isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ValueError(f"random_state must be an int (negatives must be reproducible); got {random_state!r}")
    if not isinstance(peaks, Intervals):
        peaks = read_peaks(peaks)
    if len(peaks) == 0:
        raise ValueError("no peaks given")
    genome = open_genome(genome)
    if exclusion is not None and not isinstance(exclusion, ExclusionList):
        exclusion = read_exclusion_lists(exclusion)
    chroms = [c for c in genome.chrom_sizes if c in set(peaks.chrom.tolist())]
    genome.check_chroms(sorted(set(peaks.chrom.tolist())), "the peak file")
    tracks = None
    if signals is not None:
        from strandwise.io.bigwig import SignalTracks, normalize_signal_groups

        tracks = SignalTracks(normalize_signal_groups(signals)[0])
        tracks.check_chroms(chroms, "the peak file")

    n_bins = int(np.floor(1 / bin_width + 0.5)) + 1
    mid_all = peaks.centers(summits)
    peak_gc, peak_sig, cand_chrom, cand_start, cand_gc, cand_sig = [], [], [], [], [], []
    it = chroms
    if verbose:
        from tqdm.auto import tqdm

        it = tqdm(chroms, desc="negatives", unit="chrom", leave=False)
    for c in it:
        size = genome.chrom_sizes[c]
        gc_cs, n_cs = _chrom_tables(genome.fetch_chrom(c))
        rows = np.flatnonzero(peaks.chrom == c)
        mid = mid_all[rows]
        ps, pe = mid - in_window // 2, mid + in_window // 2 + in_window % 2
        ok = (ps >= 0) & (pe <= size)
        ps, pe, mid = ps[ok], pe[ok], mid[ok]
        nfrac = (n_cs[pe] - n_cs[ps]) / in_window
        good = nfrac <= max_n_perc
        peak_gc.append((gc_cs[pe[good]] - gc_cs[ps[good]]) / in_window)
        if tracks is not None:
            peak_sig.append(_window_sums(tracks, c, mid[good], out_window))
        # tiles
        starts = np.arange(0, size - in_window + 1, in_window, dtype=np.int64)
        ends = starts + in_window
        touched = np.zeros(len(starts), bool)
        for s, e in zip(peaks.start[rows], peaks.end[rows]):
            first, last = s // in_window, max(e - 1, s) // in_window
            touched[first:min(last, len(starts) - 1) + 1] = True
        keep = ~touched & ((n_cs[ends] - n_cs[starts]) / in_window <= max_n_perc)
        if exclusion is not None and len(exclusion):
            keep &= ~exclusion.overlaps(c, starts, ends)
        starts = starts[keep]
        cand_chrom.extend([c] * len(starts))
        cand_start.append(starts)
        cand_gc.append((gc_cs[starts + in_window] - gc_cs[starts]) / in_window)
        if tracks is not None:
            cand_sig.append(_window_sums(tracks, c, starts + in_window // 2, out_window))
    peak_gc = np.concatenate(peak_gc) if peak_gc else np.zeros(0)
    if len(peak_gc) == 0:
        raise ValueError("no usable peaks (all run off their chromosome or have too many N)")
    cand_chrom = np.array(cand_chrom, dtype=object)
    cand_start = np.concatenate(cand_start) if cand_start else np.zeros(0, np.int64)
    cand_gc = np.concatenate(cand_gc) if cand_gc else np.zeros(0)
    threshold = None
    if tracks is not None:
        threshold = beta * float(np.percentile(np.concatenate(peak_sig), 1))
        low = np.concatenate(cand_sig) < threshold
        cand_chrom, cand_start, cand_gc = cand_chrom[low], cand_start[low], cand_gc[low]
        tracks.close()

    peak_bins = np.clip(gc_bin(peak_gc, bin_width), 0, n_bins - 1)
    cand_bins = np.clip(gc_bin(cand_gc, bin_width), 0, n_bins - 1)
    want = np.bincount(peak_bins, minlength=n_bins)
    rng = np.random.RandomState(int(random_state))
    pools = []
    for b in range(n_bins):
        pool = np.flatnonzero(cand_bins == b)
        rng.shuffle(pool)
        pools.append(pool)
    used = np.zeros(n_bins, np.int64)  # candidates consumed from each pool
    chosen = []
    for b in range(n_bins):
        k = min(len(pools[b]), want[b])
        chosen.append(pools[b][:k])
        used[b] = k
    got = used.copy()  # negatives assigned to each peak bin
    for b in range(n_bins):
        deficit = want[b] - got[b]
        o = 1
        while deficit > 0 and (b + o < n_bins or b - o >= 0):
            for nb in (b + o, b - o):
                if deficit > 0 and 0 <= nb < n_bins:
                    take = min(len(pools[nb]) - used[nb], deficit)
                    if take > 0:
                        chosen.append(pools[nb][used[nb]:used[nb] + take])
                        used[nb] += take
                        got[b] += take
                        deficit -= take
            o += 1
    sel = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    order_chrom = {c: i for i, c in enumerate(genome.chrom_sizes)}
    key = np.array([order_chrom[c] for c in cand_chrom[sel]], np.int64)
    sel = sel[np.lexsort((cand_start[sel], key))]
    neg = Intervals(cand_chrom[sel], cand_start[sel], cand_start[sel] + in_window)
    stats = {
        "n_peaks": len(peaks), "n_peaks_used": int(len(peak_gc)),
        "n_candidates": int(len(cand_start)), "n_negatives": int(len(neg)),
        "peak_hist": want, "negative_hist": np.bincount(cand_bins[sel], minlength=n_bins),
        "signal_threshold": threshold,
    }
    return neg, stats


def _window_sums(tracks, chrom, centers, width) -> np.ndarray:
    out = np.zeros(len(centers))
    size = min(t.chrom_sizes[chrom] for t in tracks.tracks)
    for i, m in enumerate(centers):
        a = max(0, int(m) - width // 2)
        b = min(size, int(m) + width // 2 + width % 2)
        out[i] = tracks.read(chrom, a, b).sum()
    return out


def write_negatives(path: str | os.PathLike, peaks, genome, **kwargs) -> dict:
    """:func:`gc_matched_negatives` then write the 3-column BED atomically; returns the stats."""
    from strandwise.io.intervals import write_bed

    neg, stats = gc_matched_negatives(peaks, genome, **kwargs)
    write_bed(path, neg)
    return stats
