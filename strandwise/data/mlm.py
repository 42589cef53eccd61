"""Masked-language-model windows for Caduceus pretraining (spec ``caduceus.md`` §6.1).

Windows
-------
Fixed-length windows of ``L`` bp are cut from each interval ``[s, e)`` (a BED file, or whole
chromosomes): starts ``s, s + stride, …`` while ``< e``. A window past the chromosome end is
shifted back so that it ends at the chromosome end; one starting before 0 is shifted to 0 (as
upstream); when several starts of one interval shift onto the same last window it is kept once
(upstream repeats it; the repeats are counted in ``skipped``). Sequences shorter than ``L`` give no
window (counted in ``skipped``). An interval that starts past its chromosome's end is an error. Splits come from
chromosome lists (``valid_chroms``/``test_chroms``, the rest trains) or from a BED 4th column
``train``/``valid``/``test`` (upstream's ``sequences_human.bed`` layout).

Tokens and masking
------------------
Ids as the tokenizer (A 7, C 8, G 9, T 10, N 11); N is then replaced by [PAD] = 4 in input and
target, so N is never a target. Each position is selected with probability 0.15; a selected
position becomes [MASK] (3) with probability 0.8, else (with probability 0.5) a uniform random id
in ``0..11`` (all 12 tokenizer ids, as upstream), else stays. Targets are the original id at
selected positions and 4 (the ignore index) elsewhere.

Determinism
-----------
Item ``(epoch, idx)`` is a pure function of ``(seed, epoch, idx)``: the epoch's window order is
``RandomState(epoch_seed(seed, epoch)).permutation``; the RC coin flip and the masks come from
``numpy.random.default_rng([seed, epoch, idx])``. So DataLoader workers and device count never
change a batch. Use with :class:`~strandwise.data.sampler.EpochBatchSampler`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from strandwise.data.sampler import epoch_seed
from strandwise.io.records import SequenceStore

__all__ = [
    "MASK_PROB",
    "MLMWindows",
    "MLMWindowDataset",
    "mlm_mask",
    "make_windows",
    "split_windows",
]

MASK_PROB = 0.15
MASK_ID, PAD_ID, N_ID = 3, 4, 11
#: id -> complement id over the 12 tokenizer ids (spec §2).
_COMP = np.array([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11], dtype=np.uint8)


def mlm_mask(ids: np.ndarray, rng: np.random.Generator, mask_prob: float = MASK_PROB,
             mask_frac: float = 0.8, random_frac: float = 0.5, n_random_ids: int = 12):
    """Upstream BERT-style masking of one sequence.

    Parameters
    ----------
    ids : np.ndarray, shape (L,), integer
        Token ids (N already replaced by PAD for pretraining).
    rng : numpy.random.Generator
    mask_prob : float
        Selection probability (0.15).
    mask_frac : float
        Share of selected positions replaced by [MASK] (0.8).
    random_frac : float
        Share of the *remaining* selected positions replaced by a random id (0.5, i.e. 10 %).
    n_random_ids : int
        Random ids are uniform over ``0 .. n_random_ids − 1`` (12: every tokenizer id).

    Returns
    -------
    inputs, targets : np.ndarray (L,) int64
        ``targets`` is the original id at selected positions and 4 elsewhere.
    """
    ids = np.asarray(ids, dtype=np.int64)
    L = ids.shape[0]
    # One draw of each kind per position, in a fixed order, so results do not depend on counts.
    u_sel, u_mask, u_rand = rng.random(L), rng.random(L), rng.random(L)
    rand_ids = rng.integers(0, n_random_ids, L)
    sel = u_sel < mask_prob
    targets = np.where(sel, ids, PAD_ID)
    inputs = ids.copy()
    to_mask = sel & (u_mask < mask_frac)
    to_rand = sel & ~to_mask & (u_rand < random_frac)
    inputs[to_mask] = MASK_ID
    inputs[to_rand] = rand_ids[to_rand]
    return inputs, targets


@dataclasses.dataclass
class MLMWindows:
    """Window table: ``chrom`` (object array), ``start`` (int64), plus the window ``length``."""

    chrom: np.ndarray
    start: np.ndarray
    length: int
    skipped: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.start)

    def subset(self, mask) -> "MLMWindows":
        return MLMWindows(self.chrom[mask], self.start[mask], self.length, dict(self.skipped))


def make_windows(chrom_sizes: dict, length: int, intervals=None, stride: int | None = None,
                 chroms=None, source: str = "the BED file") -> tuple[MLMWindows, np.ndarray]:
    """Cut fixed-length windows from intervals (or whole chromosomes).

    Parameters
    ----------
    chrom_sizes : dict[str, int]
    length : int
        Window length ``L``.
    intervals : Intervals, optional
        :class:`~strandwise.io.intervals.Intervals` (a BED); default: every chromosome whole.
        With ``extra`` columns, the first is kept as the row's split label.
    stride : int, optional
        Distance between window starts (default ``L``: non-overlapping).
    chroms : iterable of str, optional
        Restrict to these chromosomes.
    source : str
        Names the intervals in error messages (the BED path).

    Returns
    -------
    windows : MLMWindows
    split_labels : np.ndarray of object
        The BED 4th column of each window's row ('' when absent).

    Raises
    ------
    ValueError
        Non-positive length/stride; a BED chromosome missing from the FASTA; an interval that
        starts at or past its chromosome's end (a different genome build: its windows would all
        collapse onto the chromosome's last ``L`` bp); a 4th column that is not a split name.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"window length must be a positive int; got {length!r}")
    stride = length if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1; got {stride}")
    keep = None if chroms is None else set(chroms)
    if intervals is None:
        rows = [(c, 0, n, "") for c, n in chrom_sizes.items()]
    else:
        from strandwise.io.fasta import check_chroms_present

        from strandwise.data.splits import SPLIT_NAMES

        check_chroms_present(sorted(set(intervals.chrom)), chrom_sizes, source, "the FASTA")
        labels = [(e[0] if e else "") for e in intervals.extra] if intervals.extra is not None else [""] * len(intervals)
        rows = list(zip(intervals.chrom, intervals.start.tolist(), intervals.end.tolist(), labels))
        for i, (c, s, e, lab) in enumerate(rows):
            if s >= chrom_sizes[c]:
                raise ValueError(
                    f"{source}: interval {i + 1} ({c}:{s}-{e}) starts at or past the end of {c} "
                    f"({chrom_sizes[c]:,} bp in the FASTA); is the BED file for another genome build?"
                )
            if lab and str(lab).lower() not in SPLIT_NAMES:
                raise ValueError(
                    f"{source}: interval {i + 1} ({c}:{s}-{e}) has 4th column {lab!r}; a 4th column must be "
                    f"the split (train, valid or test). Keep 3 columns to split by valid_chroms/test_chroms"
                )
    out_c, out_s, out_lab = [], [], []
    skipped = {"sequence shorter than the window": 0, "window repeated by the shift back at the chromosome end": 0}
    for c, s, e, lab in rows:
        if keep is not None and c not in keep:
            continue
        size = chrom_sizes[c]
        if size < length:
            skipped["sequence shorter than the window"] += 1
            continue
        n = max(1, math.ceil((e - s) / stride))
        starts = s + stride * np.arange(n, dtype=np.int64)
        starts = np.clip(np.minimum(starts, size - length), 0, None)  # shift back at the end
        # several starts past the end all shift to the same last window: keep it once, count the rest
        starts = np.unique(starts)
        skipped["window repeated by the shift back at the chromosome end"] += n - len(starts)
        n = len(starts)
        out_c.extend([c] * n)
        out_s.append(starts)
        out_lab.extend([lab] * n)
    start = np.concatenate(out_s) if out_s else np.zeros(0, np.int64)
    return (MLMWindows(np.array(out_c, dtype=object), start, length, skipped),
            np.array(out_lab, dtype=object))


def split_windows(windows: MLMWindows, split_labels, valid_chroms=(), test_chroms=()) -> dict:
    """``{'train', 'valid', 'test'}`` -> :class:`MLMWindows`.

    A non-empty BED split column wins; otherwise chromosomes in ``valid_chroms``/``test_chroms``
    go to those splits and the rest trains.
    """
    from strandwise.data.splits import canonical_split

    valid_chroms, test_chroms = set(valid_chroms), set(test_chroms)
    both = valid_chroms & test_chroms
    if both:
        raise ValueError(f"chromosomes {sorted(both)} are in both valid_chroms and test_chroms")
    labels = np.asarray(split_labels, dtype=object)
    split = np.where(np.isin(windows.chrom, list(valid_chroms)), "valid",
                     np.where(np.isin(windows.chrom, list(test_chroms)), "test", "train")).astype(object)
    has = np.array([bool(x) for x in labels], dtype=bool)
    if has.any():
        split[has] = [canonical_split(x) for x in labels[has]]
    return {k: windows.subset(split == k) for k in ("train", "valid", "test")}


class MLMWindowDataset(torch.utils.data.Dataset):
    """Masked-LM examples keyed by ``(epoch, idx)``: ``(input_ids (L,), targets (L,))`` int64.

    Parameters
    ----------
    store : SequenceStore
    windows : MLMWindows
    seed : int
    rc_aug : bool
        Reverse-complement each window with probability 0.5 (the Ph recipe; off for PS).
    shuffle : bool
        Permute the window order each epoch (training); False keeps the table order.
    fixed_masks : bool
        Draw the masks as epoch 0 whatever the epoch (validation: the same masks every time).
    n_to_pad : bool
        Replace N by [PAD] before masking (upstream pretraining).
    mask_prob : float
    """

    def __init__(self, store: SequenceStore, windows: MLMWindows, seed: int = 0, rc_aug: bool = False,
                 shuffle: bool = True, fixed_masks: bool = False, n_to_pad: bool = True,
                 mask_prob: float = MASK_PROB):
        if not 0.0 <= mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in [0, 1]; got {mask_prob}")
        self.store, self.windows = store, windows
        self.seed, self.rc_aug, self.shuffle = int(seed), bool(rc_aug), bool(shuffle)
        self.fixed_masks, self.n_to_pad, self.mask_prob = bool(fixed_masks), bool(n_to_pad), float(mask_prob)
        self._order = (None, None)

    def __len__(self) -> int:
        return len(self.windows)

    def _order_for(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:
            n = len(self)
            order = (np.random.RandomState(epoch_seed(self.seed, epoch)).permutation(n)
                     if self.shuffle else np.arange(n))
            self._order = (epoch, order)
        return self._order[1]

    def window_ids(self, j: int) -> np.ndarray:
        """Raw token ids of window ``j`` of the table (no RC, no masking), int64."""
        c, s = self.windows.chrom[j], int(self.windows.start[j])
        return self.store.fetch_ids(c, s, s + self.windows.length).astype(np.int64)

    def __getitem__(self, key):
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        if not 0 <= idx < len(self):
            raise IndexError(f"window index {idx} out of range [0, {len(self)})")
        j = int(self._order_for(epoch)[idx])
        ids = self.window_ids(j)
        rng = np.random.default_rng([self.seed, 0 if self.fixed_masks else int(epoch), int(idx)])
        if self.rc_aug and rng.random() > 0.5:
            ids = _COMP[ids[::-1]].astype(np.int64)
        if self.n_to_pad:
            ids = np.where(ids == N_ID, PAD_ID, ids)
        inputs, targets = mlm_mask(ids, rng, self.mask_prob)
        return torch.from_numpy(inputs), torch.from_numpy(targets)
