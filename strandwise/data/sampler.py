"""Deterministic peak/negative sampler (spec §4.7) and the batch plan for one or many devices.

Every item is a pure function of ``(random_state, epoch, idx)``: the epoch's plan (peak order,
which slots are peaks, which negative fills each negative slot, jitter offsets, RC flags) is drawn
from ``numpy.random.RandomState(s_e)`` with ``s_e = (s0 + epoch·2654435761) mod (2³¹ − 1)`` in a fixed
order, and any worker recomputes the same plan on its own. So the number of DataLoader workers, the
access order and the number of devices never change which example lands in which batch.

Use it with :class:`EpochBatchSampler`::

    ds = PeakNegativeSampler.from_loci(peaks, negatives, random_state=0)
    batches = EpochBatchSampler(len(ds), batch_size=64, rank=r, world_size=R)
    loader = DataLoader(ds, batch_sampler=batches, num_workers=2)
    for epoch in range(E):
        batches.set_epoch(epoch)
        for X, y, label in loader: ...

Under Lightning DDP pass ``use_distributed_sampler=False`` to the Trainer (Lightning would
otherwise replace the sampler) and give each rank ``rank=trainer.global_rank``,
``world_size=trainer.world_size``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "PeakNegativeSampler",
    "EpochBatchSampler",
    "epoch_seed",
    "ddp_batch_slice",
    "MODULUS",
    "EPOCH_MULTIPLIER",
]

MODULUS = 2**31 - 1
EPOCH_MULTIPLIER = 2654435761


def epoch_seed(random_state: int, epoch: int) -> int:
    """``s_e = (random_state mod (2³¹−1) + epoch·2654435761) mod (2³¹−1)``."""
    return int((int(random_state) % MODULUS + int(epoch) * EPOCH_MULTIPLIER) % MODULUS)


def ddp_batch_slice(batch: list | np.ndarray, rank: int, world_size: int):
    """Rank ``rank``'s part of a global batch: the ``rank``-th contiguous slice of size
    ``len(batch) / world_size``.

    Raises
    ------
    ValueError
        If the batch size is not divisible by ``world_size`` or ``rank`` is out of range.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if len(batch) % world_size:
        raise ValueError(f"batch size {len(batch)} is not divisible by world_size {world_size}")
    k = len(batch) // world_size
    return batch[rank * k:(rank + 1) * k]


class PeakNegativeSampler(torch.utils.data.Dataset):
    """Peaks with jitter + GC-matched negatives, with reverse-complement augmentation.

    Parameters
    ----------
    X_peaks : Tensor, int8/float, shape (n_p, 4, in_window + 2·max_jitter)
    y_peaks : Tensor, float32, shape (n_p, O, out_window + 2·max_jitter)
    X_negatives : Tensor, shape (n_n, 4, in_window), optional
    y_negatives : Tensor, shape (n_n, O, out_window), optional
    X_ctl_peaks, X_ctl_negatives : Tensor, shape (·, K, in_window [+ 2mj]), optional
    in_window, out_window, max_jitter : int
        ``max_jitter`` must match the margin of the peak tensors.
    negative_ratio : float
        Epoch length ``n = n_p + int(n_p · negative_ratio)``.
    reverse_complement : bool
        Flip each example with probability 0.5 (strands swapped within each group).
    shuffle : bool
        Permute peaks each epoch (``False``: ``arange``; slots and jitter are still drawn).
    random_state : int, optional
        ``None`` draws one value at construction (stored in ``self.random_state``).
    signal_groups, control_groups : list of int, optional
        For the RC channel permutation (default: one group per channel).
    x_dtype : torch.dtype
        dtype of returned sequences (storage stays int8).

    Items
    -----
    ``dataset[(epoch, idx)]`` (preferred) or ``dataset[idx]`` (the epoch advances when ``idx``
    decreases) → ``(X, y, label)`` or ``(X, X_ctl, y, label)`` with X ``(4, in_window)``,
    y ``(O, out_window)``, X_ctl ``(K, in_window)`` and ``label`` an int64 scalar (1 peak, 0 negative).
    """

    def __init__(
        self,
        X_peaks,
        y_peaks,
        X_negatives=None,
        y_negatives=None,
        X_ctl_peaks=None,
        X_ctl_negatives=None,
        *,
        in_window: int = 2114,
        out_window: int = 1000,
        max_jitter: int = 500,
        negative_ratio: float = 0.25,
        reverse_complement: bool = True,
        shuffle: bool = True,
        random_state: int | None = 0,
        signal_groups=None,
        control_groups=None,
        x_dtype=torch.float32,
    ):
        from strandwise.models.cherimoya import channel_permutation_from_groups

        if isinstance(max_jitter, bool) or int(max_jitter) != max_jitter or max_jitter < 0:
            raise ValueError(f"max_jitter must be an int >= 0; got {max_jitter!r}")
        if negative_ratio < 0:
            raise ValueError(f"negative_ratio must be >= 0; got {negative_ratio!r}")
        n_p = int(X_peaks.shape[0])
        if n_p == 0:
            raise ValueError("no training peaks: the sampler needs at least one")
        if y_peaks.shape[0] != n_p:
            raise ValueError("X_peaks and y_peaks have different numbers of loci")
        if X_peaks.shape[1:] != (4, in_window + 2 * max_jitter):
            raise ValueError(f"X_peaks must be (n, 4, {in_window + 2 * max_jitter}) for in_window "
                             f"{in_window} and max_jitter {max_jitter}; got {tuple(X_peaks.shape)}")
        if y_peaks.shape[2] != out_window + 2 * max_jitter:
            raise ValueError(f"y_peaks must have length {out_window + 2 * max_jitter}; "
                             f"got {tuple(y_peaks.shape)}")
        n_neg_slots = int(n_p * negative_ratio)
        has_neg = X_negatives is not None and int(X_negatives.shape[0]) > 0
        if negative_ratio > 0 and not has_neg:
            raise ValueError("negative_ratio > 0 but no negatives were given")
        if has_neg:
            if y_negatives is None or y_negatives.shape[0] != X_negatives.shape[0]:
                raise ValueError("X_negatives and y_negatives must be given together, same length")
            if X_negatives.shape[2] != in_window or y_negatives.shape[2] != out_window:
                raise ValueError(
                    f"negatives must be extracted without jitter: (n, 4, {in_window}) and "
                    f"(n, O, {out_window}); got {tuple(X_negatives.shape)}, {tuple(y_negatives.shape)}")
            if y_negatives.shape[1] != y_peaks.shape[1]:
                raise ValueError("peaks and negatives have different numbers of signal channels")
        if X_ctl_peaks is not None and has_neg and X_ctl_negatives is None:
            raise ValueError("controls were given for peaks but not for negatives")
        self.X_peaks, self.y_peaks = X_peaks, y_peaks
        self.X_negatives, self.y_negatives = (X_negatives, y_negatives) if has_neg else (None, None)
        self.X_ctl_peaks = X_ctl_peaks
        self.X_ctl_negatives = X_ctl_negatives if has_neg else None
        self.in_window, self.out_window, self.max_jitter = int(in_window), int(out_window), int(max_jitter)
        self.negative_ratio = float(negative_ratio)
        self.reverse_complement = bool(reverse_complement)
        self.shuffle = bool(shuffle)
        if random_state is None:
            # One draw, stored, so every worker (pickled copy) shares it.
            random_state = int(np.random.randint(0, MODULUS))
        self.random_state = int(random_state)
        self.n_peaks = n_p
        self.n_negatives = int(X_negatives.shape[0]) if has_neg else 0
        self.length = n_p + n_neg_slots
        O = int(y_peaks.shape[1])
        self.signal_groups = list(signal_groups) if signal_groups is not None else [1] * O
        if sum(self.signal_groups) != O:
            raise ValueError(f"signal_groups {self.signal_groups} do not sum to {O} channels")
        self._perm = torch.tensor(channel_permutation_from_groups(self.signal_groups))
        self._cperm = None
        if X_ctl_peaks is not None:
            K = int(X_ctl_peaks.shape[1])
            cg = list(control_groups) if control_groups is not None else [1] * K
            if sum(cg) != K:
                raise ValueError(f"control_groups {cg} do not sum to {K} control tracks")
            self.control_groups = cg
            self._cperm = torch.tensor(channel_permutation_from_groups(cg))
        else:
            self.control_groups = []
        self.x_dtype = x_dtype
        self._plan_epoch = None
        self._plan = None
        self._last = (0, -1)  # (epoch, idx) for plain-integer access

    @classmethod
    def from_loci(cls, peaks, negatives=None, **kwargs) -> "PeakNegativeSampler":
        """Build from :class:`~strandwise.data.loci.ProfileLoci` (no copies of the tensors)."""
        kw = dict(in_window=peaks.in_window, out_window=peaks.out_window,
                  max_jitter=peaks.max_jitter, signal_groups=peaks.signal_groups,
                  control_groups=peaks.control_groups or None)
        kw.update(kwargs)
        if negatives is not None and len(negatives) == 0:
            negatives = None
        obj = cls(peaks.X, peaks.y,
                  None if negatives is None else negatives.X,
                  None if negatives is None else negatives.y,
                  peaks.X_ctl, None if negatives is None else negatives.X_ctl, **kw)
        obj.peaks, obj.negatives = peaks, negatives
        return obj

    def __len__(self) -> int:
        return self.length

    def epoch_plan(self, epoch: int) -> dict:
        """The epoch's draws, in spec order (cached for the last epoch asked).

        Returns
        -------
        dict with arrays of length ``n``: ``is_peak`` (bool), ``example`` (row in peaks or
        negatives), ``jitter`` (int, 0 at negative slots), ``rc`` (bool); and ``peak_order``.
        """
        if self._plan_epoch == epoch:
            return self._plan
        rng = np.random.RandomState(epoch_seed(self.random_state, epoch))
        n, n_p = self.length, self.n_peaks
        peak_order = rng.permutation(n_p) if self.shuffle else np.arange(n_p)
        is_peak = rng.permutation(np.arange(n) < n_p)
        n_neg = n - n_p
        neg_draw = rng.randint(0, max(1, self.n_negatives), size=n_neg)
        example = np.empty(n, np.int64)
        example[is_peak] = peak_order
        example[~is_peak] = neg_draw
        if self.max_jitter > 0:
            jitter = rng.randint(0, 2 * self.max_jitter + 1, size=n)
            jitter[~is_peak] = 0
        else:
            jitter = np.zeros(n, np.int64)
        rc = rng.randint(0, 2, size=n).astype(bool) if self.reverse_complement else np.zeros(n, bool)
        self._plan = {"peak_order": peak_order, "is_peak": is_peak, "example": example,
                      "jitter": jitter, "rc": rc}
        self._plan_epoch = epoch
        return self._plan

    def _resolve(self, index) -> tuple[int, int]:
        if isinstance(index, (tuple, list)) and len(index) == 2:
            epoch, idx = int(index[0]), int(index[1])
        else:
            idx = int(index)
            last_epoch, last_idx = self._last
            epoch = last_epoch + 1 if idx < last_idx else last_epoch
        if not 0 <= idx < self.length:
            raise IndexError(f"index {idx} out of range for an epoch of {self.length}")
        self._last = (epoch, idx)
        return epoch, idx

    def __getitem__(self, index):
        epoch, idx = self._resolve(index)
        plan = self.epoch_plan(epoch)
        i = int(plan["example"][idx])
        if plan["is_peak"][idx]:
            j = int(plan["jitter"][idx])
            X = self.X_peaks[i, :, j:j + self.in_window]
            y = self.y_peaks[i, :, j:j + self.out_window]
            ctl = None if self.X_ctl_peaks is None else self.X_ctl_peaks[i, :, j:j + self.in_window]
            label = 1
        else:
            X, y = self.X_negatives[i], self.y_negatives[i]
            ctl = None if self.X_ctl_peaks is None else self.X_ctl_negatives[i]
            label = 0
        if plan["rc"][idx]:
            X = X.flip(0).flip(-1)
            y = y[self._perm].flip(-1)
            if ctl is not None:
                ctl = ctl[self._cperm].flip(-1)
        X = X.to(self.x_dtype).contiguous()
        y = y.contiguous()
        label = torch.tensor(label, dtype=torch.int64)
        if ctl is not None:
            return X, ctl.contiguous(), y, label
        return X, y, label


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(epoch, idx)`` pairs: sequential indices, ``floor(n / batch_size)`` batches per
    epoch (a trailing partial batch is dropped), and under data parallelism each rank keeps the
    ``rank``-th contiguous slice of every global batch (:func:`ddp_batch_slice`).

    Parameters
    ----------
    n : int
        Epoch length (``len(dataset)``).
    batch_size : int
        Global batch size (divisible by ``world_size``).
    epoch : int
        Starting epoch; change with :meth:`set_epoch`.
    rank, world_size : int
    """

    def __init__(self, n: int, batch_size: int, epoch: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.n, self.batch_size, self.epoch = int(n), int(batch_size), int(epoch)
        self.rank, self.world_size = int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        for b in range(len(self)):
            glob = [(self.epoch, i) for i in range(b * self.batch_size, (b + 1) * self.batch_size)]
            yield ddp_batch_slice(glob, self.rank, self.world_size)
