"""Fused dilated depthwise convolution + per-example layer normalization.

This is the spatial half of a Cheri Block (spec ``cherimoya.md`` §2). For an input ``x`` of shape
``(N, L, C)`` (channels-last) and a weight ``w`` of shape ``(3, C)``::

    y[n, i, c] = w[0, c] * x[n, i - d, c] + w[1, c] * x[n, i, c] + w[2, c] * x[n, i + d, c]

with zero padding outside ``[0, L)``, followed by a normalization of each example over its whole
``(L, C)`` plane (biased variance, ``eps = 1e-3``, no affine), computed in fp32 and cast back to the
input dtype.

Three entry points, with the names the specs use:

* :func:`_cheri_conv_norm_cpu` — the pure-PyTorch differentiable reference (any device).
* :class:`FusedDilatedConvNormFunc` — an autograd ``Function`` with a hand-written backward (spec
  §2.5). On CUDA with Triton it runs the Triton kernels from
  :mod:`strandwise.kernels.conv_norm_triton`; elsewhere it runs the same formulas in PyTorch, which
  is what lets ``gradcheck`` verify the formulas the kernels implement.
* :func:`fused_dilated_conv_norm` — the dispatcher: Triton path iff ``x.is_cuda`` and Triton is
  importable, else the reference (bit-exact to calling it directly).
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.autograd.function import once_differentiable
import torch.nn.functional as F

__all__ = [
    "CONV_NORM_EPS",
    "_cheri_conv_norm_cpu",
    "conv_norm_forward_reference",
    "conv_norm_backward_reference",
    "FusedDilatedConvNormFunc",
    "fused_dilated_conv_norm",
    "FusedDilatedConvNorm",
    "triton_available",
]

CONV_NORM_EPS = 1e-3


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True if Triton imports and CUDA is usable (the condition for the GPU kernels)."""
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - depends on the install
        return False
    return True


def _triton_backend():
    """The Triton implementation module, imported lazily so CPU installs never need Triton."""
    from strandwise.kernels import conv_norm_triton

    return conv_norm_triton


def _check_conv_norm_inputs(x: torch.Tensor, w: torch.Tensor, dilation: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise ValueError(
            f"fused_dilated_conv_norm expects x of shape (N, L, C); got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )
    if not x.is_floating_point():
        raise TypeError(f"fused_dilated_conv_norm expects a floating-point x; got {x.dtype}")
    if w.ndim != 2 or w.shape[0] != 3 or w.shape[1] != x.shape[-1]:
        raise ValueError(
            f"conv weight must have shape (3, C={x.shape[-1]}); got {tuple(w.shape)}"
        )
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be a positive int; got {dilation!r}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp32 statistics for half inputs; float64 stays float64 so gradcheck is meaningful.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _dilated_conv(x: torch.Tensor, w: torch.Tensor, dilation: int) -> torch.Tensor:
    """3-tap depthwise dilated conv on channels-last ``(N, L, C)``, zero padding, in x's dtype."""
    L = x.shape[1]
    xp = F.pad(x, (0, 0, dilation, dilation))
    return w[0] * xp[:, 0:L] + w[1] * xp[:, dilation : dilation + L] + w[2] * xp[:, 2 * dilation :]


def _cheri_conv_norm_cpu(
    x: torch.Tensor, w: torch.Tensor, dilation: int, eps: float = CONV_NORM_EPS
) -> torch.Tensor:
    """Reference fused conv + norm, pure PyTorch and differentiable.

    Parameters
    ----------
    x : torch.Tensor, shape (N, L, C)
        Channels-last activations, any floating dtype.
    w : torch.Tensor, shape (3, C)
        Depthwise taps: row 0 multiplies ``x[i - d]``, row 1 ``x[i]``, row 2 ``x[i + d]``.
    dilation : int
        Tap spacing ``d >= 1``; ``d >= L`` leaves only the centre tap.
    eps : float
        Added to the variance before the reciprocal square root.

    Returns
    -------
    torch.Tensor, shape (N, L, C), same dtype as ``x``.
    """
    _check_conv_norm_inputs(x, w, dilation)
    ct = _compute_dtype(x.dtype)
    # Shifted in-place adds for the taps, then one fused layer_norm over the whole (L, C) plane:
    # about 2x faster on CPU than the padded tap-by-tap form of conv_norm_forward_reference
    # (the tests hold the two within 1e-6). Depthwise F.conv1d is avoided on purpose: its CPU
    # backward is pathologically slow at large dilations.
    y = _conv3_shifted(x.to(ct), w.to(ct), dilation)
    out = F.layer_norm(y, y.shape[1:], eps=eps)
    return out.to(x.dtype)


def _conv3_shifted(x: torch.Tensor, w: torch.Tensor, dilation: int, out=None, tmp=None) -> torch.Tensor:
    """The 3-tap dilated conv as a centre product plus two shifted in-place adds (same dtype).
    ``out`` and ``tmp`` (shaped like ``x``), if given, take the result and the tap products, so a
    loop over examples reuses two cache-resident buffers; the arithmetic is the same."""
    L = x.shape[1]
    d = dilation
    y = torch.mul(x, w[1], out=out)
    if d < L:
        y[:, d:] += torch.mul(x[:, :-d], w[0], out=None if tmp is None else tmp[:, d:])
        y[:, :-d] += torch.mul(x[:, d:], w[2], out=None if tmp is None else tmp[:, :-d])
    return y


def conv_norm_forward_reference(x, w, dilation, eps=CONV_NORM_EPS):
    """Forward returning what the backward needs: ``(out, mean (N,), rstd (N,))``.

    Same arithmetic as :func:`_cheri_conv_norm_cpu`, exposed for the autograd Function.
    """
    ct = _compute_dtype(x.dtype)
    y = _dilated_conv(x.to(ct), w.to(ct), dilation)
    mean = y.mean(dim=(1, 2))
    var = (y - mean[:, None, None]).pow(2).mean(dim=(1, 2))
    rstd = torch.rsqrt(var + eps)
    out = (y - mean[:, None, None]) * rstd[:, None, None]
    return out.to(x.dtype), mean, rstd


def conv_norm_backward_reference(g, x, w, mean, rstd, dilation):
    """Spec §2.5 backward formulas in PyTorch: returns ``(dx, dw)``.

    With ``x̂`` the normalised conv output, ``S1 = Σ g`` and ``S2 = Σ g·x̂`` per example::

        δ = (r / M) · (M·g − S1 − x̂·S2)
        dw[k, c] = Σ_n Σ_i δ[n, i, c] · x[n, i + (k − 1)·d, c]
        dx[n, p, c] = w[1,c]·δ[p] + w[0,c]·δ[p + d] + w[2,c]·δ[p − d]
    """
    ct = _compute_dtype(x.dtype)
    N, L, C = x.shape
    M = L * C
    xf, wf, gf = x.to(ct), w.to(ct), g.to(ct)
    y = _dilated_conv(xf, wf, dilation)
    xhat = (y - mean[:, None, None]) * rstd[:, None, None]
    s1 = gf.sum(dim=(1, 2), keepdim=True)
    s2 = (gf * xhat).sum(dim=(1, 2), keepdim=True)
    delta = (rstd[:, None, None] / M) * (M * gf - s1 - xhat * s2)
    d = dilation
    xp = F.pad(xf, (0, 0, d, d))
    dw = torch.stack(
        [
            (delta * xp[:, 0:L]).sum(dim=(0, 1)),
            (delta * xp[:, d : d + L]).sum(dim=(0, 1)),
            (delta * xp[:, 2 * d :]).sum(dim=(0, 1)),
        ]
    )
    dp = F.pad(delta, (0, 0, d, d))
    # dx[p] = w1·δ[p] + w0·δ[p+d] + w2·δ[p−d]
    dx = wf[1] * dp[:, d : d + L] + wf[0] * dp[:, 2 * d :] + wf[2] * dp[:, 0:L]
    return dx.to(x.dtype), dw.to(w.dtype)


@once_differentiable  # Triton kernels: a second derivative raises instead of coming out wrong
def _conv_norm_bwd_triton(ctx, g, x, w, mean, rstd):
    dx, dw = _triton_backend().conv_norm_bwd(g, x, w, mean, rstd, ctx.dilation)
    return dx, dw, None


class FusedDilatedConvNormFunc(torch.autograd.Function):
    """Autograd Function for the fused op: ``apply(x, w, dilation) -> out``.

    Saves only ``x, w, mean, rstd`` (never the conv output) and recomputes the conv in backward.
    Runs the Triton kernels for CUDA tensors when Triton is available, the PyTorch formulas
    otherwise. Returns gradients ``(dx, dw, None)``.
    """

    @staticmethod
    def forward(ctx, x, w, dilation):
        _check_conv_norm_inputs(x, w, dilation)
        x = x.contiguous()
        use_triton = x.is_cuda and triton_available()
        if use_triton:
            out, mean, rstd = _triton_backend().conv_norm_fwd(x, w, dilation, CONV_NORM_EPS)
        else:
            out, mean, rstd = conv_norm_forward_reference(x, w, dilation)
        ctx.save_for_backward(x, w, mean, rstd)
        ctx.dilation = dilation
        ctx.use_triton = use_triton
        return out

    @staticmethod
    def backward(ctx, g):
        x, w, mean, rstd = ctx.saved_tensors
        g = g.contiguous()
        if ctx.use_triton:
            return _conv_norm_bwd_triton(ctx, g, x, w, mean, rstd)
        else:
            dx, dw = conv_norm_backward_reference(g, x, w, mean, rstd, ctx.dilation)
        return dx, dw, None


class _CPUConvNormFunc(torch.autograd.Function):
    """CPU training path: the forward of :func:`_cheri_conv_norm_cpu` (same operations, so the
    same output bits), the backward by the spec §2.5 formulas of
    :func:`conv_norm_backward_reference` written with in-place shifted adds.

    Autograd through the reference's in-place slice updates records ``CopySlices`` nodes whose
    backward copies every gradient twice; this backward touches each tensor a few times instead
    (fwd+bwd at (10, 2,114, 96) on a 2-core CPU: 23 → 18 ms). fp32/fp64 only. Saves ``x``, ``w``,
    the normalised output and ``rstd``.
    """

    @staticmethod
    def forward(ctx, x, w, dilation):
        wc = w.to(x.dtype)
        out, rstd = _conv_norm_forward_cpu(x, wc, dilation)
        ctx.save_for_backward(x, wc, out, rstd)
        ctx.dilation = dilation
        ctx.w_dtype = w.dtype
        return out

    @staticmethod
    def backward(ctx, g):
        x, w, xhat, rstd = ctx.saved_tensors
        dx, dw = _conv_norm_backward_cpu(g.contiguous(), x, w, xhat, rstd, ctx.dilation)
        return dx, dw.to(ctx.w_dtype), None


#: Above this many bytes of activations the CPU forward runs one example at a time (the same
#: budget as ``strandwise.models.cpu_chunks.CPU_CHUNK_BYTES``): 2-core CPU, (64, 2,114, 96) fp32:
#: 103 → 56 ms; at (8, 2,114, 96) the whole batch is faster (3.3 against 4.4 ms). The models'
#: CPU forward already splits batches into chunks under that budget, so this path serves the
#: unchunked calls: models with hooks (attribution) and direct use.
PER_EXAMPLE_BYTES = 16 << 20


def _conv_norm_forward_cpu(x, w, d):
    """``(out, rstd)`` of the conv + norm of a contiguous fp32/fp64 CPU batch, the same operations
    as :func:`_cheri_conv_norm_cpu` (so the same bits), over the whole batch or, above
    :data:`PER_EXAMPLE_BYTES`, one example at a time so each (L, C) plane stays in cache."""
    if x.numel() * x.element_size() <= PER_EXAMPLE_BYTES or x.shape[0] <= 1:
        y = _conv3_shifted(x, w, d)
        out, _, rstd = torch.native_layer_norm(y, y.shape[1:], None, None, CONV_NORM_EPS)
        return out, rstd.reshape(-1)
    N, L, C = x.shape
    out = torch.empty_like(x)
    rstd = torch.empty(N, dtype=x.dtype)
    y = torch.empty((1, L, C), dtype=x.dtype)
    t = torch.empty((1, L, C), dtype=x.dtype)
    for n in range(N):
        _conv3_shifted(x[n:n + 1], w, d, out=y, tmp=t)
        o, _, r = torch.native_layer_norm(y, y.shape[1:], None, None, CONV_NORM_EPS)
        out[n] = o[0]
        rstd[n] = r.reshape(())
    return out, rstd


def _conv_norm_backward_cpu(g, x, w, xhat, rstd, d):
    """``(dx, dw)`` of the conv + norm from the saved normalised output, one example at a time.

    Per example (spec §2.5): ``S1 = Σ g``, ``S2 = Σ g·x̂``, ``δ = (r / M)·(M·g − S1 − x̂·S2)``, then
    ``dx`` and ``dw`` by the taps' shifts. One example's (L, C) plane (812 KB at 2,114 × 96 fp32)
    stays in cache through its ~12 passes, where whole-batch passes stream the batch from memory
    each time. 2-core CPU, medians of 9: (64, 2,114, 96), d = 16: 220 → 68 ms; (64, 2,114, 192),
    d = 1: 429 → 137 ms; (8, 2,114, 96), d = 4: 7.7 → 5.6 ms.
    """
    N, L, C = x.shape
    M = L * C
    dx = torch.empty_like(x)
    dw_parts = torch.zeros((N, 3, C), dtype=x.dtype)
    delta = torch.empty((L, C), dtype=x.dtype)
    tmp = torch.empty((L, C), dtype=x.dtype)
    r = rstd.reshape(-1).tolist()
    for n in range(N):
        gn, xn, hn, dxn = g[n], x[n], xhat[n], dx[n]
        s1 = float(gn.sum())
        s2 = float(torch.mul(gn, hn, out=tmp).sum())
        # δ = (r / M)·(M·g − S1 − x̂·S2)
        torch.mul(gn, M, out=delta).add_(hn, alpha=-s2).sub_(s1).mul_(r[n] / M)
        torch.mul(delta, w[1], out=dxn)
        dw_parts[n, 1] = torch.mul(delta, xn, out=tmp).sum(0)
        if d < L:
            dxn[:-d].addcmul_(delta[d:], w[0])
            dxn[d:].addcmul_(delta[:-d], w[2])
            t = tmp[:-d]
            dw_parts[n, 0] = torch.mul(delta[d:], xn[:-d], out=t).sum(0)
            dw_parts[n, 2] = torch.mul(delta[:-d], xn[d:], out=t).sum(0)
    return dx, dw_parts.sum(0)


def fused_dilated_conv_norm(x: torch.Tensor, w: torch.Tensor, dilation: int) -> torch.Tensor:
    """Dispatcher for the fused dilated depthwise conv + per-example norm.

    CUDA tensors with Triton installed go through :class:`FusedDilatedConvNormFunc` (Triton
    forward and backward, under grad and no-grad alike); everything else computes
    :func:`_cheri_conv_norm_cpu`'s forward, bit-exact to calling the reference directly. When
    autograd records an fp32/fp64 call, that forward runs inside :class:`_CPUConvNormFunc`, whose
    backward applies the spec §2.5 formulas (the gradients agree with autograd through the
    reference to rounding).

    Parameters
    ----------
    x : torch.Tensor, shape (N, L, C)
    w : torch.Tensor, shape (3, C)
    dilation : int

    Returns
    -------
    torch.Tensor, shape (N, L, C), dtype of ``x``.
    """
    _check_conv_norm_inputs(x, w, dilation)
    x = x.contiguous()
    if x.is_cuda and triton_available():
        return FusedDilatedConvNormFunc.apply(x, w, dilation)
    if x.dtype in (torch.float32, torch.float64) and w.dtype == x.dtype and x.device.type == "cpu":
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            return _CPUConvNormFunc.apply(x, w, dilation)
        return _conv_norm_forward_cpu(x, w, dilation)[0]
    return _cheri_conv_norm_cpu(x, w, dilation)


class FusedDilatedConvNorm(nn.Module):
    """Module owning the depthwise taps ``conv_weight`` of shape ``(3, n_filters)``.

    It exists so attribution hooks have a node to attach to.
    """

    def __init__(self, n_filters: int, dilation: int):
        super().__init__()
        self.n_filters = int(n_filters)
        self.dilation = int(dilation)
        self.conv_weight = nn.Parameter(torch.empty(3, self.n_filters))
        nn.init.trunc_normal_(self.conv_weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_filters:
            raise ValueError(
                f"FusedDilatedConvNorm({self.n_filters}) expects (N, L, {self.n_filters}); "
                f"got {tuple(x.shape)}"
            )
        return fused_dilated_conv_norm(x, self.conv_weight, self.dilation)

    def extra_repr(self) -> str:
        return f"n_filters={self.n_filters}, dilation={self.dilation}"
