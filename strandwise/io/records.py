"""FASTA records and in-memory token genomes for the Caduceus data pipelines.

:func:`read_fasta_records` streams ``(name, sequence)`` pairs from a FASTA file (plain or gzip).
:class:`SequenceStore` gives ``fetch`` / ``fetch_ids`` over either

* a set of FASTA files loaded into memory as uint8 token ids (any FASTA: plain or plain-gzip, one
  or several files — e.g. the per-chromosome Ensembl yeast files), 1 byte per base; or
* an indexed :class:`~strandwise.io.fasta.Genome` (bgzip or plain with ``.fai``), read lazily,
  for genomes too large to hold in memory.

Token ids follow the Caduceus vocabulary (spec ``caduceus.md`` §2): A 7, C 8, G 9, T 10, N 11.
Soft-masked lowercase bases are upper-cased; any other character (IUPAC codes such as R, Y) is
read as N, which is what a genome FASTA means by them.
"""

from __future__ import annotations

import gzip
import os
from typing import Iterable, Iterator

import numpy as np

from strandwise.io.fasta import require_file

__all__ = ["read_fasta_records", "SequenceStore", "encode_ids", "decode_ids", "ID_LUT"]

#: byte -> token id: ACGTN (any case) -> 7..11; every other byte -> N (11).
ID_LUT = np.full(256, 11, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    ID_LUT[ord(_c)] = ID_LUT[ord(_c.lower())] = 7 + _i


def encode_ids(seq: str) -> np.ndarray:
    """Token ids ``(L,)`` uint8 of a DNA string (non-ACGT characters -> N = 11)."""
    return ID_LUT[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]


def decode_ids(ids) -> str:
    """Inverse of :func:`encode_ids` for ids 7..11 (others print as '?')."""
    a = np.asarray(ids, dtype=np.int64)
    lut = np.frombuffer(b"???????ACGTN????", dtype=np.uint8)
    return lut[np.clip(a, 0, 15)].tobytes().decode("ascii")


def _open_text(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="ascii", errors="replace")
    return open(path, encoding="ascii", errors="replace")


def read_fasta_records(path) -> Iterator[tuple[str, str]]:
    """Yield ``(name, sequence)`` for each record; ``name`` is the header's first word.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Sequence lines before the first header, a record without a name, or a file without any
        record (message names the file and line).
    """
    path = require_file(path, "FASTA file")
    name, chunks, seen = None, [], 0
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(chunks)
                    seen += 1
                parts = line[1:].split()
                if not parts:
                    raise ValueError(f"{path}:{lineno}: FASTA header without a name")
                name, chunks = parts[0], []
            elif line.startswith(";"):
                continue
            else:
                if name is None:
                    raise ValueError(f"{path}:{lineno}: sequence before the first '>' header (not a FASTA file?)")
                chunks.append(line)
    if name is not None:
        yield name, "".join(chunks)
        seen += 1
    if not seen:
        raise ValueError(f"{path}: no FASTA records")


def _is_indexable(path: str) -> bool:
    """True for a FASTA that :class:`Genome` can open without loading it (plain or bgzip)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return True
    return len(head) >= 14 and bool(head[3] & 4) and head[12:14] == b"BC"


class SequenceStore:
    """Random access to named sequences as token ids.

    Parameters
    ----------
    paths : str, PathLike or list of them
        FASTA file(s). Several files (or a plain-gzip file) are loaded into memory; a single plain
        or bgzipped FASTA is opened lazily through :class:`~strandwise.io.fasta.Genome` unless
        ``in_memory=True``.
    in_memory : bool, optional
        Force loading into memory (``True``) or lazy access (``False``; needs an indexable file).
    chroms : iterable of str, optional
        Keep only these records (in-memory mode), to save memory.

    Attributes
    ----------
    chrom_sizes : dict[str, int]
    """

    def __init__(self, paths, in_memory: bool | None = None, chroms: Iterable[str] | None = None):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [require_file(p, "FASTA file") for p in paths]
        if not paths:
            raise ValueError("no FASTA file given")
        lazy = (len(paths) == 1 and _is_indexable(paths[0])) if in_memory is None else not in_memory
        self.paths = paths
        self._genome = None
        self._ids: dict[str, np.ndarray] = {}
        keep = None if chroms is None else set(chroms)
        if lazy:
            from strandwise.io.fasta import Genome

            self._genome = Genome(paths[0])
            self.chrom_sizes = dict(self._genome.chrom_sizes)
        else:
            for p in paths:
                for name, seq in read_fasta_records(p):
                    if keep is not None and name not in keep:
                        continue
                    if name in self._ids:
                        raise ValueError(f"sequence name {name!r} appears twice (second time in {p})")
                    self._ids[name] = encode_ids(seq)
            self.chrom_sizes = {k: len(v) for k, v in self._ids.items()}
        if not self.chrom_sizes:
            raise ValueError(f"no sequences read from {', '.join(paths)}")

    @property
    def chroms(self) -> list[str]:
        return list(self.chrom_sizes)

    def _check(self, chrom: str, start: int, end: int) -> None:
        if chrom not in self.chrom_sizes:
            from strandwise.io.fasta import check_chroms_present

            check_chroms_present([chrom], self.chrom_sizes, "the request", "the FASTA")
        size = self.chrom_sizes[chrom]
        if start < 0 or end > size or start > end:
            raise ValueError(f"window {chrom}:{start}-{end} is outside the sequence (length {size})")

    def fetch_ids(self, chrom: str, start: int, end: int) -> np.ndarray:
        """Token ids ``(end - start,)`` uint8 of ``[start, end)`` (0-based, half-open)."""
        self._check(chrom, start, end)
        if self._genome is not None:
            return encode_ids(self._genome.fetch(chrom, start, end))
        return self._ids[chrom][start:end]

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Upper-case bases of ``[start, end)`` (non-ACGT characters read as N)."""
        if self._genome is not None:
            self._check(chrom, start, end)
            return self._genome.fetch(chrom, start, end)
        return decode_ids(self.fetch_ids(chrom, start, end))

    def fetch_clipped(self, chrom: str, start: int, end: int) -> str:
        """Like :meth:`fetch` but returns fewer bases past the sequence end (for variant windows)."""
        if chrom not in self.chrom_sizes:
            raise KeyError(f"chromosome {chrom!r} is not in the FASTA")
        return self.fetch(chrom, max(0, start), min(end, self.chrom_sizes[chrom]))

    def __repr__(self) -> str:
        mode = "lazy" if self._genome is not None else "in memory"
        return f"SequenceStore({len(self.chrom_sizes)} sequences, {sum(self.chrom_sizes.values())} bp, {mode})"
