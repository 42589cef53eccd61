"""Genome FASTA access (plain or bgzipped, indexed) and chromosome-name helpers.

A genome is read through :class:`Genome`, a thin wrapper over ``pyfaidx.Fasta`` that upper-cases
sequence, knows the chromosome sizes and raises errors that say what to do: a missing chromosome
that exists under another naming convention (``chr1`` vs ``1``, ``chrM`` vs ``Mito``/``MT``) gets
the mapping suggested. :func:`build_genome_fasta` turns several (gzip) FASTA files into one bgzipped,
indexed FASTA with chromosomes renamed, which is what the yeast example ships.

Plain gzip FASTA is refused on purpose: random access into it means decompressing from the start,
which has made related pipelines hang.
"""

from __future__ import annotations

import gzip
import os
import re
from typing import Iterable, Mapping, Sequence

from strandwise.io.atomic import atomic_path

__all__ = [
    "Genome",
    "open_genome",
    "build_genome_fasta",
    "read_chrom_sizes",
    "suggest_chrom_mapping",
    "check_chroms_present",
    "require_file",
]

_ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV",
          "XV", "XVI", "XVII", "XVIII", "XIX", "XX", "XXI", "XXII"]
# Mitochondrial names across UCSC / Ensembl / NCBI conventions.
_MITO = ("chrM", "chrMT", "M", "MT", "Mito", "chrMito", "mito")


def require_file(path, what: str = "file") -> str:
    """Return ``os.fspath(path)`` or raise ``FileNotFoundError`` naming ``what``."""
    if path is None:
        raise FileNotFoundError(f"{what}: no path given")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise FileNotFoundError(f"{what} is a directory, expected a file: {path}")
    return path


def _canonical(name: str) -> str:
    """A naming-convention-free key: drop 'chr', map mito names to 'M', roman numerals to ints."""
    n = name[3:] if name.lower().startswith("chr") else name
    if n in _MITO or "chr" + n in _MITO:
        return "M"
    if n in _ROMAN:
        return str(_ROMAN.index(n) + 1)
    return n.upper()


def suggest_chrom_mapping(names: Iterable[str], targets: Iterable[str]) -> dict[str, str]:
    """Guess a renaming ``{name: target}`` between two chromosome naming conventions.

    Matches ``chr1``↔``1``, ``chrX``↔``X``, ``chrM``↔``MT``/``Mito``, and (only when both sides
    use the same style) roman vs arabic numerals. Names with no counterpart are left out.

    Examples
    --------
    >>> suggest_chrom_mapping(["chrI", "chrM"], ["I", "Mito"])
    {'chrI': 'I', 'chrM': 'Mito'}
    """
    targets = list(targets)
    by_key: dict[str, str] = {}
    for t in targets:
        by_key.setdefault(_canonical(t), t)
    out = {}
    for n in names:
        t = by_key.get(_canonical(n))
        if t is not None and t != n:
            out[n] = t
    return out


def _format_mapping(mapping: Mapping[str, str], limit: int = 4) -> str:
    items = list(mapping.items())
    shown = ", ".join(f"{a!r}: {b!r}" for a, b in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return "{" + shown + more + "}"


def check_chroms_present(
    wanted: Iterable[str], available: Iterable[str], wanted_label: str, available_label: str
) -> None:
    """Raise ``ValueError`` if some of ``wanted`` are not in ``available``.

    The message names the missing chromosomes and, when the two sides follow different naming
    conventions, suggests the renaming map (e.g. ``{'chr1': '1'}``).
    """
    available = list(available)
    avail = set(available)
    missing = sorted({w for w in wanted if w not in avail})
    if not missing:
        return
    mapping = suggest_chrom_mapping(missing, available)
    hint = ""
    if mapping:
        hint = (f"; the names look like another naming convention, map them with "
                f"{_format_mapping(mapping)}")
    shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
    have = ", ".join(available[:6]) + (", ..." if len(available) > 6 else "")
    raise ValueError(
        f"chromosome name(s) {shown} from {wanted_label} not found in {available_label} "
        f"(which has {have}){hint}"
    )


class Genome:
    """Indexed random access to a genome FASTA (plain, or bgzip-compressed with ``.fai``/``.gzi``).

    Parameters
    ----------
    path : str or PathLike
        FASTA file. A missing ``.fai`` index is built on first open (needs write access).

    Attributes
    ----------
    chrom_sizes : dict[str, int]
        Chromosome lengths, in file order.
    """

    def __init__(self, path):
        self.path = require_file(path, "genome FASTA")
        if self.path.endswith(".gz") and not _is_bgzf(self.path):
            raise ValueError(
                f"{self.path} is plain gzip; indexed access needs bgzip compression. Re-compress it "
                f"with `strandwise.io.build_genome_fasta([...], 'genome.fa.gz')` or `bgzip`"
            )
        if self.path.endswith(".gz"):
            # pyfaidx needs Biopython for BGZF; pysam reads BGZF with its .fai/.gzi natively.
            import pysam

            try:
                self._fa = pysam.FastaFile(self.path)
            except Exception as exc:
                raise ValueError(f"cannot read genome FASTA {self.path}: {exc}") from None
            self.chrom_sizes = dict(zip(self._fa.references, map(int, self._fa.lengths)))
            self._fetch = lambda c, s, e: self._fa.fetch(c, s, e).upper()
        else:
            import pyfaidx

            try:
                self._fa = pyfaidx.Fasta(self.path, as_raw=True, sequence_always_upper=True,
                                         read_ahead=10000)
            except Exception as exc:  # pyfaidx raises many types for unreadable files
                raise ValueError(f"cannot read genome FASTA {self.path}: {exc}") from None
            self.chrom_sizes = {k: int(self._fa.faidx.index[k].rlen) for k in self._fa.keys()}
            self._fetch = lambda c, s, e: str(self._fa[c][s:e])

    @property
    def chroms(self) -> list[str]:
        return list(self.chrom_sizes)

    def check_chroms(self, chroms: Iterable[str], source: str) -> None:
        """Raise a naming-convention-aware ``ValueError`` if ``chroms`` are not all in the genome."""
        check_chroms_present(chroms, self.chrom_sizes, source, f"genome FASTA {self.path}")

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Upper-case sequence of ``[start, end)`` (0-based, half-open).

        Raises
        ------
        ValueError
            Unknown chromosome (mapping suggested) or a window outside ``[0, chrom_size]``.
        """
        if chrom not in self.chrom_sizes:
            self.check_chroms([chrom], "the request")
        size = self.chrom_sizes[chrom]
        if start < 0 or end > size or start > end:
            raise ValueError(f"window {chrom}:{start}-{end} is outside the chromosome (length {size})")
        return self._fetch(chrom, start, end)

    def fetch_chrom(self, chrom: str) -> str:
        """The whole chromosome, upper-case."""
        if chrom not in self.chrom_sizes:
            self.check_chroms([chrom], "the request")
        return self.fetch(chrom, 0, self.chrom_sizes[chrom])

    def close(self) -> None:
        self._fa.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Genome({self.path!r}, {len(self.chrom_sizes)} chromosomes)"


def open_genome(genome) -> Genome:
    """Return ``genome`` if it is a :class:`Genome`, else open the FASTA path."""
    return genome if isinstance(genome, Genome) else Genome(genome)


def _is_bgzf(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(18)
    # BGZF = gzip member with the FEXTRA flag and a 'BC' subfield.
    return len(head) >= 14 and head[:2] == b"\x1f\x8b" and head[3] & 4 and head[12:14] == b"BC"


def _open_text(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt")
    return open(path, encoding="ascii", errors="replace")


def _header_name(line: str) -> str:
    return line[1:].strip().split()[0] if line[1:].strip() else ""


def build_genome_fasta(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    rename: Mapping[str, str] | None = None,
    line_width: int = 60,
    keep: Iterable[str] | None = None,
) -> str:
    """Concatenate FASTA files (plain or gzip) into one bgzipped, indexed FASTA.

    Parameters
    ----------
    inputs : sequence of paths
        FASTA files; each may hold several records. Records are written in input order.
    output : path
        Destination; ends in ``.gz`` for bgzip output (``.fai`` and ``.gzi`` are written beside
        it), anything else for plain FASTA (``.fai`` beside it).
    rename : mapping, optional
        ``{old_name: new_name}`` applied to record names (the first word of each header).
        A key that matches no record raises ``ValueError`` (a typo would otherwise go unnoticed).
    line_width : int
        Bases per line in the output.
    keep : iterable of str, optional
        Only these (new) names are written.

    Returns
    -------
    str
        The output path. Writing is atomic: a crash leaves no half-written genome.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing input, duplicate record names, characters outside ACGTN/IUPAC, unused rename keys.
    """
    import pysam

    from strandwise.io.sequence import _VALID

    rename = dict(rename or {})
    keep = set(keep) if keep is not None else None
    output = os.fspath(output)
    paths = [require_file(p, "FASTA input") for p in inputs]
    if not paths:
        raise ValueError("build_genome_fasta needs at least one input FASTA")
    valid = set(_VALID)
    seen: set[str] = set()
    used: set[str] = set()
    bgzip = output.endswith(".gz")
    with atomic_path(output) as tmp:
        out = pysam.BGZFile(tmp, "wb") if bgzip else open(tmp, "wb")
        try:
            for path in paths:
                with _open_text(path) as fh:
                    name, chunks = None, []

                    def flush():
                        if name is None:
                            return
                        if keep is not None and name not in keep:
                            return
                        seq = "".join(chunks)
                        bad = set(seq) - valid
                        if bad:
                            raise ValueError(
                                f"record {name!r} in {path} has characters outside ACGTN/IUPAC: "
                                f"{''.join(sorted(bad))[:10]!r}")
                        lines = [f">{name}\n"] + [seq[i:i + line_width] + "\n"
                                                  for i in range(0, len(seq), line_width)]
                        out.write("".join(lines).encode("ascii"))

                    for line in fh:
                        if line.startswith(">"):
                            flush()
                            old = _header_name(line)
                            if not old:
                                raise ValueError(f"empty FASTA header in {path}")
                            if old in rename:
                                used.add(old)
                            name = rename.get(old, old)
                            if name in seen:
                                raise ValueError(f"duplicate chromosome name {name!r} (from {path})")
                            seen.add(name)
                            chunks = []
                        elif name is None:
                            if line.strip():
                                raise ValueError(f"{path} does not start with a FASTA header ('>')")
                        else:
                            chunks.append(line.strip())
                    flush()
        finally:
            out.close()
        unused = sorted(set(rename) - used)
        if unused:
            raise ValueError(f"rename keys not found in any input FASTA: {', '.join(unused)}")
    for ext in (".fai", ".gzi"):
        if os.path.exists(output + ext):
            os.remove(output + ext)
    pysam.faidx(output)  # writes .fai (and .gzi for bgzip)
    _chmod_like_umask(output, output + ".fai", output + ".gzi")
    return output


def _chmod_like_umask(*paths) -> None:
    # mkstemp creates 0600 files; a genome is meant to be shared, so apply the usual umask.
    umask = os.umask(0)
    os.umask(umask)
    for p in paths:
        if os.path.exists(p):
            os.chmod(p, 0o666 & ~umask)


def read_chrom_sizes(source) -> dict[str, int]:
    """Chromosome sizes from a FASTA (``.fai`` built if needed), a ``.fai``/``chrom.sizes`` file,
    a :class:`Genome` or a mapping. Order is preserved."""
    if isinstance(source, Genome):
        return dict(source.chrom_sizes)
    if isinstance(source, Mapping):
        return {str(k): int(v) for k, v in source.items()}
    path = require_file(source, "chromosome sizes / FASTA")
    if path.endswith((".fai", ".sizes", ".txt", ".tsv")):
        sizes = {}
        with open(path) as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                parts = re.split(r"\s+", line.strip())
                if len(parts) < 2 or not parts[1].isdigit():
                    raise ValueError(f"{path}:{i}: expected 'name<TAB>length', got {line.strip()!r}")
                sizes[parts[0]] = int(parts[1])
        return sizes
    with Genome(path) as g:
        return dict(g.chrom_sizes)
