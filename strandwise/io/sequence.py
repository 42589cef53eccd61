"""One-hot encoding and reverse complement of DNA.

One-hot DNA is ``(4, L)`` (or ``(N, 4, L)``) with alphabet order A, C, G, T; any other character
(N, IUPAC codes) encodes as an all-zero column. Because the channel order is A, C, G, T, the
complement of a one-hot column is the channel axis reversed.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "ALPHABET",
    "one_hot_encode",
    "one_hot_decode",
    "reverse_complement_one_hot",
    "string_reverse_complement",
]

ALPHABET = "ACGT"

_LOOKUP = np.full(256, -1, dtype=np.int8)
for _i, _b in enumerate(ALPHABET):
    _LOOKUP[ord(_b)] = _i
    _LOOKUP[ord(_b.lower())] = _i

# Characters a genome FASTA may legitimately contain: ACGT, N, IUPAC ambiguity codes, '-'.
_VALID = set("ACGTNRYSWKMBDHVUacgtnryswkmbdhvu-")

_COMPLEMENT = str.maketrans(
    "ACGTNRYSWKMBDHVacgtnryswkmbdhv", "TGCANYRSWMKVHDBtgcanyrswmkvhdb"
)


def one_hot_encode(sequence: str, dtype=torch.int8, strict: bool = True) -> torch.Tensor:
    """Encode a DNA string as a ``(4, L)`` one-hot tensor (A, C, G, T).

    Parameters
    ----------
    sequence : str
        DNA; case-insensitive. N and IUPAC codes become all-zero columns.
    dtype : torch.dtype
        Output dtype (int8 by default: 4 bytes per position saved vs float32).
    strict : bool
        If True, characters outside ACGTN/IUPAC raise ``ValueError`` naming the first one.

    Returns
    -------
    torch.Tensor, shape (4, L)
    """
    if not isinstance(sequence, str):
        raise TypeError(f"one_hot_encode expects a str; got {type(sequence).__name__}")
    raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
    idx = _LOOKUP[raw]
    if strict:
        bad = idx < 0
        if bad.any():
            for pos in np.flatnonzero(bad):
                ch = sequence[pos]
                if ch not in _VALID:
                    raise ValueError(
                        f"invalid character {ch!r} at position {pos} in DNA sequence "
                        f"(allowed: A, C, G, T, N and IUPAC codes)"
                    )
    out = np.zeros((4, len(idx)), dtype=np.int8)
    ok = idx >= 0
    out[idx[ok], np.flatnonzero(ok)] = 1
    return torch.from_numpy(out).to(dtype)


def one_hot_decode(x: torch.Tensor) -> str:
    """Inverse of :func:`one_hot_encode` for a ``(4, L)`` tensor; all-zero columns become N."""
    if x.ndim != 2 or x.shape[0] != 4:
        raise ValueError(f"one_hot_decode expects shape (4, L); got {tuple(x.shape)}")
    x = x.detach().cpu()
    chars = np.array(list("ACGTN"))
    idx = x.argmax(dim=0).numpy()
    idx[(x.sum(dim=0) == 0).numpy()] = 4
    return "".join(chars[idx])


def reverse_complement_one_hot(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of one-hot DNA ``(..., 4, L)``: flip channels and length."""
    if x.ndim < 2 or x.shape[-2] != 4:
        raise ValueError(f"expected one-hot of shape (..., 4, L); got {tuple(x.shape)}")
    return x.flip(-1).flip(-2)


def string_reverse_complement(sequence: str) -> str:
    """Reverse complement of a DNA string, IUPAC-aware and case-preserving."""
    return sequence.translate(_COMPLEMENT)[::-1]
