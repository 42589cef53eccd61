"""bigWig signal tracks: reading windows, writing per-base tracks, and the signal grouping grammar.

Tracks are read with pyBigWig; missing values (NaN: no data) read as 0 because a base-resolution
count track has no reads there. :func:`normalize_signal_groups` implements the signal specification
grammar of the Cherimoya spec §5.4, which says how files become model output channels and groups.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from strandwise.io.atomic import atomic_path
from strandwise.io.fasta import check_chroms_present, require_file

__all__ = ["BigWig", "open_bigwig", "write_bigwig", "normalize_signal_groups", "SignalTracks"]


def normalize_signal_groups(spec) -> tuple[list, list[int]]:
    """Flatten a signal specification into ``(tracks, signal_groups)`` (spec §5.4).

    Grammar
    -------
    * ``None`` → no tracks: ``([], [])``.
    * A flat list of N strings → N **unstranded** groups ``[1] * N`` (a flat pair is *not* a
      stranded pair; write ``[["x.+.bw", "x.-.bw"]]`` for that).
    * A list mixing ``str`` (a 1-channel group) and ``list[str]`` (a multi-channel group):
      ``["atac.bw", ["ctcf.+.bw", "ctcf.-.bw"]]`` → tracks flattened in order, groups ``[1, 2]``.
    * A single string is shorthand for a one-element list.
    * Besides paths, an in-memory track (a mapping ``chrom -> 1-D array``) is accepted wherever a
      path is.

    Returns
    -------
    tracks : list
        Paths (or in-memory mappings) in channel order.
    signal_groups : list[int]
        Channels per group; ``sum(signal_groups) == len(tracks)``.

    Raises
    ------
    TypeError
        An element that is neither a path, a mapping nor a list of those.
    ValueError
        An empty group, or an empty list.
    """
    if spec is None:
        return [], []
    if isinstance(spec, (str, os.PathLike, Mapping)):
        spec = [spec]
    if not isinstance(spec, (list, tuple)):
        raise TypeError(
            f"signals must be a path, a list of paths, or a list mixing paths and lists of paths; "
            f"got {type(spec).__name__}")
    if len(spec) == 0:
        raise ValueError("signals is an empty list; give at least one bigWig (or use null for none)")
    tracks, groups = [], []
    for i, item in enumerate(spec):
        if isinstance(item, (str, os.PathLike, Mapping)):
            tracks.append(os.fspath(item) if not isinstance(item, Mapping) else item)
            groups.append(1)
        elif isinstance(item, (list, tuple)):
            if len(item) == 0:
                raise ValueError(f"signal group {i} is empty; each group needs at least one track")
            for sub in item:
                if not isinstance(sub, (str, os.PathLike, Mapping)):
                    raise TypeError(
                        f"signal group {i} may only contain paths; got {type(sub).__name__} "
                        f"(groups cannot be nested)")
                tracks.append(os.fspath(sub) if not isinstance(sub, Mapping) else sub)
            groups.append(len(item))
        else:
            raise TypeError(
                f"signal entry {i} must be a path or a list of paths; got {type(item).__name__}")
    return tracks, groups


class BigWig:
    """A readable bigWig file.

    Parameters
    ----------
    path : str or PathLike
    """

    def __init__(self, path):
        import pyBigWig

        self.path = require_file(path, "bigWig")
        try:
            self._bw = pyBigWig.open(self.path)
        except Exception:
            self._bw = None
        if self._bw is None or not self._bw.isBigWig():
            raise ValueError(f"{self.path} is not a readable bigWig file")
        self.chrom_sizes = {k: int(v) for k, v in self._bw.chroms().items()}

    def check_chroms(self, chroms, source: str) -> None:
        check_chroms_present(chroms, self.chrom_sizes, source, f"bigWig {self.path}")

    def values(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Per-base values of ``[start, end)`` as float32 with NaN (no data) → 0.

        A chromosome the bigWig lacks raises (with a naming hint) rather than silently reading
        zeros, because that usually means ``chr1`` vs ``1``.
        """
        if chrom not in self.chrom_sizes:
            self.check_chroms([chrom], "the request")
        size = self.chrom_sizes[chrom]
        if start < 0 or end > size or start > end:
            raise ValueError(f"window {chrom}:{start}-{end} is outside {self.path} (length {size})")
        if start == end:
            return np.zeros(0, np.float32)
        v = self._bw.values(chrom, int(start), int(end), numpy=True)
        v = np.asarray(v, dtype=np.float32)
        np.nan_to_num(v, copy=False, nan=0.0)
        return v

    def chrom_values(self, chrom: str) -> np.ndarray:
        """The whole chromosome, float32, NaN → 0."""
        if chrom not in self.chrom_sizes:
            self.check_chroms([chrom], "the request")
        return self.values(chrom, 0, self.chrom_sizes[chrom])

    def close(self) -> None:
        if self._bw is not None:
            self._bw.close()
            self._bw = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_bigwig(path) -> BigWig:
    return path if isinstance(path, BigWig) else BigWig(path)


class _MemoryTrack:
    """An in-memory ``chrom -> array`` track with the :class:`BigWig` reading interface."""

    def __init__(self, arrays: Mapping[str, np.ndarray], label: str = "in-memory track"):
        self.path = label
        self._arrays = {str(k): np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        for k, v in self._arrays.items():
            if v.ndim != 1:
                raise ValueError(f"in-memory track for {k!r} must be 1-D; got shape {v.shape}")
        self.chrom_sizes = {k: len(v) for k, v in self._arrays.items()}

    def check_chroms(self, chroms, source):
        check_chroms_present(chroms, self.chrom_sizes, source, self.path)

    def values(self, chrom, start, end):
        if chrom not in self.chrom_sizes:
            self.check_chroms([chrom], "the request")
        if start < 0 or end > self.chrom_sizes[chrom] or start > end:
            raise ValueError(f"window {chrom}:{start}-{end} is outside {self.path}")
        return np.nan_to_num(self._arrays[chrom][start:end], nan=0.0)

    def chrom_values(self, chrom):
        return self.values(chrom, 0, self.chrom_sizes.get(chrom, 0))

    def close(self):
        pass


class SignalTracks:
    """Several tracks read together as channels ``(O, L)``.

    Parameters
    ----------
    tracks : list
        bigWig paths or in-memory ``chrom -> array`` mappings, in channel order.
    """

    def __init__(self, tracks: Sequence):
        self.tracks = [
            _MemoryTrack(t) if isinstance(t, Mapping) else open_bigwig(t) for t in tracks
        ]

    def __len__(self) -> int:
        return len(self.tracks)

    def check_chroms(self, chroms, source: str) -> None:
        chroms = sorted(set(chroms))
        for t in self.tracks:
            t.check_chroms(chroms, source)

    def read(self, chrom: str, start: int, end: int, out: np.ndarray | None = None) -> np.ndarray:
        """Values of ``[start, end)`` for every track, ``(O, end − start)`` float32."""
        if out is None:
            out = np.empty((len(self.tracks), end - start), np.float32)
        for i, t in enumerate(self.tracks):
            out[i] = t.values(chrom, start, end)
        return out

    def close(self) -> None:
        for t in self.tracks:
            t.close()


def write_bigwig(
    path,
    chrom_sizes: Mapping[str, int],
    values: Mapping[str, np.ndarray],
    skip_zeros: bool = True,
) -> str:
    """Write per-base values to a bigWig, atomically.

    Runs of equal values are merged into one bedGraph-style entry, and zeros are left out (they
    read back as NaN → 0 through :class:`BigWig`), so sparse count tracks stay small.

    Parameters
    ----------
    path : path
        Output ``.bw``.
    chrom_sizes : mapping
        Header, in the order to write; every chromosome in ``values`` must be in it.
    values : mapping chrom -> array of shape (chrom_size,)
        Missing chromosomes are written with no entries.

    Returns
    -------
    str
        ``path``.
    """
    import pyBigWig

    path = os.fspath(path)
    unknown = sorted(set(values) - set(chrom_sizes))
    if unknown:
        raise ValueError(f"chromosomes {unknown} have values but are not in chrom_sizes")
    with atomic_path(path, suffix=".bw") as tmp:
        bw = pyBigWig.open(tmp, "w")
        try:
            bw.addHeader([(str(c), int(s)) for c, s in chrom_sizes.items()], maxZooms=10)
            for chrom, size in chrom_sizes.items():
                if chrom not in values:
                    continue
                v = np.asarray(values[chrom], dtype=np.float64)
                if v.shape != (size,):
                    raise ValueError(
                        f"values for {chrom} have shape {v.shape}; expected ({size},)")
                if not len(v):
                    continue
                # Run boundaries: positions where the value changes.
                change = np.flatnonzero(np.diff(v)) + 1
                starts = np.concatenate([[0], change])
                ends = np.concatenate([change, [size]])
                vals = v[starts]
                if skip_zeros:
                    keep = vals != 0
                    starts, ends, vals = starts[keep], ends[keep], vals[keep]
                if len(starts):
                    bw.addEntries([chrom] * len(starts), starts.tolist(), ends=ends.tolist(),
                                  values=vals.tolist())
        finally:
            bw.close()
    from strandwise.io.fasta import _chmod_like_umask

    _chmod_like_umask(path)
    return path
