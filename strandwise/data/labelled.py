"""Labelled DNA sequences for fine-tuning (spec ``caduceus.md`` §6.3–§6.4).

Readers (each returns :class:`LabelledSequences`):

* :func:`read_labelled_table` — CSV/TSV with a header naming a sequence column (``sequence`` or
  ``seq``) and a label column (``label``, ``labels`` or ``target``): GUE (``sequence,label``), the
  GB test files (``seq<TAB>label``, ``sequence,target`` with ``positive``/``negative``).
* :func:`read_gb_folder` — the Genomic Benchmarks download layout
  ``<dataset>/<split>/<class>/*.txt`` (one sequence per file; a class per folder).
* :func:`read_fasta_labelled` — FASTA + a two-column ``id<TAB>label`` file.
* :func:`read_gb_coordinates` — the official GB interval files
  ``<dataset>/<split>/<class>.csv.gz`` (``id,region,start,end,strand``; 0-based half-open) plus a
  genome FASTA; minus-strand intervals are reverse-complemented.

Class names are mapped to ints in sorted order (numeric labels keep their value), so
``negative → 0``, ``positive → 1``. A set with one class, an empty file or a malformed row raises a
``ValueError`` that names the file (and line).

:class:`LabelledDataset` tokenises as upstream's GB/NT loaders: left-padded with [PAD] to
``max_length``, right-truncated (the first ``max_length`` bp are kept), no special tokens; optional
RC augmentation drawn per ``(seed, epoch, idx)``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os

import numpy as np
import torch

from strandwise.data.sampler import epoch_seed
from strandwise.io.fasta import require_file

__all__ = [
    "LabelledSequences",
    "LabelledDataset",
    "read_labelled_table",
    "read_gb_folder",
    "read_fasta_labelled",
    "read_gb_coordinates",
    "read_gb_intervals",
    "read_labelled",
    "encode_labels",
    "kfold_indices",
    "train_valid_split",
]

_SEQ_COLS = ("sequence", "seq", "sequences")
_LABEL_COLS = ("label", "labels", "target", "class", "y")


@dataclasses.dataclass
class LabelledSequences:
    """Sequences with integer labels.

    Attributes
    ----------
    sequences : list of str
    labels : np.ndarray (n,) int64
    class_names : list of str
        ``class_names[k]`` is the name of label ``k``.
    ids : list of str
    """

    sequences: list
    labels: np.ndarray
    class_names: list
    ids: list

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx) -> "LabelledSequences":
        idx = np.asarray(idx, dtype=np.int64)
        return LabelledSequences([self.sequences[i] for i in idx], self.labels[idx], list(self.class_names),
                                 [self.ids[i] for i in idx])


def encode_labels(raw, source: str, class_names=None, min_classes: int = 2):
    """Map label strings to ints; returns ``(labels int64, class_names)``.

    Numeric labels ``0..K-1`` keep their values; other strings are sorted. ``class_names`` (from
    the training split) fixes the mapping for other splits.
    """
    raw = [str(x).strip() for x in raw]
    if class_names is None:
        uniq = sorted(set(raw))
        if all(u.lstrip("-").isdigit() for u in uniq):
            vals = sorted(int(u) for u in uniq)
            if vals[0] < 0:
                raise ValueError(f"{source}: negative class label {vals[0]}")
            class_names = [str(v) for v in range(vals[-1] + 1)]
        else:
            class_names = uniq
        if len(uniq) < min_classes:
            raise ValueError(
                f"{source}: only one class ({uniq[0]!r}) in {len(raw)} labelled sequences; "
                f"classification needs at least {min_classes} classes"
            )
    index = {c: i for i, c in enumerate(class_names)}
    out = np.empty(len(raw), dtype=np.int64)
    for i, r in enumerate(raw):
        key = str(int(r)) if r.lstrip("-").isdigit() else r
        if key not in index:
            raise ValueError(f"{source}: label {r!r} is not one of the classes {class_names}")
        out[i] = index[key]
    return out, list(class_names)


def _open_text(path: str):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def read_labelled_table(path, class_names=None, min_classes: int = 2) -> LabelledSequences:
    """Read a CSV/TSV (optionally gzipped) with a header naming sequence and label columns.

    Raises
    ------
    ValueError
        No recognised header, an empty file, a row with the wrong number of fields, an empty
        sequence, or fewer than ``min_classes`` classes (message names file and line).
    """
    path = require_file(path, "labelled sequence file")
    with _open_text(path) as fh:
        text = fh.read()
    lines = text.splitlines()
    if not any(l.strip() for l in lines):
        raise ValueError(f"{path}: the file is empty")
    header_line = lines[0]
    delim = "\t" if "\t" in header_line else ","
    reader = csv.reader(lines, delimiter=delim)
    header = [h.strip().lower() for h in next(reader)]
    try:
        si = next(header.index(c) for c in _SEQ_COLS if c in header)
        li = next(header.index(c) for c in _LABEL_COLS if c in header)
    except StopIteration:
        raise ValueError(
            f"{path}:1: header {header} must name a sequence column ({'/'.join(_SEQ_COLS)}) and a "
            f"label column ({'/'.join(_LABEL_COLS)})"
        ) from None
    seqs, raw, ids = [], [], []
    for lineno, row in enumerate(reader, 2):
        if not row or not any(f.strip() for f in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}:{lineno}: expected {len(header)} fields ({delim!r}-separated); got {len(row)}")
        s = row[si].strip()
        if not s:
            raise ValueError(f"{path}:{lineno}: empty sequence")
        if not row[li].strip():
            raise ValueError(f"{path}:{lineno}: empty label")
        seqs.append(s)
        raw.append(row[li])
        ids.append(f"{os.path.basename(path)}:{lineno}")
    if not seqs:
        raise ValueError(f"{path}: no labelled sequences after the header")
    labels, names = encode_labels(raw, path, class_names, min_classes)
    return LabelledSequences(seqs, labels, names, ids)


def read_gb_folder(root, split: str, class_names=None, min_classes: int = 2) -> LabelledSequences:
    """Genomic Benchmarks folder layout: ``root/split/<class>/<id>.txt``, one sequence per file.

    Raises
    ------
    FileNotFoundError
        Missing ``root/split``.
    ValueError
        A split with fewer than ``min_classes`` class folders, an empty class folder or an empty
        sequence file.
    """
    d = os.path.join(os.fspath(root), split)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"Genomic Benchmarks split folder not found: {d}")
    classes = sorted(c for c in os.listdir(d) if os.path.isdir(os.path.join(d, c)))
    if len(classes) < min_classes:
        raise ValueError(
            f"{d}: found {len(classes)} class folder(s) {classes}; the layout is one folder per class "
            f"and classification needs at least {min_classes}"
        )
    seqs, raw, ids = [], [], []
    for c in classes:
        files = sorted(f for f in os.listdir(os.path.join(d, c)) if not f.startswith("."))
        if not files:
            raise ValueError(f"{os.path.join(d, c)}: class folder is empty")
        for f in files:
            p = os.path.join(d, c, f)
            with open(p, encoding="utf-8") as fh:
                s = "".join(fh.read().split())
            if not s:
                raise ValueError(f"{p}: empty sequence file")
            seqs.append(s)
            raw.append(c)
            ids.append(f"{c}/{os.path.splitext(f)[0]}")
    labels, names = encode_labels(raw, d, class_names or classes, min_classes)
    return LabelledSequences(seqs, labels, names, ids)


def read_fasta_labelled(fasta, labels_file, class_names=None, min_classes: int = 2) -> LabelledSequences:
    """FASTA records labelled by a two-column file ``id<TAB>label`` (or comma-separated).

    Raises
    ------
    ValueError
        A malformed labels row (line named), an id labelled twice, a record without a label, or a
        single class.
    """
    from strandwise.io.records import read_fasta_records

    path = require_file(labels_file, "labels file")
    table = {}
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = [p.strip() for p in (line.rstrip("\r\n").split("\t") if "\t" in line else line.split(","))]
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise ValueError(f"{path}:{lineno}: expected two fields 'id<TAB>label'; got {line.strip()!r}")
            if lineno == 1 and parts[1].lower() in _LABEL_COLS:
                continue  # header
            if parts[0] in table:
                raise ValueError(f"{path}:{lineno}: id {parts[0]!r} is labelled twice")
            table[parts[0]] = parts[1]
    if not table:
        raise ValueError(f"{path}: the labels file is empty")
    seqs, raw, ids = [], [], []
    for name, seq in read_fasta_records(fasta):
        if name not in table:
            raise ValueError(f"{fasta}: record {name!r} has no label in {path}")
        seqs.append(seq)
        raw.append(table[name])
        ids.append(name)
    labels, names = encode_labels(raw, path, class_names, min_classes)
    return LabelledSequences(seqs, labels, names, ids)


def read_gb_intervals(root, split: str):
    """Parse the GB coordinate files ``root/split/<class>.csv.gz``.

    Returns
    -------
    dict[str, list of (id, region, start, end, strand)]
        Per class, rows in file order (0-based half-open coordinates).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing folder, fewer than two class files, a malformed row (file and line named).
    """
    d = os.path.join(os.fspath(root), split)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"Genomic Benchmarks coordinate folder not found: {d}")
    files = sorted(f for f in os.listdir(d) if f.endswith((".csv", ".csv.gz")))
    if len(files) < 2:
        raise ValueError(f"{d}: found {len(files)} class file(s); need one <class>.csv(.gz) per class, at least 2")
    out = {}
    for f in files:
        p = os.path.join(d, f)
        cls = f[: -len(".csv.gz")] if f.endswith(".csv.gz") else f[: -len(".csv")]
        rows = []
        with _open_text(p) as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            need = ["id", "region", "start", "end", "strand"]
            if header[:5] != need:
                raise ValueError(f"{p}:1: expected header {','.join(need)}; got {','.join(header)}")
            for lineno, row in enumerate(reader, 2):
                if not row:
                    continue
                if len(row) < 5:
                    raise ValueError(f"{p}:{lineno}: expected 5 fields id,region,start,end,strand; got {len(row)}")
                try:
                    s, e = int(row[2]), int(row[3])
                except ValueError:
                    raise ValueError(f"{p}:{lineno}: start/end must be integers; got {row[2]!r}, {row[3]!r}") from None
                if s < 0 or e <= s:
                    raise ValueError(f"{p}:{lineno}: invalid interval {row[1]}:{s}-{e}")
                strand = row[4].strip() or "+"  # some GB files (regulatory) leave the strand empty
                if strand not in ("+", "-", "."):
                    raise ValueError(f"{p}:{lineno}: strand must be '+', '-' or empty; got {row[4]!r}")
                rows.append((row[0], row[1], s, e, "-" if strand == "-" else "+"))
        if not rows:
            raise ValueError(f"{p}: no intervals")
        out[cls] = rows
    return out


def read_gb_coordinates(root, split: str, genome, class_names=None, chrom_prefix: str = "") -> LabelledSequences:
    """Sequences of the GB interval files cut from ``genome`` (a FASTA path or SequenceStore).

    ``chrom_prefix`` is prepended to the file's region names (GB files use Ensembl names such as
    ``13``; a UCSC genome needs ``chr``). Minus-strand intervals are reverse-complemented.
    """
    from strandwise.io.records import SequenceStore
    from strandwise.io.sequence import string_reverse_complement

    store = genome if isinstance(genome, SequenceStore) else SequenceStore(genome)
    rows = read_gb_intervals(root, split)
    seqs, raw, ids = [], [], []
    for cls, rs in rows.items():
        for rid, region, s, e, strand in rs:
            seq = store.fetch(chrom_prefix + region, s, e)
            seqs.append(string_reverse_complement(seq) if strand == "-" else seq)
            raw.append(cls)
            ids.append(rid)
    labels, names = encode_labels(raw, os.path.join(os.fspath(root), split), class_names or sorted(rows))
    return LabelledSequences(seqs, labels, names, ids)


def read_labelled(source: str, split: str | None = None, fmt: str = "auto", genome=None,
                  labels_file=None, class_names=None) -> LabelledSequences:
    """Dispatch on ``fmt`` (``table``, ``gb_folder``, ``fasta``, ``gb_coordinates``) or guess it."""
    if fmt == "auto":
        if os.path.isdir(source):
            sub = os.path.join(source, split or "")
            fmt = "gb_coordinates" if any(f.endswith((".csv.gz", ".csv")) for f in os.listdir(sub)) else "gb_folder"
        elif source.endswith((".fa", ".fasta", ".fa.gz", ".fasta.gz", ".fna", ".fna.gz")):
            fmt = "fasta"
        else:
            fmt = "table"
    if fmt == "table":
        return read_labelled_table(source, class_names)
    if fmt == "gb_folder":
        return read_gb_folder(source, split, class_names)
    if fmt == "fasta":
        if labels_file is None:
            raise ValueError(f"{source}: a FASTA of labelled sequences needs a labels file (id<TAB>label)")
        return read_fasta_labelled(source, labels_file, class_names)
    if fmt == "gb_coordinates":
        if genome is None:
            raise ValueError(f"{source}: Genomic Benchmarks coordinate files need a genome FASTA to cut sequences from")
        return read_gb_coordinates(source, split, genome, class_names)
    raise ValueError(f"unknown labelled-data format {fmt!r}; use table, gb_folder, fasta or gb_coordinates")


def kfold_indices(labels, k: int = 5, seed: int = 1):
    """Stratified k-fold: a list of ``(train_idx, test_idx)``; each example is tested exactly once.

    Within each class the examples are permuted by ``RandomState(seed)`` and dealt round-robin to
    the folds, so class proportions match across folds to within one example.
    """
    labels = np.asarray(labels)
    if k < 2 or k > len(labels):
        raise ValueError(f"k must be in [2, n={len(labels)}]; got {k}")
    rng = np.random.RandomState(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def train_valid_split(n: int, valid_fraction: float = 0.1, seed: int = 1):
    """Random ``(train_idx, valid_idx)`` with ``round(valid_fraction · n)`` validation examples."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1); got {valid_fraction}")
    perm = np.random.RandomState(seed).permutation(n)
    nv = max(1, int(round(valid_fraction * n)))
    return np.sort(perm[nv:]), np.sort(perm[:nv])


class LabelledDataset(torch.utils.data.Dataset):
    """``(input_ids (max_length,), label)`` keyed by ``(epoch, idx)`` (or a plain ``idx``).

    Parameters
    ----------
    data : LabelledSequences
    max_length : int
        Tokens per example: shorter sequences are left-padded with [PAD] (4), longer ones keep their
        first ``max_length`` bp (upstream GB/NT).
    rc_aug : bool
        Reverse-complement each example with probability 0.5 per epoch (Ph training).
    shuffle : bool
        Permute the order each epoch.
    seed : int
    uppercase : bool
        Upper-case before tokenising (default; upstream's downstream tokenizer does not, which maps
        soft-masked bases to [UNK]).
    """

    def __init__(self, data: LabelledSequences, max_length: int, rc_aug: bool = False, shuffle: bool = False,
                 seed: int = 0, uppercase: bool = True):
        from strandwise.io.records import ID_LUT

        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int; got {max_length!r}")
        self.data, self.max_length = data, max_length
        self.rc_aug, self.shuffle, self.seed = bool(rc_aug), bool(shuffle), int(seed)
        lut = ID_LUT.copy()
        if not uppercase:
            for c in "acgtn":
                lut[ord(c)] = 6  # [UNK], upstream downstream tokenizer
        self._lut = lut
        self.labels = torch.as_tensor(data.labels, dtype=torch.int64)
        self._order = (None, None)

    def __len__(self) -> int:
        return len(self.data)

    def _order_for(self, epoch: int):
        if self._order[0] != epoch:
            n = len(self)
            self._order = (epoch, np.random.RandomState(epoch_seed(self.seed, epoch)).permutation(n)
                           if self.shuffle else np.arange(n))
        return self._order[1]

    def encode(self, seq: str, rc: bool = False) -> torch.Tensor:
        """Left-padded, right-truncated ids ``(max_length,)``; RC is of the full string, then cut."""
        from strandwise.io.sequence import string_reverse_complement

        if rc:
            seq = string_reverse_complement(seq)
        raw = np.frombuffer(seq[: self.max_length].encode("ascii", errors="replace"), dtype=np.uint8)
        ids = np.full(self.max_length, 4, dtype=np.int64)
        ids[self.max_length - len(raw):] = self._lut[raw]
        return torch.from_numpy(ids)

    def __getitem__(self, key):
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        j = int(self._order_for(epoch)[idx])
        rc = False
        if self.rc_aug:
            rc = bool(np.random.default_rng([self.seed, int(epoch), int(idx)]).random() > 0.5)
        return self.encode(self.data.sequences[j], rc), self.labels[j]
