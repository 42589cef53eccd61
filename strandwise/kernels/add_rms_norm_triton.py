"""Triton kernels for :func:`strandwise.kernels.add_rms_norm.add_rms_norm`, forward and backward.

Rows are the flattened leading dimensions (``B·L``), columns the ``G`` groups of ``DH`` channels
(G = 2 for NormRC, else 1). Output group ``g`` reads input group ``G-1-g`` when ``SWAP``.

Forward, per row: ``S_g = x_{g'} + r_{g'}`` (fp32), ``rstd_g = (Σ S_g² / DH + eps)^(-1/2)``,
``y_g = S_g · rstd_g · w_g`` with ``w_1 = flip(w)`` under NormRC. It writes ``S`` (fp32; it is
also the block's new residual), ``y`` (x's dtype) and ``rstd`` (fp32, saved for backward).

Backward, per row and group, with ``n = S·rstd`` and ``t = dy·w``:
``dS = rstd · (t − n · Σ(t·n) / DH) + dS_out`` (``dS_out`` = the gradient reaching the returned
``S``); ``dx_{g'} = dr_{g'} = dS_g``; ``dw`` gathers ``Σ_rows dy·n`` per program (reversed for
group 1 under NormRC) and the partial rows are summed on the host, so results are deterministic.
"""

from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable
import triton.language as tl

from strandwise.kernels._host import DIRECT, cdiv, next_pow2

BLOCK_ROWS = 8


@triton.jit
def _fwd(x_ptr, r_ptr, w_ptr, s_ptr, y_ptr, rstd_ptr, n_rows, eps,
         sx, sr, DH: tl.constexpr, G: tl.constexpr, FLIP: tl.constexpr, SWAP: tl.constexpr,
         HAS_RES: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr):
    pid = tl.program_id(0)
    rows = (pid * BR + tl.arange(0, BR)).to(tl.int64)
    rm = rows < n_rows
    c = tl.arange(0, BD)
    cm = c < DH
    m = rm[:, None] & cm[None, :]
    for g in tl.static_range(G):
        if SWAP:
            gi = G - 1 - g
        else:
            gi = g
        col = gi * DH + c
        v = tl.load(x_ptr + rows[:, None] * sx + col[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_RES:
            v += tl.load(r_ptr + rows[:, None] * sr + col[None, :], mask=m, other=0.0).to(tl.float32)
        out_col = g * DH + c
        tl.store(s_ptr + rows[:, None] * (G * DH) + out_col[None, :], v, mask=m)
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=1) / DH + eps)
        tl.store(rstd_ptr + rows * G + g, rstd, mask=rm)
        if FLIP and g == 1:
            wc = DH - 1 - c
        else:
            wc = c
        w = tl.load(w_ptr + wc, mask=cm, other=0.0).to(tl.float32)
        y = v * rstd[:, None] * w[None, :]
        tl.store(y_ptr + rows[:, None] * (G * DH) + out_col[None, :], y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _bwd(dy_ptr, ds_ptr, s_ptr, rstd_ptr, w_ptr, dx_ptr, dr_ptr, dw_ptr, n_rows, n_iter, n_prog,
         DH: tl.constexpr, G: tl.constexpr, FLIP: tl.constexpr, SWAP: tl.constexpr,
         HAS_DS: tl.constexpr, HAS_RES: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr):
    pid = tl.program_id(0)
    c = tl.arange(0, BD)
    cm = c < DH
    W = G * DH
    for g in tl.static_range(G):
        if SWAP:
            gi = G - 1 - g
        else:
            gi = g
        if FLIP and g == 1:
            wc = DH - 1 - c
        else:
            wc = c
        w = tl.load(w_ptr + wc, mask=cm, other=0.0).to(tl.float32)
        dw = tl.zeros((BD,), dtype=tl.float32)
        for it in range(0, n_iter):
            tile = pid + it * n_prog  # past the last tile: every row masked
            rows = (tile * BR + tl.arange(0, BR)).to(tl.int64)
            rm = rows < n_rows
            m = rm[:, None] & cm[None, :]
            oc = rows[:, None] * W + (g * DH + c)[None, :]
            v = tl.load(s_ptr + oc, mask=m, other=0.0)
            rstd = tl.load(rstd_ptr + rows * G + g, mask=rm, other=0.0)
            dy = tl.load(dy_ptr + oc, mask=m, other=0.0).to(tl.float32)
            nrm = v * rstd[:, None]
            t = dy * w[None, :]
            dv = rstd[:, None] * (t - nrm * (tl.sum(t * nrm, axis=1) / DH)[:, None])
            if HAS_DS:
                dv += tl.load(ds_ptr + oc, mask=m, other=0.0).to(tl.float32)
            dw += tl.sum(tl.where(m, dy * nrm, 0.0), axis=0)
            ic = rows[:, None] * W + (gi * DH + c)[None, :]
            tl.store(dx_ptr + ic, dv.to(dx_ptr.dtype.element_ty), mask=m)
            if HAS_RES:
                tl.store(dr_ptr + ic, dv.to(dr_ptr.dtype.element_ty), mask=m)
        tl.store(dw_ptr + (pid * G + g) * DH + wc, dw, mask=cm)


def _rows(t, C):
    """(n_rows, C) view with unit column stride and the row stride, copying only if needed."""
    t2 = t.reshape(-1, C)
    if t2.stride(-1) != 1:
        t2 = t2.contiguous()
    return t2, t2.stride(0)


class AddRMSNormFunc(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, residual, weight, eps, rc, swap):
        C = x.shape[-1]
        G = 2 if rc else 1
        DH = C // G
        x2, sx = _rows(x, C)
        has_res = residual is not None
        r2, sr = _rows(residual, C) if has_res else (x2, sx)
        n_rows = x2.shape[0]
        s = torch.empty((n_rows, C), device=x.device, dtype=torch.float32)
        y = torch.empty((n_rows, C), device=x.device, dtype=x.dtype)
        rstd = torch.empty((n_rows, G), device=x.device, dtype=torch.float32)
        BD = next_pow2(DH)
        BR = max(1, min(BLOCK_ROWS, 4096 // BD))
        DIRECT.run(_fwd, (cdiv(n_rows, BR),), (x2, r2, weight, s, y, rstd), (n_rows, eps, sx, sr),
                   dict(DH=DH, G=G, FLIP=bool(rc), SWAP=bool(swap), HAS_RES=has_res,
                        BR=BR, BD=BD, num_warps=4 if BD <= 1024 else 8),
                   (x2.dtype, r2.dtype, weight.dtype))
        ctx.save_for_backward(s, rstd, weight)
        ctx.meta = (G, DH, bool(rc), bool(swap), has_res, x.dtype,
                    residual.dtype if has_res else None, x.shape, BR, BD)
        return y.view(x.shape), s.view(x.shape)

    @staticmethod
    @once_differentiable  # Triton kernels: a second derivative raises instead of coming out wrong
    def backward(ctx, dy, ds):
        s, rstd, weight = ctx.saved_tensors
        G, DH, rc, swap, has_res, x_dtype, r_dtype, shape, BR, BD = ctx.meta
        C = G * DH
        n_rows = s.shape[0]
        if dy is None:
            dy = torch.zeros(shape, device=s.device, dtype=x_dtype)
        dy2 = dy.reshape(-1, C).contiguous()
        ds2 = ds.reshape(-1, C).contiguous() if ds is not None else dy2
        dx = torch.empty((n_rows, C), device=s.device, dtype=x_dtype)
        dr = torch.empty((n_rows, C), device=s.device, dtype=r_dtype) if has_res else dx
        n_tiles = cdiv(n_rows, BR)
        n_prog = max(1, min(n_tiles, torch.cuda.get_device_properties(s.device).multi_processor_count * 8))
        dwp = torch.empty((n_prog, G, DH), device=s.device, dtype=torch.float32)
        DIRECT.run(_bwd, (n_prog,), (dy2, ds2, s, rstd, weight, dx, dr, dwp),
                   (n_rows, cdiv(n_tiles, n_prog), n_prog),
                   dict(DH=DH, G=G, FLIP=rc, SWAP=swap, HAS_DS=ds is not None, HAS_RES=has_res,
                        BR=BR, BD=BD, num_warps=4 if BD <= 1024 else 8),
                   (dy2.dtype, ds2.dtype, weight.dtype, dx.dtype, dr.dtype))
        dw = dwp.sum(dim=(0, 1))  # group 1's partials are already stored at their weight's indices
        return (dx.view(shape), dr.view(shape) if has_res else None, dw.to(weight.dtype),
                None, None, None)


def add_rms_norm_triton(x, residual, weight, eps, rc=False, swap=False):
    """Triton :func:`~strandwise.kernels.add_rms_norm.add_rms_norm` (CUDA, fp32/bf16/fp16)."""
    return AddRMSNormFunc.apply(x, residual, weight, eps, rc, swap)
