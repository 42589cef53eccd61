"""Character-level DNA tokenizer of Caduceus, and reverse complement of token ids.

The vocabulary is fixed (spec ``caduceus.md`` §2)::

    0 [CLS]  1 [SEP]  2 [BOS]  3 [MASK]  4 [PAD]  5 [RESERVED]  6 [UNK]
    7 A      8 C      9 G      10 T      11 N

The model pads the vocabulary to 16 (ids 12–15 never appear in text). The complement of an id is
A↔T (7↔10), C↔G (8↔9); every other id is its own complement.

Unknown characters
------------------
Upstream maps any character outside the alphabet to ``[UNK]`` (6), silently. strandwise raises a
``ValueError`` naming the character and its position by default (``unknown="error"``), because a
non-ACGTN character in a DNA string is almost always a bug upstream of the model (wrong file, RNA,
protein, IUPAC codes). ``unknown="unk"`` reproduces upstream; ``unknown="N"`` maps them to N (11).
With ``uppercase=False`` (the downstream GB/NT behaviour) lowercase bases count as unknown.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from strandwise.io.sequence import string_reverse_complement

__all__ = [
    "CharacterTokenizer",
    "CaduceusTokenizer",
    "SPECIAL_TOKENS",
    "VOCAB",
    "PAD_ID",
    "MASK_ID",
    "UNK_ID",
    "SEP_ID",
    "CLS_ID",
    "N_ID",
    "COMPLEMENT_IDS",
    "complement_map_tensor",
    "reverse_complement_ids",
    "ids_to_one_hot",
    "n_to_pad",
]

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
CHARACTERS = ("A", "C", "G", "T", "N")
#: token -> id, exactly spec §2.
VOCAB = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(7)
A_ID, C_ID, G_ID, T_ID, N_ID = 7, 8, 9, 10, 11
#: id -> complement id for the 12 real ids.
COMPLEMENT_IDS = {i: i for i in range(12)} | {A_ID: T_ID, C_ID: G_ID, G_ID: C_ID, T_ID: A_ID}

_UNKNOWN_MODES = ("error", "unk", "N")


def complement_map_tensor(size: int = 16, complement_map: dict | None = None) -> torch.Tensor:
    """Complement permutation as an int64 tensor of length ``size`` (identity past the map).

    >>> complement_map_tensor().tolist()
    [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
    """
    cm = COMPLEMENT_IDS if complement_map is None else {int(k): int(v) for k, v in complement_map.items()}
    return torch.tensor([cm.get(i, i) for i in range(size)], dtype=torch.int64)


def reverse_complement_ids(ids: torch.Tensor, complement_map=None) -> torch.Tensor:
    """``rc(ids) = comp[flip_L(ids)]`` for ids of shape ``(..., L)``.

    Parameters
    ----------
    ids : torch.Tensor, shape (..., L), integer
    complement_map : torch.Tensor (V,) or dict, optional
        Defaults to the §2 table padded to 16.

    Returns
    -------
    torch.Tensor, same shape and dtype as ``ids``.
    """
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.ndim < 1:
        raise TypeError("reverse_complement_ids expects an integer tensor of shape (..., L)")
    if complement_map is None or isinstance(complement_map, dict):
        size = max(16, int(ids.max()) + 1) if ids.numel() else 16
        comp = complement_map_tensor(size, complement_map)
    else:
        comp = complement_map.to(torch.int64)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= comp.numel()):
        raise ValueError(f"token ids must lie in [0, {comp.numel()}); got [{int(ids.min())}, {int(ids.max())}]")
    return comp.to(ids.device)[ids.flip(-1).long()].to(ids.dtype)


def ids_to_one_hot(ids: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """One-hot ``(..., 4, L)`` (A, C, G, T) of token ids ``(..., L)``; N and specials are all-zero.

    Matches :func:`strandwise.io.one_hot_encode` of the decoded string, so that
    ``ids_to_one_hot(reverse_complement_ids(x)) == reverse_complement_one_hot(ids_to_one_hot(x))``.
    """
    base = (ids.long() - A_ID)
    valid = (base >= 0) & (base < 4)
    out = torch.nn.functional.one_hot(base.clamp(0, 3), 4).to(dtype) * valid[..., None].to(dtype)
    return out.movedim(-1, -2)


def n_to_pad(ids: torch.Tensor) -> torch.Tensor:
    """Replace N (11) by [PAD] (4), as the upstream pretraining dataset does (N is never a target)."""
    return torch.where(ids == N_ID, torch.full_like(ids, PAD_ID), ids)


class CharacterTokenizer:
    """Character tokenizer with the fixed Caduceus vocabulary (spec §2).

    Parameters
    ----------
    model_max_length : int
        Longest allowed tokenised sequence (special tokens included). Longer input raises unless
        ``truncation=True`` is passed (then the first ``max_length`` tokens are kept, as HF does).
    padding_side : {"left", "right"}
        Where [PAD] (4) goes when padding; upstream uses "left".
    uppercase : bool
        Upper-case characters before lookup (the pretraining/hub behaviour; default). ``False`` is
        the downstream GB/NT ``CharacterTokenizer`` behaviour, where lowercase is unknown.
    unknown : {"error", "unk", "N"}
        What to do with a character outside A, C, G, T, N (see the module docstring).
    add_eos : bool
        Append [SEP] (1) by default (upstream pretraining appends it, then drops it before MLM).
        Default False: no special tokens at inference, matching training (spec §2).

    Attributes
    ----------
    vocab : dict[str, int]
    complement_map : dict[int, int]
        id -> complement id (12 entries).
    pad_token_id, mask_token_id, unk_token_id, sep_token_id, cls_token_id : int
    """

    def __init__(
        self,
        model_max_length: int = 131072,
        padding_side: str = "left",
        uppercase: bool = True,
        unknown: str = "error",
        add_eos: bool = False,
    ):
        if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length < 1:
            raise ValueError(f"model_max_length must be a positive int; got {model_max_length!r}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right'; got {padding_side!r}")
        if unknown not in _UNKNOWN_MODES:
            raise ValueError(f"unknown must be one of {_UNKNOWN_MODES}; got {unknown!r}")
        self.model_max_length = model_max_length
        self.padding_side = padding_side
        self.uppercase = bool(uppercase)
        self.unknown = unknown
        self.add_eos = bool(add_eos)
        self.vocab = dict(VOCAB)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.complement_map = dict(COMPLEMENT_IDS)
        self.pad_token_id, self.mask_token_id, self.unk_token_id = PAD_ID, MASK_ID, UNK_ID
        self.sep_token_id, self.cls_token_id, self.eos_token_id = SEP_ID, CLS_ID, SEP_ID
        # Byte lookup table: -1 = unknown character.
        table = np.full(256, -1, dtype=np.int64)
        for ch in CHARACTERS:
            table[ord(ch)] = self.vocab[ch]
            if self.uppercase:
                table[ord(ch.lower())] = self.vocab[ch]
        self._table = table

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------ encoding

    def _char_ids(self, sequence: str) -> np.ndarray:
        if not isinstance(sequence, str):
            raise TypeError(f"expected a DNA str; got {type(sequence).__name__}")
        raw = np.frombuffer(sequence.encode("utf-8", errors="replace"), dtype=np.uint8)
        if len(raw) != len(sequence):  # multi-byte characters: never DNA
            raw = np.array([ord(c) if ord(c) < 256 else 0 for c in sequence], dtype=np.int64)
        ids = self._table[raw]
        bad = ids < 0
        if bad.any():
            if self.unknown == "error":
                pos = int(np.flatnonzero(bad)[0])
                hint = " (lowercase is unknown with uppercase=False)" if sequence[pos] in "acgtn" else ""
                raise ValueError(
                    f"unknown character {sequence[pos]!r} at position {pos}{hint}; allowed: "
                    f"{', '.join(CHARACTERS)}. Pass unknown='unk' (upstream behaviour, id 6) or "
                    f"unknown='N' to map such characters instead of failing."
                )
            ids = ids.copy()
            ids[bad] = UNK_ID if self.unknown == "unk" else N_ID
        return ids

    def encode(
        self,
        sequence: str,
        add_special_tokens: bool | None = None,
        truncation: bool = False,
        max_length: int | None = None,
    ) -> list[int]:
        """Token ids of one sequence.

        Parameters
        ----------
        sequence : str
        add_special_tokens : bool, optional
            Append [SEP] (1); defaults to the tokenizer's ``add_eos``.
        truncation : bool
            Keep the first ``max_length`` tokens instead of raising when too long.
        max_length : int, optional
            Defaults to ``model_max_length``; may not exceed it.

        Returns
        -------
        list[int]
        """
        max_length = self._max_length(max_length)
        ids = self._char_ids(sequence).tolist()
        if self.add_eos if add_special_tokens is None else add_special_tokens:
            ids.append(SEP_ID)
        if len(ids) > max_length:
            if not truncation:
                raise ValueError(
                    f"sequence of {len(ids)} tokens exceeds max_length={max_length} "
                    f"(model_max_length={self.model_max_length}); pass truncation=True to keep the "
                    f"first {max_length} tokens"
                )
            ids = ids[:max_length]
        return ids

    def _max_length(self, max_length):
        if max_length is None:
            return self.model_max_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int; got {max_length!r}")
        if max_length > self.model_max_length:
            raise ValueError(
                f"max_length={max_length} exceeds model_max_length={self.model_max_length}"
            )
        return max_length

    def __call__(
        self,
        sequences: str | Sequence[str],
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool | None = None,
        return_tensors: str | None = "pt",
    ) -> dict:
        """Encode one sequence or a batch, with padding and an attention mask.

        Parameters
        ----------
        sequences : str or sequence of str
        padding : bool or {"longest", "max_length", "do_not_pad"}
            ``True``/"longest" pads to the longest in the batch; "max_length" pads to
            ``max_length`` (or ``model_max_length``). Padding uses [PAD] = 4 on ``padding_side``.
        truncation, max_length, add_special_tokens
            As in :meth:`encode`.
        return_tensors : {"pt", None}
            "pt" returns int64 tensors of shape (B, L) (a batch of one for a single str); None
            returns lists.

        Returns
        -------
        dict with ``input_ids`` and ``attention_mask`` (1 for tokens, 0 for padding).
        """
        single = isinstance(sequences, str)
        seqs = [sequences] if single else list(sequences)
        encoded = [self.encode(s, add_special_tokens, truncation, max_length) for s in seqs]
        if padding is True or padding == "longest":
            target = max((len(e) for e in encoded), default=0)
        elif padding == "max_length":
            target = self._max_length(max_length)
        elif padding in (False, None, "do_not_pad"):
            target = None
        else:
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length'; got {padding!r}")
        ids_out, mask_out = [], []
        for e in encoded:
            mask = [1] * len(e)
            if target is not None and len(e) < target:
                pad = [PAD_ID] * (target - len(e))
                zeros = [0] * (target - len(e))
                e, mask = (pad + e, zeros + mask) if self.padding_side == "left" else (e + pad, mask + zeros)
            ids_out.append(e)
            mask_out.append(mask)
        if return_tensors == "pt":
            if len({len(e) for e in ids_out}) > 1:
                raise ValueError("sequences have different lengths; pass padding=True to batch them")
            ids_t = torch.tensor(ids_out, dtype=torch.int64).reshape(len(ids_out), -1)
            mask_t = torch.tensor(mask_out, dtype=torch.int64).reshape(len(ids_out), -1)
            return {"input_ids": ids_t, "attention_mask": mask_t}
        if return_tensors is not None:
            raise ValueError(f"return_tensors must be 'pt' or None; got {return_tensors!r}")
        if single:
            return {"input_ids": ids_out[0], "attention_mask": mask_out[0]}
        return {"input_ids": ids_out, "attention_mask": mask_out}

    batch_encode = __call__

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        """String of a 1-D id sequence. Special tokens print as ``[PAD]`` etc. unless skipped."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"decode expects a 1-D id sequence; got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if i not in self.ids_to_tokens:
                raise ValueError(f"token id {i} is not in the vocabulary (0..{len(self.vocab) - 1})")
            if skip_special_tokens and i < A_ID:
                continue
            out.append(self.ids_to_tokens[i])
        return "".join(out)

    def batch_decode(self, ids, skip_special_tokens: bool = False) -> list[str]:
        """:meth:`decode` for each row of a (B, L) tensor or list of lists."""
        return [self.decode(row, skip_special_tokens) for row in ids]

    # ------------------------------------------------------------------ strands

    def complement_map_tensor(self, size: int = 16) -> torch.Tensor:
        """The complement permutation padded with identity to ``size`` (the model's vocab)."""
        return complement_map_tensor(size, self.complement_map)

    def reverse_complement_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """RC of token ids ``(..., L)``; see :func:`reverse_complement_ids`."""
        return reverse_complement_ids(ids)

    @staticmethod
    def reverse_complement(sequence: str) -> str:
        """String reverse complement (case-preserving; non-ACGTN characters complement as IUPAC)."""
        return string_reverse_complement(sequence)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_max_length={self.model_max_length}, "
            f"padding_side={self.padding_side!r}, uppercase={self.uppercase}, "
            f"unknown={self.unknown!r}, add_eos={self.add_eos})"
        )


def CaduceusTokenizer(model_max_length: int = 131072, **kwargs) -> CharacterTokenizer:
    """The hub tokenizer's defaults: uppercase, left padding, ``model_max_length`` 131072."""
    return CharacterTokenizer(model_max_length=model_max_length, **kwargs)
