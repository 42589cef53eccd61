"""Locus extraction: genome + signal tracks + peak/negative loci → training tensors.

Window maths (spec §5.3). For a locus with centre ``mid`` (``start + (end − start)//2``, or
``start + summit`` with ``summits=True``), input width ``in``, output width ``out`` and jitter
margin ``mj``:

* sequence (and control) window ``[mid − in//2 − mj, mid + in//2 + mj + in%2)`` → ``(4, in + 2mj)``
* signal window ``[mid − out//2 − mj, mid + out//2 + mj + out%2)`` → ``(O, out + 2mj)``

so the output window sits centred inside the input window for odd and even widths alike, and the
sampler's offset ``j ∈ [0, 2mj]`` slices both by the same ``j`` (a shift of ``j − mj`` bp).

Memory: one-hot is stored as int8 and signals as float32. Signals are read first, loci failing the
count filters are compacted away in place, and only then is the one-hot array allocated for the
survivors, so no array is ever held twice.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np
import torch

from strandwise.io.intervals import ExclusionList, Intervals

__all__ = [
    "ProfileLoci",
    "extract_loci",
    "locus_windows",
    "count_filter_mask",
    "outlier_filter_mask",
    "load_profile_dataset",
    "load_training_loci",
    "make_train_sampler",
]

# ASCII → channel (0..3 for ACGT, 4 for N/IUPAC = zero column, 5 = invalid).
_LUT = np.full(256, 5, dtype=np.uint8)
for _i, _b in enumerate("ACGT"):
    _LUT[ord(_b)] = _i
    _LUT[ord(_b.lower())] = _i
for _b in "NRYSWKMBDHVUnryswkmbdhvu":
    _LUT[ord(_b)] = 4
_LUT[ord("U")] = _LUT[ord("u")] = 3  # RNA U reads as T


@dataclasses.dataclass
class ProfileLoci:
    """Extracted loci, ready for the sampler or for evaluation.

    Attributes
    ----------
    X : torch.Tensor, int8, shape (n, 4, in_window + 2·max_jitter)
        One-hot DNA (A, C, G, T); N and IUPAC codes are all-zero columns.
    y : torch.Tensor, float32, shape (n, O, out_window + 2·max_jitter)
        Signal (counts) per channel, channels in the order of the signal grammar.
    X_ctl : torch.Tensor or None, float32, shape (n, K, in_window + 2·max_jitter)
        Control tracks over the sequence window.
    labels : torch.Tensor, int8, shape (n,)
        1 for peaks, 0 for negatives.
    chrom : np.ndarray of str, shape (n,)
    center : np.ndarray of int64, shape (n,)
        Window centre ``mid`` (spec §5.3).
    in_window, out_window, max_jitter : int
    signal_groups, control_groups : list of int
    dropped : dict[str, int]
        Loci removed and why: ``chrom_end``, ``exclusion``, ``min_counts``, ``max_counts``,
        ``outlier``.
    """

    X: torch.Tensor
    y: torch.Tensor
    X_ctl: torch.Tensor | None
    labels: torch.Tensor
    chrom: np.ndarray
    center: np.ndarray
    in_window: int
    out_window: int
    max_jitter: int
    signal_groups: list
    control_groups: list
    dropped: dict

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_peaks(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors (X, y, X_ctl, labels)."""
        t = [self.X, self.y, self.labels] + ([self.X_ctl] if self.X_ctl is not None else [])
        return int(sum(x.element_size() * x.nelement() for x in t))

    def windows(self, which: str = "out") -> Intervals:
        """Genomic windows (without jitter margin) as :class:`Intervals`: ``'in'`` or ``'out'``."""
        w = {"in": self.in_window, "out": self.out_window}[which]
        start = self.center - w // 2
        return Intervals(self.chrom.copy(), start, start + w)

    def subset(self, idx) -> "ProfileLoci":
        """Rows ``idx`` (boolean mask or indices); copies."""
        idx = np.asarray(idx)
        rows = torch.as_tensor(np.flatnonzero(idx) if idx.dtype == bool else idx, dtype=torch.long)
        r = rows.numpy()
        return dataclasses.replace(
            self, X=self.X[rows], y=self.y[rows],
            X_ctl=None if self.X_ctl is None else self.X_ctl[rows], labels=self.labels[rows],
            chrom=self.chrom[r], center=self.center[r], dropped=dict(self.dropped))

    def __repr__(self) -> str:
        return (f"ProfileLoci(n={len(self)}, peaks={self.n_peaks}, X={tuple(self.X.shape)}, "
                f"y={tuple(self.y.shape)}, X_ctl={None if self.X_ctl is None else tuple(self.X_ctl.shape)}, "
                f"signal_groups={self.signal_groups}, dropped={self.dropped})")


def locus_windows(center, width: int, max_jitter: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[center − width//2 − mj, center + width//2 + mj + width%2)`` as ``(start, end)`` arrays."""
    center = np.asarray(center, np.int64)
    return center - width // 2 - max_jitter, center + width // 2 + max_jitter + width % 2


def count_filter_mask(y: np.ndarray, signal_groups: Sequence[int], min_counts=None,
                      max_counts=None) -> tuple[np.ndarray, np.ndarray]:
    """Which loci pass ``min_counts``/``max_counts``, tested on **group totals**.

    A locus fails ``min_counts`` if any group's total (over its channels and all positions) is
    below it, and ``max_counts`` if any group's total is above it. (tangermeme tests signal
    channel 0 only; group totals treat stranded pairs as one measurement.)

    Returns
    -------
    (ok_min, ok_max) : boolean arrays, shape (n,)
    """
    totals = _group_totals(y, signal_groups)
    n = totals.shape[0]
    ok_min = np.ones(n, bool) if min_counts is None else (totals >= min_counts).all(axis=1)
    ok_max = np.ones(n, bool) if max_counts is None else (totals <= max_counts).all(axis=1)
    return ok_min, ok_max


def outlier_filter_mask(y, signal_groups: Sequence[int], threshold: float = 1.2,
                        quantile: float = 0.99) -> np.ndarray:
    """Peak outlier filter (spec §4.10): keep loci whose total in **every** group is at most
    ``threshold × quantile_q`` of that group's totals.

    Parameters
    ----------
    y : array, shape (n, O, L)
    signal_groups : list of int, ``sum == O``

    Returns
    -------
    np.ndarray of bool, shape (n,)
    """
    totals = _group_totals(y, signal_groups)
    if totals.shape[0] == 0:
        return np.ones(0, bool)
    limit = threshold * np.quantile(totals, quantile, axis=0)
    return (totals <= limit).all(axis=1)


def _group_totals(y, signal_groups) -> np.ndarray:
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if sum(signal_groups) != y.shape[1]:
        raise ValueError(f"signal_groups {list(signal_groups)} sum to {sum(signal_groups)} but y has "
                         f"{y.shape[1]} channels")
    per_channel = y.sum(axis=2, dtype=np.float64)
    bounds = np.cumsum([0] + list(signal_groups))
    return np.stack([per_channel[:, bounds[g]:bounds[g + 1]].sum(axis=1)
                     for g in range(len(signal_groups))], axis=1)


def _compact(arr: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Move kept rows to the front in place and return the leading view (no second copy)."""
    rows = np.flatnonzero(keep)
    for i, j in enumerate(rows):
        if i != j:
            arr[i] = arr[j]
    return arr[: len(rows)]


def _encode_into(seq: str, out: np.ndarray, where: str) -> None:
    raw = np.frombuffer(seq.encode("latin-1", errors="replace"), dtype=np.uint8)
    idx = _LUT[raw]
    if (idx == 5).any():
        pos = int(np.flatnonzero(idx == 5)[0])
        raise ValueError(
            f"invalid character {seq[pos]!r} in the genome at {where} (offset {pos}); sequences may "
            f"contain only A, C, G, T, N and IUPAC ambiguity codes")
    ok = idx < 4
    out[idx[ok], np.flatnonzero(ok)] = 1


def _progress(iterable, total, desc, verbose):
    if not verbose:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="locus", leave=False)


def extract_loci(
    genome,
    loci: Intervals,
    signals,
    controls=None,
    *,
    in_window: int = 2114,
    out_window: int = 1000,
    max_jitter: int = 0,
    summits: bool = False,
    labels=None,
    chroms: Sequence[str] | None = None,
    exclusion: ExclusionList | None = None,
    min_counts: float | None = None,
    max_counts: float | None = None,
    outlier_threshold: float | None = None,
    outlier_quantile: float = 0.99,
    signal_groups: Sequence[int] | None = None,
    control_groups: Sequence[int] | None = None,
    verbose: bool = False,
    what: str = "loci",
) -> ProfileLoci:
    """Extract one-hot sequence, signal and control windows for ``loci``.

    Parameters
    ----------
    genome : Genome or path
    loci : Intervals
    signals : SignalTracks, or a spec in the §5.4 grammar
    controls : SignalTracks or spec, optional
    in_window, out_window, max_jitter : int
        Window widths and jitter margin (see module docstring).
    summits : bool
        Centre on ``start + summit`` where the summit is known.
    labels : array of {0, 1}, optional
        Per-locus label (default all 1). Count filters and the outlier filter apply to label-1
        loci only (negatives are not filtered, spec §4.10).
    chroms : list of str, optional
        Keep only loci on these chromosomes (a split); they must exist in the genome and tracks.
    exclusion : ExclusionList, optional
        Loci whose sequence window touches it are dropped.
    min_counts, max_counts : float, optional
        See :func:`count_filter_mask`.
    outlier_threshold, outlier_quantile : float
        See :func:`outlier_filter_mask`; ``None`` disables.
    signal_groups, control_groups : list of int, optional
        Required only for in-memory tracks passed as :class:`SignalTracks`.
    verbose : bool
        Progress bar.
    what : str
        Name used in warnings and errors ("training peaks", ...).

    Returns
    -------
    ProfileLoci

    Raises
    ------
    ValueError
        No loci on ``chroms`` (with a naming hint), chromosomes missing from the genome or a track
        (mapping suggested), non-ACGTN/IUPAC characters in a window.

    Warns
    -----
    UserWarning
        When loci are dropped at chromosome ends (the count is given and recorded in ``dropped``).
    """
    from strandwise.io.bigwig import SignalTracks, normalize_signal_groups
    from strandwise.io.fasta import open_genome, suggest_chrom_mapping

    genome = open_genome(genome)
    if not isinstance(signals, SignalTracks):
        tracks, groups = normalize_signal_groups(signals)
        signals = SignalTracks(tracks)
        signal_groups = groups if signal_groups is None else list(signal_groups)
    if signal_groups is None:
        signal_groups = [1] * len(signals)
    if sum(signal_groups) != len(signals):
        raise ValueError(f"signal_groups {list(signal_groups)} do not match {len(signals)} tracks")
    if controls is not None and not isinstance(controls, SignalTracks):
        ctracks, cgroups = normalize_signal_groups(controls)
        controls = SignalTracks(ctracks) if ctracks else None
        control_groups = cgroups if control_groups is None else list(control_groups)
    if controls is not None and control_groups is None:
        control_groups = [1] * len(controls)
    control_groups = list(control_groups or [])

    labels = np.ones(len(loci), np.int8) if labels is None else np.asarray(labels, np.int8)
    if len(labels) != len(loci):
        raise ValueError("labels must have one entry per locus")
    dropped = {"chrom_end": 0, "exclusion": 0, "min_counts": 0, "max_counts": 0, "outlier": 0}

    # 1. the split's chromosomes, checked against the genome and every track
    if chroms is not None:
        chroms = list(chroms)
        in_split = np.isin(loci.chrom.astype(str), chroms)
        if len(loci) and not in_split.any():
            have = sorted(set(loci.chrom.tolist()))
            hint = suggest_chrom_mapping(chroms, have)
            raise ValueError(
                f"no {what} on chromosomes {', '.join(chroms)}; the loci are on "
                f"{', '.join(have[:8])}{' ...' if len(have) > 8 else ''}"
                + (f" (different naming convention? e.g. {hint})" if hint else ""))
        loci, labels = loci.subset(in_split), labels[in_split]
    present = sorted(set(loci.chrom.tolist()))
    genome.check_chroms(present, f"the {what}")
    signals.check_chroms(present, f"the {what}")
    if controls is not None:
        controls.check_chroms(present, f"the {what}")

    # 2. coordinate filters: chromosome ends, exclusion lists
    mid = loci.centers(summits)
    s_start, s_end = locus_windows(mid, in_window, max_jitter)
    y_start, y_end = locus_windows(mid, out_window, max_jitter)
    sizes = np.array([genome.chrom_sizes[c] for c in loci.chrom], np.int64) if len(loci) else \
        np.zeros(0, np.int64)
    lo, hi = np.minimum(s_start, y_start), np.maximum(s_end, y_end)
    inside = (lo >= 0) & (hi <= sizes)
    dropped["chrom_end"] = int((~inside).sum())
    if dropped["chrom_end"]:
        warnings.warn(
            f"{dropped['chrom_end']} of {len(loci)} {what} dropped: their window "
            f"(in_window {in_window} + 2×max_jitter {max_jitter}) runs past a chromosome end",
            stacklevel=2)
    keep = inside
    if exclusion is not None and len(exclusion):
        hit = exclusion.overlaps(loci.chrom, lo, hi) & keep
        dropped["exclusion"] = int(hit.sum())
        keep &= ~hit
    rows = np.flatnonzero(keep)

    # 3. signals first (small), then count / outlier filters on peaks only
    n, O, K = len(rows), len(signals), (len(controls) if controls is not None else 0)
    wy, wx = out_window + 2 * max_jitter, in_window + 2 * max_jitter
    y = np.empty((n, O, wy), np.float32)
    for k, r in enumerate(_progress(rows, n, f"signals ({what})", verbose)):
        signals.read(loci.chrom[r], int(y_start[r]), int(y_end[r]), out=y[k])
    lab = labels[rows]
    is_peak = lab == 1
    ok = np.ones(n, bool)
    if min_counts is not None or max_counts is not None:
        ok_min, ok_max = count_filter_mask(y, signal_groups, min_counts, max_counts)
        dropped["min_counts"] = int((is_peak & ~ok_min).sum())
        dropped["max_counts"] = int((is_peak & ok_min & ~ok_max).sum())
        ok &= ~is_peak | (ok_min & ok_max)
    if outlier_threshold is not None and (is_peak & ok).any():
        sel = np.flatnonzero(is_peak & ok)
        good = outlier_filter_mask(y[sel], signal_groups, outlier_threshold, outlier_quantile)
        dropped["outlier"] = int((~good).sum())
        ok[sel[~good]] = False
    if not ok.all():
        y = _compact(y, ok)
        rows, lab = rows[ok], lab[ok]
    n = len(rows)

    # 4. sequences and controls only for the survivors
    X = np.zeros((n, 4, wx), np.int8)
    X_ctl = np.empty((n, K, wx), np.float32) if K else None
    for k, r in enumerate(_progress(rows, n, f"sequences ({what})", verbose)):
        c, a, b = loci.chrom[r], int(s_start[r]), int(s_end[r])
        _encode_into(genome.fetch(c, a, b), X[k], f"{c}:{a}-{b}")
        if K:
            controls.read(c, a, b, out=X_ctl[k])
    return ProfileLoci(
        X=torch.from_numpy(X), y=torch.from_numpy(y),
        X_ctl=None if X_ctl is None else torch.from_numpy(X_ctl),
        labels=torch.from_numpy(np.ascontiguousarray(lab)),
        chrom=loci.chrom[rows].copy(), center=mid[rows].copy(), in_window=in_window,
        out_window=out_window, max_jitter=max_jitter, signal_groups=list(signal_groups),
        control_groups=control_groups, dropped=dropped)


# ---------------------------------------------------------------------------------------------
# Entry points used by the fit / evaluate commands


def _open_sources(cfg):
    from strandwise.io.bigwig import SignalTracks
    from strandwise.io.fasta import Genome
    from strandwise.io.intervals import read_exclusion_lists

    genome = Genome(cfg.sequences)
    tracks, groups = cfg.signal_spec
    if cfg.signal_groups is not None:
        groups = list(cfg.signal_groups)
    signals = SignalTracks(tracks)
    ctl_tracks, cgroups = cfg.control_spec
    if cfg.control_groups is not None:
        cgroups = list(cfg.control_groups)
    controls = SignalTracks(ctl_tracks) if ctl_tracks else None
    exclusion = read_exclusion_lists(cfg.exclusion_lists)
    return genome, signals, groups, controls, cgroups, exclusion


def _read_negatives(cfg) -> Intervals:
    from strandwise.io.intervals import read_peaks

    return read_peaks(cfg.negatives, what="negatives file")


def load_profile_dataset(cfg, split: str, *, include_negatives: bool = True,
                         verbose: bool = False) -> ProfileLoci:
    """Peaks (label 1) and negatives (label 0) of one split, without jitter — for evaluation.

    Parameters
    ----------
    cfg : ProfileDataConfig
    split : {'train', 'valid', 'test'} (or 'training', 'validation')
    include_negatives : bool
        Append ``cfg.negatives`` (label 0) so AUROC/AUPRC can be computed.
    verbose : bool

    Returns
    -------
    ProfileLoci
        ``max_jitter = 0``: X ``(n, 4, in_window)``, y ``(n, O, out_window)``; peaks first, then
        negatives. ``min_counts``/``max_counts`` apply to peaks; the outlier filter does not (it is
        a training-time guard).
    """
    from strandwise.data.splits import canonical_split
    from strandwise.io.intervals import read_peaks

    split = canonical_split(split)
    genome, signals, groups, controls, cgroups, exclusion = _open_sources(cfg)
    try:
        peaks = read_peaks(cfg.loci)
        parts, labels = [peaks], [np.ones(len(peaks), np.int8)]
        if include_negatives and cfg.negatives:
            neg = _read_negatives(cfg)
            neg.summit[:] = -1
            parts.append(neg)
            labels.append(np.zeros(len(neg), np.int8))
        return extract_loci(
            genome, Intervals.concat(parts), signals, controls, in_window=cfg.in_window,
            out_window=cfg.out_window, max_jitter=0, summits=cfg.summits,
            labels=np.concatenate(labels), chroms=cfg.chroms(split), exclusion=exclusion,
            min_counts=cfg.min_counts, max_counts=cfg.max_counts, signal_groups=groups,
            control_groups=cgroups, verbose=verbose, what=f"{split} loci")
    finally:
        genome.close()
        signals.close()
        if controls is not None:
            controls.close()


def load_training_loci(cfg, *, verbose: bool = False) -> tuple[ProfileLoci, ProfileLoci | None]:
    """Training peaks (wide, ``max_jitter`` margin, count + outlier filters) and negatives (mj 0).

    Returns
    -------
    peaks : ProfileLoci
        X ``(n_p, 4, in + 2mj)``, y ``(n_p, O, out + 2mj)``.
    negatives : ProfileLoci or None
        X ``(n_n, 4, in)``, y ``(n_n, O, out)``; None when ``cfg.negatives`` is not set.
    """
    from strandwise.io.intervals import read_peaks

    genome, signals, groups, controls, cgroups, exclusion = _open_sources(cfg)
    chroms = cfg.chroms("train")
    common = dict(in_window=cfg.in_window, out_window=cfg.out_window, chroms=chroms,
                  exclusion=exclusion, signal_groups=groups, control_groups=cgroups,
                  verbose=verbose)
    try:
        peaks = extract_loci(
            genome, read_peaks(cfg.loci), signals, controls, max_jitter=cfg.max_jitter,
            summits=cfg.summits, min_counts=cfg.min_counts, max_counts=cfg.max_counts,
            outlier_threshold=cfg.outlier_threshold, outlier_quantile=cfg.outlier_quantile,
            what="training peaks", **common)
        negatives = None
        if cfg.negatives:
            neg = _read_negatives(cfg)
            negatives = extract_loci(genome, neg, signals, controls, max_jitter=0,
                                     labels=np.zeros(len(neg), np.int8),
                                     what="training negatives", **common)
        return peaks, negatives
    finally:
        genome.close()
        signals.close()
        if controls is not None:
            controls.close()


def make_train_sampler(cfg, *, verbose: bool = False, x_dtype=torch.float32):
    """Load the training loci of ``cfg`` and wrap them in a :class:`PeakNegativeSampler`.

    Uses ``cfg.max_jitter``, ``cfg.negative_ratio``, ``cfg.reverse_complement`` and
    ``cfg.random_state``. The loaded loci are available as ``sampler.peaks`` / ``sampler.negatives``.
    """
    from strandwise.data.sampler import PeakNegativeSampler

    peaks, negatives = load_training_loci(cfg, verbose=verbose)
    ratio = cfg.negative_ratio if negatives is not None else 0.0
    return PeakNegativeSampler.from_loci(
        peaks, negatives, negative_ratio=ratio, reverse_complement=cfg.reverse_complement,
        random_state=cfg.random_state, x_dtype=x_dtype)
