"""The Mamba-1 mixer between ``in_proj`` and ``out_proj``, with recomputation in backward.

For ``xz = in_proj(h)`` in the channel-major layout ``(B, 2·d_inner, L)`` (spec ``caduceus.md``
§5.1)::

    x, z   = xz[:, :d_inner], xz[:, d_inner:]
    xc     = silu(causal_conv1d(x))                       (anti-causal when ``reverse``)
    dt, B, C = split(W_x · xc, [r, N, N])
    delta  = W_dt · dt                                    (its bias goes into the scan)
    y      = selective_scan(xc, delta, A, B, C, D, z, delta_bias, softplus, reverse)
    out    = W_out · y (+ b_out)                          → (B, d_model, L)

* :func:`mamba_inner_reference` — those ops with plain autograd (any device). Autograd keeps
  ``xz``, ``xc``, ``delta``, ``y`` and ``W_x·xc`` for the backward: about 5·d_inner values per
  position and sequence, ×2 per BiMamba block.
* :func:`mamba_inner_fn` — the same forward as one autograd node that saves only ``xz`` (plus, on
  CUDA, the scan's chunk-start states: N/T fp32 per position and channel) and recomputes the rest
  in backward. On CUDA with Triton the recomputation is the short causal conv and the two small
  projections only: the scan's backward kernel writes ``y`` again as it goes
  (``selective_scan_triton_bwd(..., return_out=True)``), so neither the scan's forward nor
  anything else is re-run. Elsewhere the backward re-runs the reference under autograd (same
  values, like activation checkpointing of these ops).

The two agree up to floating-point reassociation in the gradients (tested); the forward values
are the same ops in the same order. Autocast is honoured: the backward recomputes under the
autocast state that was active in the forward.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from strandwise.kernels._host import INTERPRETING
from strandwise.kernels.causal_conv import causal_conv1d_silu
from strandwise.kernels.selective_scan import autograd_records, selective_scan_fn

__all__ = ["mamba_inner_reference", "mamba_inner_fn", "MambaInnerFn"]


def _bproj(weight, t, bias=None):
    """``(out, in)`` weight applied to channel-major ``(B, in, L)`` → ``(B, out, L)``: one bmm."""
    y = torch.bmm(weight.unsqueeze(0).expand(t.shape[0], -1, -1), t)
    return y if bias is None else y + bias.to(y.dtype)[:, None]


def _inner_pre_scan(x, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, d_state, reverse):
    """Everything before the scan, from ``x = xz[:, :d_inner]``: ``(xc, delta, B, C)``."""
    xc = causal_conv1d_silu(x, conv_weight, conv_bias, reverse=reverse)
    x_dbl = _bproj(x_proj_weight, xc)
    r = x_dbl.shape[1] - 2 * d_state
    dt_low, Bm, Cm = torch.split(x_dbl, [r, d_state, d_state], dim=1)
    delta = _bproj(dt_proj_weight, dt_low)
    return xc, delta, Bm, Cm


def mamba_inner_reference(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D,
                          delta_bias, out_proj_weight, out_proj_bias=None, d_state=16,
                          reverse=False):
    """The mixer's inner ops with plain autograd; arguments as :func:`mamba_inner_fn`."""
    di = xz.shape[1] // 2
    xc, delta, Bm, Cm = _inner_pre_scan(xz[:, :di], conv_weight, conv_bias, x_proj_weight,
                                        dt_proj_weight, d_state, reverse)
    y = selective_scan_fn(xc, delta, A, Bm, Cm, D=D, z=xz[:, di:], delta_bias=delta_bias,
                          delta_softplus=True, reverse=reverse)
    return _bproj(out_proj_weight, y, out_proj_bias)


def _triton_ok(t: torch.Tensor) -> bool:
    """The Triton scan can run on ``t``: a CUDA tensor with Triton, or Triton's CPU interpreter
    (``TRITON_INTERPRET=1``, which the tests use to run this path without a GPU)."""
    if not (t.is_cuda or INTERPRETING):
        return False
    from strandwise.kernels.conv_norm import triton_available

    if t.is_cuda and not triton_available():
        return False
    try:
        import strandwise.kernels.selective_scan_triton  # noqa: F401
    except ImportError:
        return False
    return True


def _fast_forward(tensors, d_state, reverse, store_states):
    """The Triton forward: ``(out, chunk-start states or None, scan plan)``; ``store_states=False``
    (inference) skips the states the backward would need."""
    from strandwise.kernels.selective_scan_triton import _lastdim_contig, selective_scan_triton_fwd

    (xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D, delta_bias,
     out_proj_weight, out_proj_bias) = tensors
    di = xz.shape[1] // 2
    z = xz[:, di:]
    xc, delta, Bm, Cm = _inner_pre_scan(xz[:, :di], conv_weight, conv_bias, x_proj_weight,
                                        dt_proj_weight, d_state, reverse)
    Bm, Cm = _lastdim_contig(Bm), _lastdim_contig(Cm)
    y, _, states, plan = selective_scan_triton_fwd(
        xc, delta, A.contiguous(), Bm, Cm, D, z, delta_bias, True, reverse, None, False,
        store_states=store_states)
    return _bproj(out_proj_weight, y, out_proj_bias), states, plan


def _autocast_state(device_type: str):
    return (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))


class MambaInnerFn(torch.autograd.Function):
    """``apply(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D, delta_bias,
    out_proj_weight, out_proj_bias, d_state, reverse)``; see the module docstring."""

    @staticmethod
    def forward(ctx, xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D, delta_bias,
                out_proj_weight, out_proj_bias, d_state, reverse):
        dev = xz.device.type
        ctx.autocast = (dev, *_autocast_state(dev))
        ctx.d_state, ctx.reverse = int(d_state), bool(reverse)
        ctx.fast = _triton_ok(xz)
        ctx.has_out_bias = out_proj_bias is not None
        ctx.has_conv_bias = conv_bias is not None
        tensors = (xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D, delta_bias,
                   out_proj_weight, out_proj_bias)
        if not ctx.fast:
            out = mamba_inner_reference(*tensors, d_state=d_state, reverse=reverse)
            ctx.save_for_backward(*tensors)
            return out
        out, states, ctx.plan = _fast_forward(tensors, d_state, reverse, store_states=True)
        ctx.save_for_backward(*tensors, states)
        return out

    @staticmethod
    @once_differentiable  # both paths return first-order gradients only (recompute + grad,
    # or Triton kernels): a second derivative raises instead of coming out without this layer
    def backward(ctx, dout):
        dev, ac_on, ac_dtype = ctx.autocast
        saved = ctx.saved_tensors
        names = ("xz", "conv_weight", "conv_bias", "x_proj_weight", "dt_proj_weight", "A", "D",
                 "delta_bias", "out_proj_weight", "out_proj_bias")
        needs = ctx.needs_input_grad[:len(names)]
        leaves = [None if t is None else t.detach().requires_grad_(bool(n)) for t, n in zip(saved, needs)]
        # the recomputation runs under the forward's autocast state, the backward ops outside it
        # (as autograd runs them)
        recompute = lambda: torch.autocast(dev, dtype=ac_dtype, enabled=ac_on)  # noqa: E731
        with torch.enable_grad():
            if not ctx.fast:
                with recompute():
                    out = mamba_inner_reference(*leaves, d_state=ctx.d_state, reverse=ctx.reverse)
                wanted = [t for t, n in zip(leaves, needs) if n and t is not None]
                got = iter(torch.autograd.grad(out, wanted, dout, allow_unused=True))
                return tuple(next(got) if (n and t is not None) else None
                             for t, n in zip(leaves, needs)) + (None, None)
            return MambaInnerFn._fast_backward(ctx, dout, leaves, needs, saved[-1], recompute)

    @staticmethod
    def _fast_backward(ctx, dout, leaves, needs, states, recompute):
        from strandwise.kernels.selective_scan_triton import _lastdim_contig, selective_scan_triton_bwd

        xz, conv_w, conv_b, xproj_w, dtproj_w, A, D, dbias, out_w, out_b = leaves
        di = xz.shape[1] // 2
        # recompute the conv and the two projections (cheap next to the scan), with autograd
        x = xz[:, :di].detach().requires_grad_(needs[0])
        z = xz[:, di:].detach()
        with recompute():
            xc, delta, Bm, Cm = _inner_pre_scan(x, conv_w, conv_b, xproj_w, dtproj_w,
                                                ctx.d_state, ctx.reverse)
        # through out_proj by hand: dy = W_outᵀ·dout now, dW_out = Σ_b dout·yᵀ once y is known;
        # in the dtype the forward's product ran in (autocast's, or the weight's)
        dev, ac_on, ac_dtype = ctx.autocast
        w_out = out_w.detach().to(ac_dtype) if ac_on else out_w.detach()
        dout = dout.to(w_out.dtype)
        dy = torch.bmm(w_out.t().unsqueeze(0).expand(dout.shape[0], -1, -1), dout)
        Bc, Cc = _lastdim_contig(Bm.detach()), _lastdim_contig(Cm.detach())
        du, ddelta, dA, dB, dC, dD, dz, ddb, _, y = selective_scan_triton_bwd(
            dy, None, xc.detach(), delta.detach(), A.detach().contiguous(), Bc, Cc,
            None if D is None else D.detach(), z, None if dbias is None else dbias.detach(),
            True, ctx.reverse, states, ctx.plan, return_out=True)
        dW_out = None
        if needs[8]:  # y comes back in u's dtype; the product runs in dout's (the weight's)
            dW_out = torch.bmm(dout, y.to(dout.dtype).transpose(1, 2)).sum(0).to(out_w.dtype)
        db_out = dout.sum(dim=(0, 2)).to(out_b.dtype) if (out_b is not None and needs[9]) else None
        # the rest through autograd of the recomputed conv and projections; dz goes straight to xz
        wanted = [(i, t) for i, t in enumerate((x, conv_w, conv_b, xproj_w, dtproj_w))
                  if t is not None and t.requires_grad]
        outs = [(o, go) for o, go in ((xc, du), (delta, ddelta), (Bm, dB.to(Bm.dtype)),
                                       (Cm, dC.to(Cm.dtype))) if o.requires_grad]
        g = {}
        if wanted and outs:
            got = torch.autograd.grad([o for o, _ in outs], [t for _, t in wanted],
                                      [go for _, go in outs], allow_unused=True)
            g = dict(zip((i for i, _ in wanted), got))
        dxz = None
        if needs[0]:
            dx = g.get(0)
            dxz = torch.cat([dx.to(xz.dtype) if dx is not None else torch.zeros_like(x),
                             dz.to(xz.dtype)], dim=1)
        return (dxz, g.get(1), g.get(2), g.get(3), g.get(4),
                dA if needs[5] else None,
                dD if (D is not None and needs[6]) else None,
                ddb if (dbias is not None and needs[7]) else None,
                dW_out, db_out, None, None)


def mamba_inner_fn(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D, delta_bias,
                   out_proj_weight, out_proj_bias=None, d_state=16, reverse=False):
    """The Mamba mixer after ``in_proj``, saving only ``xz`` for the backward.

    Parameters
    ----------
    xz : torch.Tensor, shape (B, 2·d_inner, L)
        ``in_proj`` output, channel-major.
    conv_weight : (d_inner, 1, k) or (d_inner, k); conv_bias : (d_inner,) or None
    x_proj_weight : (r + 2·d_state, d_inner)
    dt_proj_weight : (d_inner, r)
    A : (d_inner, d_state) fp32, ``-exp(A_log)``
    D, delta_bias : (d_inner,) fp32 or None
    out_proj_weight : (d_model, d_inner); out_proj_bias : (d_model,) or None
    d_state : int
    reverse : bool
        Anti-causal conv and scan (BiMamba's reverse direction).

    Returns
    -------
    torch.Tensor, shape (B, d_model, L)
    """
    if not isinstance(xz, torch.Tensor) or xz.ndim != 3 or xz.shape[1] % 2:
        raise ValueError("mamba_inner_fn: xz must have shape (B, 2*d_inner, L); got "
                         f"{tuple(xz.shape) if isinstance(xz, torch.Tensor) else type(xz).__name__}")
    di = xz.shape[1] // 2
    if A.ndim != 2 or A.shape != (di, d_state):
        raise ValueError(f"mamba_inner_fn: A must have shape ({di}, {d_state}); got {tuple(A.shape)}")
    if x_proj_weight.ndim != 2 or x_proj_weight.shape[1] != di or x_proj_weight.shape[0] <= 2 * d_state:
        raise ValueError(f"mamba_inner_fn: x_proj_weight must have shape (r + {2 * d_state}, {di}); "
                         f"got {tuple(x_proj_weight.shape)}")
    if out_proj_weight.ndim != 2 or out_proj_weight.shape[1] != di:
        raise ValueError(f"mamba_inner_fn: out_proj_weight must have shape (d_model, {di}); "
                         f"got {tuple(out_proj_weight.shape)}")
    tensors = (xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, A, D, delta_bias,
               out_proj_weight, out_proj_bias)
    if not autograd_records(*tensors) and _triton_ok(xz):
        # inference: no autograd node, and the scan writes no chunk states for a backward
        return _fast_forward(tensors, int(d_state), bool(reverse), store_states=False)[0]
    return MambaInnerFn.apply(*tensors, d_state, reverse)
