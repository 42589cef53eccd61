"""BED / narrowPeak intervals and exclusion lists.

Coordinates are 0-based, half-open (BED). Files may be gzip-compressed. Header lines (``track``,
``browser``, ``#``) are skipped.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from typing import Iterable, Sequence

import numpy as np

from strandwise.io.atomic import atomic_write_text
from strandwise.io.fasta import require_file

__all__ = [
    "Intervals",
    "read_bed",
    "read_peaks",
    "write_bed",
    "write_narrowpeak",
    "ExclusionList",
    "read_exclusion_lists",
]


@dataclasses.dataclass
class Intervals:
    """A table of genomic intervals.

    Attributes
    ----------
    chrom : np.ndarray of str, shape (n,)
    start, end : np.ndarray of int64, shape (n,)
    summit : np.ndarray of int64, shape (n,)
        Offset of the summit from ``start`` (narrowPeak column 10), or −1 where unknown.
    extra : list of list of str, optional
        Columns beyond the third, kept for writing back (narrowPeak) — ``None`` when not read.
    """

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    summit: np.ndarray = None
    extra: list | None = None

    def __post_init__(self):
        self.chrom = np.asarray(self.chrom, dtype=object)
        self.start = np.asarray(self.start, dtype=np.int64)
        self.end = np.asarray(self.end, dtype=np.int64)
        n = len(self.chrom)
        self.summit = (np.full(n, -1, np.int64) if self.summit is None
                       else np.asarray(self.summit, dtype=np.int64))
        if not (len(self.start) == len(self.end) == len(self.summit) == n):
            raise ValueError("Intervals columns have different lengths")

    def __len__(self) -> int:
        return len(self.chrom)

    def subset(self, idx) -> "Intervals":
        """Rows ``idx`` (boolean mask or integer indices)."""
        idx = np.asarray(idx)
        rows = np.flatnonzero(idx) if idx.dtype == bool else idx
        extra = [self.extra[i] for i in rows] if self.extra is not None else None
        return Intervals(self.chrom[rows], self.start[rows], self.end[rows], self.summit[rows], extra)

    def centers(self, summits: bool = False) -> np.ndarray:
        """Locus centres: ``start + summit`` where ``summits`` and a summit is known, else
        ``start + (end − start)//2`` (spec §5.3)."""
        mid = self.start + (self.end - self.start) // 2
        if summits:
            has = self.summit >= 0
            mid = np.where(has, self.start + self.summit, mid)
        return mid

    def sorted(self) -> "Intervals":
        """Sorted by (chrom, start, end) with chromosomes in name order."""
        order = np.lexsort((self.end, self.start, self.chrom.astype(str)))
        return self.subset(order)

    @staticmethod
    def concat(parts: Sequence["Intervals"]) -> "Intervals":
        if not parts:
            return Intervals([], [], [])
        extra = None
        if all(p.extra is not None for p in parts):
            extra = [row for p in parts for row in p.extra]
        return Intervals(
            np.concatenate([p.chrom for p in parts]), np.concatenate([p.start for p in parts]),
            np.concatenate([p.end for p in parts]), np.concatenate([p.summit for p in parts]), extra)


def _open(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rt") if magic == b"\x1f\x8b" else open(path)


def read_bed(path, what: str = "BED file", keep_extra: bool = False) -> Intervals:
    """Read a BED-like file (≥ 3 columns). Column 10, when present and numeric, is the summit.

    Parameters
    ----------
    path : path
    what : str
        Used in error messages ("peak file", "exclusion list", ...).
    keep_extra : bool
        Keep columns 4+ as strings (for writing back).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; a row with fewer than 3 columns, non-integer or negative coordinates, or
        ``end < start`` (message names file and line).
    """
    path = require_file(path, what)
    chroms, starts, ends, summits, extra = [], [], [], [], []
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            parts = line.rstrip("\n\r").split("\t")
            if len(parts) < 3:
                parts = line.split()
            if len(parts) < 3:
                raise ValueError(f"{path}:{lineno}: expected at least 3 columns (chrom, start, end)")
            try:
                s, e = int(parts[1]), int(parts[2])
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: start/end must be integers; got {parts[1]!r}, {parts[2]!r}"
                ) from None
            if s < 0 or e < s:
                raise ValueError(f"{path}:{lineno}: invalid interval {parts[0]}:{s}-{e}")
            summit = -1
            if len(parts) >= 10:
                try:
                    summit = int(parts[9])
                except ValueError:
                    summit = -1
            chroms.append(parts[0])
            starts.append(s)
            ends.append(e)
            summits.append(summit)
            if keep_extra:
                extra.append(parts[3:])
    return Intervals(np.array(chroms, dtype=object), starts, ends, summits,
                     extra if keep_extra else None)


def read_peaks(paths, what: str = "peak file") -> Intervals:
    """Read one or several peak files (BED/narrowPeak), interleaved row-wise.

    Several files are interleaved as file 0 row 0, file 1 row 0, file 0 row 1, ... (spec §5.1), so
    that each file contributes evenly to any prefix. Files run out independently.

    Raises
    ------
    ValueError
        If a file has no intervals ("empty peak file").
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError(f"no {what} given")
    parts = []
    for p in paths:
        iv = read_bed(p, what=what)
        if len(iv) == 0:
            raise ValueError(f"empty {what}: {os.fspath(p)} has no intervals")
        parts.append(iv)
    if len(parts) == 1:
        return parts[0]
    # Interleave: sort by (row index within its file, file index).
    rank = np.concatenate([np.arange(len(p)) for p in parts])
    file_idx = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    order = np.lexsort((file_idx, rank))
    return Intervals.concat(parts).subset(order)


def write_bed(path, intervals: Intervals) -> None:
    """Write 3-column BED, atomically, rows in the given order."""
    lines = [f"{c}\t{s}\t{e}\n" for c, s, e in zip(intervals.chrom, intervals.start, intervals.end)]
    atomic_write_text(path, "".join(lines))


def write_narrowpeak(path, intervals: Intervals, scores=None, signal=None, pvalues=None,
                     qvalues=None, name_prefix: str = "peak") -> None:
    """Write ENCODE narrowPeak (10 columns), atomically.

    ``scores`` (int 0–1000), ``signal`` (fold enrichment), ``pvalues``/``qvalues`` (−log10) default
    to 0 / −1 as the format allows; column 10 is ``intervals.summit`` (−1 when unknown).
    """
    n = len(intervals)
    scores = np.zeros(n, int) if scores is None else np.asarray(scores)
    signal = np.zeros(n) if signal is None else np.asarray(signal)
    pvalues = np.full(n, -1.0) if pvalues is None else np.asarray(pvalues)
    qvalues = np.full(n, -1.0) if qvalues is None else np.asarray(qvalues)
    lines = [
        f"{intervals.chrom[i]}\t{intervals.start[i]}\t{intervals.end[i]}\t{name_prefix}_{i + 1}\t"
        f"{int(scores[i])}\t.\t{signal[i]:.5g}\t{pvalues[i]:.5g}\t{qvalues[i]:.5g}\t"
        f"{intervals.summit[i]}\n"
        for i in range(n)
    ]
    atomic_write_text(path, "".join(lines))


class ExclusionList:
    """Regions to leave out, checked at ``bin_size`` granularity (100 bp, spec §5.1).

    A window overlaps the list when any ``bin_size`` bin it touches is touched by an excluded
    interval; this is slightly conservative (may drop a window up to ``bin_size − 1`` bp away
    from a region) and makes the check O(window/bin) with no interval tree.

    Parameters
    ----------
    intervals : Intervals
    bin_size : int
    """

    def __init__(self, intervals: Intervals | None = None, bin_size: int = 100):
        self.bin_size = int(bin_size)
        self._bins: dict[str, np.ndarray] = {}
        self.intervals = intervals if intervals is not None else Intervals([], [], [])
        if len(self.intervals):
            by_chrom: dict[str, list] = {}
            for c, s, e in zip(self.intervals.chrom, self.intervals.start, self.intervals.end):
                by_chrom.setdefault(c, []).append((s, e))
            for c, rows in by_chrom.items():
                rows = np.array(rows, dtype=np.int64)
                first = rows[:, 0] // self.bin_size
                last = (np.maximum(rows[:, 1], rows[:, 0] + 1) - 1) // self.bin_size
                nb = int(last.max()) + 2
                diff = np.zeros(nb + 1, np.int64)
                np.add.at(diff, first, 1)
                np.add.at(diff, last + 1, -1)
                self._bins[c] = np.cumsum(diff)[:nb] > 0

    def __len__(self) -> int:
        return len(self.intervals)

    def overlaps(self, chrom, start, end) -> np.ndarray:
        """Boolean mask: which windows ``[start, end)`` touch an excluded bin.

        ``chrom`` may be a single name or an array; ``start``/``end`` arrays of equal length.
        """
        start = np.atleast_1d(np.asarray(start, np.int64))
        end = np.atleast_1d(np.asarray(end, np.int64))
        chrom = np.broadcast_to(np.asarray(chrom, dtype=object), start.shape)
        out = np.zeros(len(start), bool)
        if not self._bins:
            return out
        for c in set(chrom.tolist()):
            bins = self._bins.get(c)
            if bins is None:
                continue
            rows = np.flatnonzero(chrom == c)
            csum = np.concatenate([[0], np.cumsum(bins)])
            b0 = np.clip(start[rows] // self.bin_size, 0, len(bins))
            b1 = np.clip((np.maximum(end[rows], start[rows] + 1) - 1) // self.bin_size + 1, 0,
                         len(bins))
            out[rows] = csum[b1] - csum[b0] > 0
        return out


def read_exclusion_lists(paths: Iterable | None, bin_size: int = 100) -> ExclusionList:
    """Union of exclusion BED files (``None`` or ``[]`` → an empty list that excludes nothing)."""
    if paths is None:
        return ExclusionList(None, bin_size)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    parts = [read_bed(p, what="exclusion list") for p in paths]
    return ExclusionList(Intervals.concat(parts) if parts else None, bin_size)
