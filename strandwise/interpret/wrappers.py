"""Output wrappers: one tensor per example for attribution and design tools (spec §7.1).

Attribution methods (ISM, DeepLIFT/SHAP) want a model that maps ``X (N, 4, L)`` to one score per
example; a Cherimoya returns a pair ``(profile logits, log counts)``. These wrappers pick or reduce
the outputs:

* :class:`ControlWrapper` — pass-through that supplies all-zero controls when none are given.
* :class:`ProfileWrapper` — ``Σ z·softmax(z)`` of the mean-centred profile logits ``z`` (one score
  that rises when the model's predicted shape gets sharper around the positions it favours).
* :class:`LogCountWrapper` — predicted ``log(1 + counts)``, all groups or one.
* :class:`ExpectedCountsWrapper` — per-position expected counts, joint softmax per group times
  ``expm1(ŷ_g)``.

Every operation inside them is either linear, an ``nn.Softmax`` module or a bilinear module, so
DeepLIFT rules can attach to each non-linear step (see :mod:`strandwise.interpret.attribution`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ControlWrapper",
    "ProfileWrapper",
    "LogCountWrapper",
    "ExpectedCountsWrapper",
    "validate_group",
]


def validate_group(group, n_groups: int):
    """Check ``group`` is ``None`` or an ``int`` in ``[0, n_groups)`` (bools rejected).

    Raises
    ------
    ValueError
        Naming the valid range.
    """
    if group is None:
        return None
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < n_groups:
        raise ValueError(
            f"group must be an int in [0, {n_groups}) for a model with {n_groups} signal group(s); "
            f"got {group!r}"
        )
    return int(group)


class _ElementwiseProduct(nn.Module):
    """Row-wise dot product ``Σ_i a_i·b_i``; used only where tangermeme is not installed.

    With tangermeme present :class:`ProfileWrapper` uses tangermeme's ``BilinearOp`` instead, the
    module type its DeepLIFT midpoint product rule attaches to. Forward values are identical.
    """

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ni,ni->n", left, right)


def _bilinear_rowdot() -> nn.Module:
    try:
        from tangermeme.deep_lift_shap import BilinearOp
    except ImportError:
        return _ElementwiseProduct()
    return BilinearOp("ni,ni->n")


class ControlWrapper(nn.Module):
    """Return the model's ``(profile, log counts)``, supplying zero controls when none are given.

    Parameters
    ----------
    model : Cherimoya
        Any module with ``n_control_tracks`` and ``signal_groups`` attributes and the Cherimoya
        ``forward(X, X_ctl=None)`` contract.

    Notes
    -----
    ``signal_groups``, ``n_groups``, ``n_outputs``, ``trimming`` and ``n_control_tracks`` are
    forwarded from the wrapped model so wrappers can be stacked.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.signal_groups = list(getattr(model, "signal_groups", [1]))
        self.n_groups = len(self.signal_groups)
        self.n_outputs = sum(self.signal_groups)
        self.n_control_tracks = int(getattr(model, "n_control_tracks", 0))
        self.trimming = getattr(model, "trimming", None)

    def forward(self, X: torch.Tensor, X_ctl: torch.Tensor | None = None):
        """
        Parameters
        ----------
        X : torch.Tensor, shape (N, 4, L)
        X_ctl : torch.Tensor, shape (N, K, L), optional
            Zeros of the right shape, dtype and device are used when omitted and ``K > 0``.

        Returns
        -------
        (torch.Tensor (N, O, L_out), torch.Tensor (N, G))
        """
        K = self.n_control_tracks
        if X_ctl is None and K > 0:
            X_ctl = torch.zeros(X.shape[0], K, X.shape[-1], dtype=X.dtype, device=X.device)
        return self.model(X, X_ctl)


def _as_control_wrapper(model: nn.Module) -> ControlWrapper:
    return model if isinstance(model, ControlWrapper) else ControlWrapper(model)


def _group_slices(signal_groups):
    start = 0
    out = []
    for size in signal_groups:
        out.append((start, start + size))
        start += size
    return out


class ProfileWrapper(nn.Module):
    """One profile score per example: ``Σ z·softmax(z)`` of mean-centred logits.

    The logits of all channels (or of group ``group``'s channels) are flattened over channels ×
    length, ``z = l − mean(l)`` per example, and the score is ``Σ_i z_i·softmax(z)_i``. The product
    runs through a bilinear module and the softmax through ``nn.Softmax`` so DeepLIFT can apply its
    product and softmax rules (an elementwise product of two activations has no DeepLIFT rule).

    Parameters
    ----------
    model : Cherimoya or ControlWrapper
    group : int, optional
        Use only this signal group's channels.

    Returns (forward)
    -----------------
    torch.Tensor, shape (N, 1)
    """

    def __init__(self, model: nn.Module, group: int | None = None):
        super().__init__()
        self.model = _as_control_wrapper(model)
        self.group = validate_group(group, self.model.n_groups)
        self.softmax = nn.Softmax(dim=-1)
        self.product = _bilinear_rowdot()

    def forward(self, X: torch.Tensor, X_ctl: torch.Tensor | None = None) -> torch.Tensor:
        logits, _ = self.model(X, X_ctl)
        if self.group is not None:
            a, b = _group_slices(self.model.signal_groups)[self.group]
            logits = logits[:, a:b]
        flat = logits.reshape(logits.shape[0], -1)
        z = flat - flat.mean(dim=-1, keepdim=True)
        return self.product(z, self.softmax(z)).unsqueeze(1)


class LogCountWrapper(nn.Module):
    """Predicted ``log(1 + counts)``: ``(N, G)``, or ``(N, 1)`` for one ``group``."""

    def __init__(self, model: nn.Module, group: int | None = None):
        super().__init__()
        self.model = _as_control_wrapper(model)
        self.group = validate_group(group, self.model.n_groups)

    def forward(self, X: torch.Tensor, X_ctl: torch.Tensor | None = None) -> torch.Tensor:
        _, counts = self.model(X, X_ctl)
        if self.group is not None:
            return counts[:, self.group : self.group + 1]
        return counts


class ExpectedCountsWrapper(nn.Module):
    """Expected counts per position ``(N, O, L_out)``.

    For each group ``g``: joint softmax of its channels × length, times ``expm1(ŷ_g)``, so each
    group's block sums to ``expm1(ŷ_g)``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = _as_control_wrapper(model)

    def forward(self, X: torch.Tensor, X_ctl: torch.Tensor | None = None) -> torch.Tensor:
        logits, counts = self.model(X, X_ctl)
        n = logits.shape[0]
        parts = []
        for g, (a, b) in enumerate(_group_slices(self.model.signal_groups)):
            chans = logits[:, a:b]
            prob = torch.softmax(chans.reshape(n, -1), dim=-1).reshape(chans.shape)
            parts.append(prob * torch.expm1(counts[:, g])[:, None, None])
        return torch.cat(parts, dim=1)
