"""Cherimoya losses: multinomial NLL on profiles, log1p-MSE on counts, Kendall–Gal weighting.

Spec ``cherimoya.md`` §3. All losses are computed in fp32 whatever the model's dtype.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "mnll",
    "mixture_loss",
    "_mixture_loss",
    "count_targets",
    "KendallGalWeights",
]


def mnll(logp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multinomial negative log-likelihood along the last axis, with the coefficient.

    ``MNLL = −lgamma(Σy + 1) + Σ lgamma(y + 1) − Σ y·logp`` — equal to
    ``−log Multinomial(y; Σy, p)``; defined for non-integer ``y`` too.

    Parameters
    ----------
    logp : torch.Tensor, shape (..., m)
        Log-probabilities (a log-softmax).
    y : torch.Tensor, shape (..., m)
        Non-negative counts.

    Returns
    -------
    torch.Tensor, shape (...)
    """
    y = y.to(logp.dtype)
    total = y.sum(dim=-1)
    return -torch.lgamma(total + 1) + torch.lgamma(y + 1).sum(dim=-1) - (y * logp).sum(dim=-1)


def _check_groups(signal_groups, n_channels: int) -> list[int]:
    if signal_groups is None:
        return [1] * n_channels
    groups = [int(g) for g in signal_groups]
    if sum(groups) != n_channels:
        raise ValueError(
            f"sum(signal_groups) = {sum(groups)} does not match the {n_channels} profile "
            f"channels of y (signal_groups={list(signal_groups)})"
        )
    return groups


def count_targets(y: torch.Tensor, signal_groups) -> torch.Tensor:
    """Per-group ``log(T_g + 1)`` with ``T_g`` the group's total over channels and length.

    Parameters
    ----------
    y : torch.Tensor, shape (n, O, L)
    signal_groups : list of int or None (every channel its own group)

    Returns
    -------
    torch.Tensor, shape (n, G), fp32
    """
    groups = _check_groups(signal_groups, y.shape[1])
    totals = y.float().sum(dim=-1)  # (n, O)
    out, start = [], 0
    for g in groups:
        out.append(totals[:, start : start + g].sum(dim=1))
        start += g
    return torch.log1p(torch.stack(out, dim=1))


def mixture_loss(y, logits, logcounts, labels=None, signal_groups=None):
    """Profile MNLL (joint softmax per group) and count MSE, per group.

    Parameters
    ----------
    y : torch.Tensor, shape (n, O, L_out)
        Observed counts.
    logits : torch.Tensor, shape (n, O, L_out)
        Profile logits.
    logcounts : torch.Tensor, shape (n, G)
        Predicted ``log(1 + total)`` per group.
    labels : torch.Tensor, shape (n,), optional
        1 for peaks; the profile loss then uses peak rows only (count loss uses all rows).
    signal_groups : list of int, optional
        ``None`` = every channel its own group.

    Returns
    -------
    profile : torch.Tensor, shape (G,)
        Batch-mean MNLL per group.
    count : torch.Tensor, shape (G,)
        Batch-mean squared error of ``log(T + 1)`` per group.
    """
    if y.shape != logits.shape:
        raise ValueError(f"y {tuple(y.shape)} and logits {tuple(logits.shape)} must have the same shape")
    groups = _check_groups(signal_groups, y.shape[1])
    if logcounts.ndim != 2 or logcounts.shape != (y.shape[0], len(groups)):
        raise ValueError(
            f"logcounts must have shape (n, G) = {(y.shape[0], len(groups))}; got {tuple(logcounts.shape)}"
        )
    logits = logits.float()
    y = y.float()
    n = y.shape[0]
    prof_rows = slice(None)
    if labels is not None:
        prof_rows = labels.reshape(-1).bool()
    profile, start = [], 0
    for g in groups:
        lg = logits[:, start : start + g].reshape(n, -1)
        yg = y[:, start : start + g].reshape(n, -1)
        lp = torch.log_softmax(lg[prof_rows], dim=-1)
        per_example = mnll(lp, yg[prof_rows])
        profile.append(per_example.mean() if per_example.numel() else lg.sum() * 0)
        start += g
    target = count_targets(y, groups)
    count = ((logcounts.float() - target) ** 2).mean(dim=0)
    return torch.stack(profile), count


# The spec's private name for the same function (kept for parity with upstream naming).
_mixture_loss = mixture_loss


class KendallGalWeights(nn.Module):
    """Combine per-group profile and count losses (spec §3.4/§3.5).

    Learned mode (default): ``Σ w0·profile + Σ w1·count + Σ (log lw0)² + Σ (log lw1)²`` with
    ``w = 1/(2·lw²)``, where ``lw0``/``lw1`` are the model's parameters (passed in, so they stay in
    the model's state dict). :meth:`maybe_freeze` applies the freeze rule: once the mean
    ``|∂loss/∂lw0|`` of the last step drops below 1, the weights become constants and the
    regulariser is dropped.

    Fixed mode (``loss_weights=(w0, w1)``): ``Σ w0·profile/depth + Σ w1·count`` with
    ``depth = max(1, batch-mean total count)`` per group.
    """

    def __init__(self, loss_weights: tuple[float, float] | None = None, freeze_threshold: float = 1.0):
        super().__init__()
        self.fixed = None if loss_weights is None else (float(loss_weights[0]), float(loss_weights[1]))
        self.freeze_threshold = float(freeze_threshold)
        self.frozen = self.fixed is not None
        # kept as a device tensor between steps (no host sync per step); read as a float
        self._last_lw0_grad: torch.Tensor | float | None = None

    @property
    def last_lw0_grad(self) -> float | None:
        """``mean |∂loss/∂lw0|`` of the last recorded step (a float; None before any step)."""
        v = self._last_lw0_grad
        if isinstance(v, torch.Tensor):
            v = float(v)  # one device sync, at epoch end or checkpoint time only
            self._last_lw0_grad = v
        return v

    @last_lw0_grad.setter
    def last_lw0_grad(self, value) -> None:
        self._last_lw0_grad = None if value is None else float(value)

    def forward(self, profile, count, lw0, lw1, depth=None):
        """Combined scalar loss.

        Parameters
        ----------
        profile, count : torch.Tensor, shape (G,)
        lw0, lw1 : torch.Tensor, shape (G,)
        depth : torch.Tensor, shape (G,), optional
            Batch-mean total count per group (fixed mode only).
        """
        if self.fixed is not None:
            w0, w1 = self.fixed
            d = torch.ones_like(profile) if depth is None else depth.float().clamp(min=1.0)
            return (w0 * profile / d).sum() + (w1 * count).sum()
        if self.frozen:
            lw0, lw1 = lw0.detach(), lw1.detach()
        w0 = 1.0 / (2.0 * lw0.float() ** 2)
        w1 = 1.0 / (2.0 * lw1.float() ** 2)
        loss = (w0 * profile).sum() + (w1 * count).sum()
        if not self.frozen:
            loss = loss + (torch.log(lw0.float()) ** 2).sum() + (torch.log(lw1.float()) ** 2).sum()
        return loss

    def record_gradient(self, lw0: torch.Tensor) -> None:
        """Remember ``mean |∂loss/∂lw0|`` of the current step (call after backward)."""
        if not self.frozen and lw0.grad is not None:
            self._last_lw0_grad = lw0.grad.detach().abs().mean()

    def maybe_freeze(self, lw0: torch.Tensor, lw1: torch.Tensor) -> bool:
        """End-of-epoch freeze rule; returns True if it froze the weights now."""
        if self.frozen or self.last_lw0_grad is None:
            return False
        if self.last_lw0_grad < self.freeze_threshold:
            self.frozen = True
            lw0.requires_grad_(False)
            lw1.requires_grad_(False)
            lw0.grad = None
            lw1.grad = None
            return True
        return False

    def extra_repr(self) -> str:
        return f"fixed={self.fixed}, frozen={self.frozen}"
