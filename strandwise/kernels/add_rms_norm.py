"""Fused residual add + RMSNorm (plain, or the RC-equivariant NormRC of Caduceus-PS).

For ``x (..., C)`` and an optional ``residual (..., C)``::

    S      = x + residual                    (fp32; fp64 for fp64 inputs)
    S      = swap(S) = [S_b | S_a]           (``swap``: Caduceus-PS "published" block order)
    normed = rms_w(S)                        (one group over C), or, with ``rc``,
           = [rms_w(S_a) | rms_{flip w}(S_b)]     (NormRC: two groups of C/2, the second with the
                                                   weight reversed)
    rms_w(v) = v · (mean(v²) + eps)^(-1/2) · w

and returns ``(normed in x's dtype, S)``. Spec ``caduceus.md`` §4.3–§4.4, §5.6.

* :func:`add_rms_norm_reference` — PyTorch ops, every device and dtype (the reference; fp64 for
  ``gradcheck``).
* :func:`add_rms_norm` — the dispatcher: on CUDA with Triton, one kernel forward and one backward
  (:mod:`strandwise.kernels.add_rms_norm_triton`) for fp32/bf16/fp16 inputs, which replaces the
  chain of upcast, add, swap copy, square, mean, rsqrt, two multiplies, concatenation and downcast
  (each a pass over a ``(B, L, 2d)`` fp32 tensor) by one read of ``x`` and ``residual`` and one
  write of ``S`` and ``normed``; else the reference.
"""

from __future__ import annotations

import torch

from strandwise.kernels.conv_norm import triton_available

__all__ = ["add_rms_norm", "add_rms_norm_reference", "rms_norm"]

_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``x · (mean_c(x²) + eps)^(-1/2) · w`` over the last axis, computed in fp32 (fp64 stays fp64).

    Returns the result in fp32/fp64; callers cast to the dtype they store.
    """
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(ct)
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.to(ct)


def add_rms_norm_reference(x, residual, weight, eps: float, rc: bool = False, swap: bool = False):
    """The PyTorch reference of :func:`add_rms_norm` (same arguments and returns)."""
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = x.to(ct) if residual is None else x.to(ct) + residual.to(ct)
    n = s.shape[-1] // 2
    if swap:
        s = torch.cat([s[..., n:], s[..., :n]], dim=-1)
    if rc:
        out = torch.cat([rms_norm(s[..., :n], weight, eps), rms_norm(s[..., n:], weight.flip(0), eps)], dim=-1)
    else:
        out = rms_norm(s, weight, eps)
    return out.to(x.dtype), s


def add_rms_norm(x, residual, weight, eps: float, rc: bool = False, swap: bool = False):
    """Residual add + (RC-equivariant) RMSNorm.

    Parameters
    ----------
    x : (..., C)
        Block input (any dtype; under autocast usually bf16).
    residual : (..., C) or None
        The residual stream (fp32 in every published Caduceus).
    weight : (C,) or, with ``rc``, (C/2,)
    eps : float
    rc : bool
        NormRC: two groups ``[a | b]`` of C/2 channels, ``b`` normed with the reversed weight.
    swap : bool
        Swap the two halves of ``S`` before the norm (and return the swapped ``S``).

    Returns
    -------
    normed : (..., C), x's dtype
    S : (..., C), fp32 (fp64 for fp64 ``x``); the caller casts it to the residual dtype it keeps.
    """
    C = x.shape[-1]
    if (rc or swap) and C % 2:
        raise ValueError(f"add_rms_norm: rc/swap need an even channel count; got {C}")
    want = C // 2 if rc else C
    if weight.ndim != 1 or weight.shape[0] != want:
        raise ValueError(f"add_rms_norm: weight must have shape ({want},); got {tuple(weight.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"add_rms_norm: residual {tuple(residual.shape)} does not match x {tuple(x.shape)}")
    if (
        x.is_cuda
        and x.dtype in _TRITON_DTYPES
        and (residual is None or residual.dtype in _TRITON_DTYPES)
        and weight.dtype in _TRITON_DTYPES
        and x.numel() > 0
        and triton_available()
    ):
        from strandwise.kernels.add_rms_norm_triton import add_rms_norm_triton

        return add_rms_norm_triton(x, residual, weight, float(eps), rc=rc, swap=swap)
    return add_rms_norm_reference(x, residual, weight, eps, rc=rc, swap=swap)
