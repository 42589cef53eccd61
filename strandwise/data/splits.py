"""Chromosome splits (training / validation / test).

Defaults are upstream Cherimoya's hg38 lists (spec §4.9). Splits must be disjoint; the error names
the chromosomes that appear in more than one split.
"""

from __future__ import annotations

from typing import Sequence

__all__ = [
    "HG38_TRAINING_CHROMS",
    "HG38_VALIDATION_CHROMS",
    "HG38_TEST_CHROMS",
    "SPLIT_NAMES",
    "canonical_split",
    "check_splits_disjoint",
]

HG38_TRAINING_CHROMS: tuple[str, ...] = (
    "chr2", "chr4", "chr5", "chr7", *(f"chr{i}" for i in range(9, 20)), "chr21", "chr22",
    "chrX", "chrY",
)
HG38_VALIDATION_CHROMS: tuple[str, ...] = ("chr8", "chr20")
HG38_TEST_CHROMS: tuple[str, ...] = ("chr1", "chr3", "chr6")

#: Accepted spellings of each split.
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "valid", "val": "valid",
    "test": "test", "testing": "test",
}


def canonical_split(split: str) -> str:
    """``'training' → 'train'``, ``'validation' → 'valid'``, ``'test'``; else ``ValueError``."""
    try:
        return SPLIT_NAMES[str(split).lower()]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; use 'train', 'valid' or 'test'") from None


def check_splits_disjoint(
    training: Sequence[str], validation: Sequence[str], test: Sequence[str]
) -> None:
    """Raise ``ValueError`` naming every chromosome that is in more than one split."""
    named = {"training": list(training), "validation": list(validation), "test": list(test)}
    for name, chroms in named.items():
        if isinstance(chroms, str):
            raise TypeError(f"{name}_chroms must be a list of chromosome names, not a string")
        dup = sorted({c for c in chroms if chroms.count(c) > 1})
        if dup:
            raise ValueError(f"{name}_chroms lists {', '.join(dup)} more than once")
    shared = []
    pairs = [("training", "validation"), ("training", "test"), ("validation", "test")]
    for a, b in pairs:
        both = sorted(set(named[a]) & set(named[b]))
        if both:
            shared.append(f"{', '.join(both)} in both {a} and {b}")
    if shared:
        raise ValueError("chromosome splits must be disjoint: " + "; ".join(shared))
