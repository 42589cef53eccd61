"""Variant files: VCF (plain or bgzip/BCF via pysam) and simple TSV tables.

Every reader returns a list of dicts ``{"chrom", "pos", "ref", "alt", "id"}`` with ``pos`` 1-based
(as in VCF) and multi-allelic ``alt`` fields left comma-separated (the scoring code splits them).

* ``.vcf`` — parsed as text: ``##`` meta lines and the ``#CHROM`` header are skipped; columns
  ``CHROM POS ID REF ALT`` are read (further columns ignored).
* ``.vcf.gz``, ``.vcf.bgz``, ``.bcf`` — read with ``pysam.VariantFile`` (bgzip or plain gzip).
* ``.tsv``, ``.txt``, ``.tsv.gz`` — tab-separated. With a header line (one that names a
  ``chrom``/``#chrom``/``chr`` or ``pos``/``position`` column, any case), columns are found by name: ``chrom``; ``pos``/``position``; ``ref``;
  ``alt``; optional ``id``/``name``/``rsid``. Without one, the order is ``chrom pos ref alt [id]``.
"""

from __future__ import annotations

import gzip
import os

from strandwise.io.fasta import require_file

__all__ = ["read_variants", "read_vcf", "read_variant_tsv"]

_VCF_GZ = (".vcf.gz", ".vcf.bgz", ".bcf")
_TSV = (".tsv", ".txt", ".tsv.gz", ".txt.gz")


def _record(path, lineno, chrom, pos, ref, alt, vid):
    where = f"{path}:{lineno}"
    if not chrom:
        raise ValueError(f"{where}: empty chromosome name")
    try:
        p = int(pos)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: position {pos!r} is not an integer") from None
    if p < 1:
        raise ValueError(f"{where}: position {p} must be >= 1 (positions are 1-based)")
    ref, alt = (ref or "").strip(), (alt or "").strip()
    if not ref or not alt:
        raise ValueError(f"{where}: empty REF or ALT")
    return {"chrom": str(chrom), "pos": p, "ref": ref, "alt": alt, "id": vid if vid else "."}


def read_vcf(path) -> list[dict]:
    """Read a VCF (``.vcf`` as text; ``.vcf.gz``/``.vcf.bgz``/``.bcf`` with pysam).

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        A data line with fewer than 5 columns, a non-integer or non-positive POS, empty REF/ALT, or a
        compressed file pysam cannot read.
    """
    path = require_file(path, "VCF file")
    if path.endswith(_VCF_GZ):
        try:
            import pysam
        except ImportError:
            raise ImportError("reading .vcf.gz/.bcf needs pysam (pip install pysam), or give a plain .vcf") from None
        try:
            vf = pysam.VariantFile(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path} as VCF/BCF: {exc}") from None
        out = []
        with vf:
            for i, rec in enumerate(vf, 1):
                alts = rec.alts or ()
                if not alts:
                    raise ValueError(f"{path}: record {i} ({rec.chrom}:{rec.pos}) has no ALT allele")
                out.append(_record(path, f"record {i}", rec.chrom, rec.pos, rec.ref, ",".join(alts),
                                   rec.id or "."))
        return out
    out = []
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            f = line.rstrip("\r\n").split("\t")
            if len(f) < 5:
                raise ValueError(f"{path}:{lineno}: a VCF data line needs at least 5 tab-separated "
                                 f"columns (CHROM POS ID REF ALT); got {len(f)}")
            out.append(_record(path, lineno, f[0], f[1], f[3], f[4], f[2]))
    return out


_NAMES = {"chrom": ("chrom", "#chrom", "chr", "chromosome"), "pos": ("pos", "position"),
          "ref": ("ref",), "alt": ("alt",), "id": ("id", "name", "rsid", "variant_id")}


def read_variant_tsv(path) -> list[dict]:
    """Read a tab-separated variant table (see the module docstring for the columns).

    Raises
    ------
    ValueError
        A header without the required columns, a row with too few columns, or bad values.
    """
    path = require_file(path, "variant table")
    opener = gzip.open if path.endswith(".gz") else open
    out, cols = [], None
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            f = line.rstrip("\r\n").split("\t")
            if cols is None:
                head = [x.strip().lower() for x in f]
                if any(h in _NAMES["chrom"] or h in _NAMES["pos"] for h in head):
                    cols = {}
                    for key, names in _NAMES.items():
                        hit = [j for j, h in enumerate(head) if h in names]
                        if hit:
                            cols[key] = hit[0]
                    missing = [k for k in ("chrom", "pos", "ref", "alt") if k not in cols]
                    if missing:
                        raise ValueError(f"{path}: header lacks column(s) {', '.join(missing)} "
                                         f"(found {', '.join(f)})")
                    continue
                cols = {"chrom": 0, "pos": 1, "ref": 2, "alt": 3, "id": 4}
            if line.startswith("#"):
                continue
            need = max(cols[k] for k in ("chrom", "pos", "ref", "alt")) + 1
            if len(f) < need:
                raise ValueError(f"{path}:{lineno}: expected at least {need} tab-separated columns "
                                 f"(chrom, pos, ref, alt); got {len(f)}")
            vid = f[cols["id"]] if "id" in cols and cols["id"] < len(f) else "."
            out.append(_record(path, lineno, f[cols["chrom"]], f[cols["pos"]], f[cols["ref"]],
                               f[cols["alt"]], vid))
    return out


def read_variants(path) -> list[dict]:
    """Read variants from a VCF (``.vcf``, ``.vcf.gz``, ``.vcf.bgz``, ``.bcf``) or a TSV table.

    Raises
    ------
    ValueError
        Unknown extension, an empty file, or a malformed line (file and line named).
    """
    p = os.fspath(path)
    low = p.lower()
    if low.endswith((".vcf",) + _VCF_GZ):
        out = read_vcf(p)
    elif low.endswith(_TSV):
        out = read_variant_tsv(p)
    else:
        raise ValueError(f"cannot tell the format of {p}: use .vcf, .vcf.gz, .bcf or .tsv")
    if not out:
        raise ValueError(f"no variants in {p}")
    return out
