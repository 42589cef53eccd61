"""Mamba's short causal depthwise convolution (+ SiLU): a PyTorch reference and one dispatcher.

For ``x (B, D, L)``, ``weight (D, 1, k)`` and an optional ``bias (D,)``::

    causal:       c_t = b + Σ_j w[j] · x_{t-(k-1)+j}      (zero left padding)
    anti-causal:  c_t = b + Σ_j w[j] · x_{t+(k-1)-j}      (``reverse``; = flip_L(causal(flip_L(x))))

* :func:`causal_conv1d` — the reference (``F.conv1d`` on a padded input), every device and dtype.
* :func:`causal_conv1d_silu` — ``silu(causal_conv1d(...))``, the dispatcher: on CUDA with Triton
  one fused kernel each way (:mod:`strandwise.kernels.causal_conv_triton`; PyTorch's depthwise
  ``conv1d`` runs a generic kernel at ~0.2 TB/s there, 14 % of a PS-131k training step on an H200),
  else the reference followed by ``F.silu``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from strandwise.kernels.conv_norm import triton_available

__all__ = ["causal_conv1d", "causal_conv1d_silu"]


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, reverse: bool = False):
    """Depthwise conv over L with kernel ``k``: causal (``w[k-1]`` multiplies ``x_t``) or anti-causal.

    Parameters
    ----------
    x : (B, D, L)
    weight : (D, 1, k)
    bias : (D,) or None
    reverse : bool
        Anti-causal: ``c_t`` sees ``x_t … x_{t+k-1}``.

    Returns
    -------
    (B, D, L), ``x``'s dtype.
    """
    k = weight.shape[-1]
    if reverse:
        return F.conv1d(F.pad(x, (0, k - 1)), weight.flip(-1), bias, groups=x.shape[1])
    return F.conv1d(F.pad(x, (k - 1, 0)), weight, bias, groups=x.shape[1])


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, reverse: bool = False):
    """``silu(causal_conv1d(x, weight, bias, reverse))``; fused Triton kernels on CUDA.

    Under autocast the Triton path computes in fp32 and returns ``x``'s dtype (the reference
    follows autocast's conv rules, i.e. the autocast dtype); both accumulate in fp32.
    """
    # the kernels put the batch on grid axis 2 (CUDA limit 65,535); larger batches take the reference
    if x.is_cuda and x.shape[0] <= 65535 and triton_available():
        from strandwise.kernels.causal_conv_triton import causal_conv1d_silu_triton

        return causal_conv1d_silu_triton(x, weight, bias, reverse=reverse, silu=True)
    return F.silu(causal_conv1d(x, weight, bias, reverse=reverse))
