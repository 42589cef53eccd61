"""Batched prediction, reverse-complement averaging and expected counts for Cherimoya."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from strandwise.models.cherimoya import channel_permutation_from_groups

__all__ = ["predict", "expected_counts", "reverse_complement_inputs"]


def reverse_complement_inputs(X, X_ctl=None, control_groups=None):
    """RC of one-hot ``X (N, 4, L)`` and of controls (permuted within their groups, flipped)."""
    Xr = X.flip(-1).flip(-2)
    if X_ctl is None:
        return Xr, None
    perm = channel_permutation_from_groups(control_groups or [1] * X_ctl.shape[1])
    return Xr, X_ctl[:, perm].flip(-1)


@torch.no_grad()
def predict(model, X, X_ctl=None, batch_size: int = 512, device=None, reverse_complement_average: bool = False,
            control_groups=None, dtype=None, progress: bool = False):
    """Predict profile logits and log counts in batches.

    Parameters
    ----------
    model : Cherimoya
    X : torch.Tensor, shape (N, 4, L)
        One-hot sequences (int8/bool/float).
    X_ctl : torch.Tensor, shape (N, K, L), optional
    batch_size : int
    device : str or torch.device, optional
        Default: the model's device.
    reverse_complement_average : bool
        Also predict the reverse complement, map it back — profile channels reversed *within*
        each signal group, then flipped along length — and average logits and log counts.
    control_groups : list of int, optional
        Strand grouping of the control tracks (default: each track alone).
    dtype : torch.dtype, optional
        Autocast dtype on CUDA (e.g. ``torch.bfloat16``).
    progress : bool
        Show a progress bar.

    Returns
    -------
    y_profile : torch.Tensor, shape (N, O, L_out), fp32 on CPU
    y_counts : torch.Tensor, shape (N, G), fp32 on CPU
    """
    if X.ndim != 3 or X.shape[1] != 4:
        raise ValueError(f"X must have shape (N, 4, L); got {tuple(X.shape)}")
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    perm = channel_permutation_from_groups(model.signal_groups)
    profiles, counts = [], []
    starts = range(0, X.shape[0], batch_size)
    for s in tqdm(starts, desc="predict", disable=not progress, unit="batch"):
        xb = X[s : s + batch_size].to(device).float()
        cb = None if X_ctl is None else X_ctl[s : s + batch_size].to(device).float()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None and device.type == "cuda"):
            p, c = model(xb, cb)
            p, c = p.float(), c.float()
            if reverse_complement_average:
                xr, cr = reverse_complement_inputs(xb, cb, control_groups)
                pr, crr = model(xr, cr)
                p = (p + pr.float()[:, perm].flip(-1)) / 2
                c = (c + crr.float()) / 2
        profiles.append(p.cpu())
        counts.append(c.cpu())
    if was_training:
        model.train()
    if not profiles:
        L_out = model.output_length(X.shape[-1])
        return torch.zeros(0, model.n_outputs, L_out), torch.zeros(0, model.n_groups)
    return torch.cat(profiles), torch.cat(counts)


def expected_counts(y_profile: torch.Tensor, y_counts: torch.Tensor, signal_groups) -> torch.Tensor:
    """Predicted counts per position: joint softmax per group × ``expm1(ŷ_g)``.

    Each group's channels × positions sum to ``expm1(ŷ_g)``.

    Returns
    -------
    torch.Tensor, shape (N, O, L_out)
    """
    out = torch.empty_like(y_profile, dtype=torch.float32)
    n = y_profile.shape[0]
    start = 0
    for g, size in enumerate(signal_groups):
        chans = y_profile[:, start : start + size].float()
        prob = torch.softmax(chans.reshape(n, -1), dim=-1).reshape(chans.shape)
        out[:, start : start + size] = prob * torch.expm1(y_counts[:, g].float())[:, None, None]
        start += size
    return out
