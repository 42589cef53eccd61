"""Triton kernels: Mamba's causal depthwise convolution with the SiLU fused, forward and backward.

For ``x (B, D, L)`` (last dimension contiguous), ``w (D, k)``, optional bias ``b (D,)``::

    pre[b, d, t] = b[d] + Σ_j w[d, j] · x[b, d, t + o_j]      (zero outside [0, L))
    out = silu(pre)   (or pre, when the activation is off)

with ``o_j = j − (k − 1)`` (causal) or ``o_j = (k − 1) − j`` (anti-causal, ``reverse``). The
backward recomputes ``pre`` and writes ``g = dout · silu'(pre)`` once (fp32), with per-program partial
sums of ``dw`` and ``db``; a second kernel gathers ``dx[s] = Σ_j w[d, j] · g[s − o_j]``. Everything
accumulates in fp32; outputs are in the input's dtype. PyTorch's depthwise ``conv1d`` runs a
generic CUDA kernel at ~0.2 TB/s for this shape; these kernels are memory-bound.

The reference is :func:`strandwise.models.mamba.causal_conv1d` (+ ``F.silu``) on any device.
"""

from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable
import triton.language as tl

from strandwise.kernels._host import DIRECT, cdiv

BLOCK_D = 16
BLOCK_L = 256


@triton.jit
def _offset(j: tl.constexpr, K: tl.constexpr, REVERSE: tl.constexpr):
    """Position offset of tap ``j``: ``j − (k−1)`` (causal) or ``(k−1) − j`` (anti-causal)."""
    if REVERSE:
        o = K - 1 - j
    else:
        o = j - (K - 1)
    return o


@triton.jit
def _x_tap(xbase, d, dm, t, L, j: tl.constexpr, K: tl.constexpr, REVERSE: tl.constexpr):
    """The [BD, BL] tile ``x[d, t + o_j]`` as fp32, 0 outside ``[0, L)``."""
    s = t + _offset(j, K, REVERSE)
    m = dm[:, None] & (s >= 0)[None, :] & (s < L)[None, :]
    return tl.load(xbase + s[None, :], mask=m, other=0.0).to(tl.float32)


@triton.jit
def _pre_act(xbase, w_ptr, b_ptr, d, dm, t, L, K: tl.constexpr, REVERSE: tl.constexpr,
             HAS_BIAS: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    """``b[d] + Σ_j w[d, j] · x[d, t + o_j]`` in fp32, a [BD, BL] tile."""
    acc = tl.zeros((BD, BL), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + d, mask=dm, other=0.0).to(tl.float32)[:, None]
    for j in tl.static_range(K):
        wj = tl.load(w_ptr + d * K + j, mask=dm, other=0.0).to(tl.float32)
        acc += wj[:, None] * _x_tap(xbase, d, dm, t, L, j, K, REVERSE)
    return acc


@triton.jit
def _fwd(x_ptr, w_ptr, b_ptr, out_ptr, D, L, sxb, sxd, sob, sod,
         K: tl.constexpr, REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
         BD: tl.constexpr, BL: tl.constexpr):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)  # batch offsets can pass 2^31 elements
    d = pid_d * BD + tl.arange(0, BD)
    t = pid_l * BL + tl.arange(0, BL)
    dm = d < D
    xbase = x_ptr + bb * sxb + d[:, None] * sxd
    acc = _pre_act(xbase, w_ptr, b_ptr, d, dm, t, L, K, REVERSE, HAS_BIAS, BD, BL)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    om = dm[:, None] & (t < L)[None, :]
    tl.store(out_ptr + bb * sob + d[:, None] * sod + t[None, :], acc.to(out_ptr.dtype.element_ty), mask=om)


@triton.jit
def _bwd_g(x_ptr, w_ptr, b_ptr, dout_ptr, g_ptr, dw_ptr, db_ptr, D, L, n_lblk,
           sxb, sxd, sgb, sgd, sdb, sdd,
           K: tl.constexpr, REVERSE: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
           BD: tl.constexpr, BL: tl.constexpr):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)  # batch offsets can pass 2^31 elements
    d = pid_d * BD + tl.arange(0, BD)
    t = pid_l * BL + tl.arange(0, BL)
    dm = d < D
    tm = dm[:, None] & (t < L)[None, :]
    xbase = x_ptr + bb * sxb + d[:, None] * sxd
    dout = tl.load(dout_ptr + bb * sdb + d[:, None] * sdd + t[None, :], mask=tm, other=0.0).to(tl.float32)
    if SILU:
        pre = _pre_act(xbase, w_ptr, b_ptr, d, dm, t, L, K, REVERSE, HAS_BIAS, BD, BL)
        sg = tl.sigmoid(pre)
        g = dout * sg * (1.0 + pre * (1.0 - sg))
    else:
        g = dout
    g = tl.where(tm, g, 0.0)
    tl.store(g_ptr + bb * sgb + d[:, None] * sgd + t[None, :], g.to(g_ptr.dtype.element_ty), mask=tm)
    # partial dw[d, j] = Σ_t g_t · x_{t + o_j} and db[d] = Σ_t g_t of this (b, l-block)
    prog = bb * n_lblk + pid_l
    for j in tl.static_range(K):
        xv = _x_tap(xbase, d, dm, t, L, j, K, REVERSE)
        tl.store(dw_ptr + (prog * D + d) * K + j, tl.sum(g * xv, axis=1), mask=dm)
    if HAS_BIAS:
        tl.store(db_ptr + prog * D + d, tl.sum(g, axis=1), mask=dm)


@triton.jit
def _bwd_dx(g_ptr, w_ptr, dx_ptr, D, L, sgb, sgd, sxb, sxd,
            K: tl.constexpr, REVERSE: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)  # batch offsets can pass 2^31 elements
    d = pid_d * BD + tl.arange(0, BD)
    s = pid_l * BL + tl.arange(0, BL)
    dm = d < D
    acc = tl.zeros((BD, BL), dtype=tl.float32)
    gbase = g_ptr + bb * sgb + d[:, None] * sgd
    for j in tl.static_range(K):
        t = s - _offset(j, K, REVERSE)
        m = dm[:, None] & (t >= 0)[None, :] & (t < L)[None, :]
        gv = tl.load(gbase + t[None, :], mask=m, other=0.0).to(tl.float32)
        wj = tl.load(w_ptr + d * K + j, mask=dm, other=0.0).to(tl.float32)
        acc += wj[:, None] * gv
    om = dm[:, None] & (s < L)[None, :]
    tl.store(dx_ptr + bb * sxb + d[:, None] * sxd + s[None, :], acc.to(dx_ptr.dtype.element_ty), mask=om)


def _grid(B, D, L):
    return (cdiv(L, BLOCK_L), cdiv(D, BLOCK_D), B)


def _lastdim(t):
    return t if t.stride(-1) == 1 else t.contiguous()


class CausalConv1dSiluFunc(torch.autograd.Function):
    """``apply(x, w, b, reverse, silu)``: x (B, D, L) with ``stride(-1) == 1``, w (D, k) , b (D,)
    or None."""

    @staticmethod
    def forward(ctx, x, w, b, reverse, silu):
        x = _lastdim(x)
        B, D, L = x.shape
        K = w.shape[1]
        w_c = w.contiguous()
        out = torch.empty((B, D, L), device=x.device, dtype=x.dtype)
        DIRECT.run(_fwd, _grid(B, D, L), (x, w_c, b if b is not None else w_c, out),
                   (D, L, x.stride(0), x.stride(1), out.stride(0), out.stride(1)),
                   dict(K=K, REVERSE=bool(reverse), HAS_BIAS=b is not None, SILU=bool(silu),
                        BD=BLOCK_D, BL=BLOCK_L, num_warps=4))
        ctx.save_for_backward(x, w_c, b)
        ctx.flags = (bool(reverse), bool(silu), b is not None, w.dtype)
        return out

    @staticmethod
    @once_differentiable  # Triton kernels: a second derivative raises instead of coming out wrong
    def backward(ctx, dout):
        x, w, b = ctx.saved_tensors
        reverse, silu, has_b, w_dtype = ctx.flags
        dout = _lastdim(dout)
        B, D, L = x.shape
        K = w.shape[1]
        n_lblk = cdiv(L, BLOCK_L)
        g = torch.empty((B, D, L), device=x.device, dtype=torch.float32)  # dx is gathered from fp32 g
        dwp = torch.empty((B * n_lblk, D, K), device=x.device, dtype=torch.float32)
        dbp = torch.empty((B * n_lblk, D), device=x.device, dtype=torch.float32) if has_b else dwp
        DIRECT.run(_bwd_g, _grid(B, D, L), (x, w, b if has_b else w, dout, g, dwp, dbp),
                   (D, L, n_lblk, x.stride(0), x.stride(1), g.stride(0), g.stride(1),
                    dout.stride(0), dout.stride(1)),
                   dict(K=K, REVERSE=reverse, HAS_BIAS=has_b, SILU=silu,
                        BD=BLOCK_D, BL=BLOCK_L, num_warps=4))
        dx = torch.empty((B, D, L), device=x.device, dtype=x.dtype)
        DIRECT.run(_bwd_dx, _grid(B, D, L), (g, w, dx),
                   (D, L, g.stride(0), g.stride(1), dx.stride(0), dx.stride(1)),
                   dict(K=K, REVERSE=reverse, BD=BLOCK_D, BL=BLOCK_L, num_warps=4))
        dw = dwp.sum(dim=0).to(w_dtype)
        db = dbp.sum(dim=0).to(b.dtype) if has_b else None
        return dx, dw, db, None, None


def causal_conv1d_silu_triton(x, weight, bias=None, reverse=False, silu=True):
    """``silu(causal_conv1d(x, weight, bias, reverse))`` on CUDA; ``weight`` (D, 1, k) or (D, k)."""
    w = weight.reshape(weight.shape[0], -1)
    return CausalConv1dSiluFunc.apply(x, w, bias, reverse, silu)
