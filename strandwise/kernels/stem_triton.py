"""Triton kernel of the Cherimoya stem's no-grad path (see :mod:`strandwise.kernels.stem`).

Kept apart so that importing :mod:`strandwise.kernels` never imports Triton.

One program computes ``BLOCK_L`` positions × ``BLOCK_F`` filters of one example: the
``C_IN × TAPS`` window of every position is gathered from ``x`` (tiny, cached) as the A operand,
multiplied by the stacked weight ``(C_IN·TAPS, F)`` on the tensor cores, then bias and GELU(tanh)
are applied in fp32 and the tile is stored once, channels-last. With ``SPLIT`` the fp32 operands
are carried as two half-precision terms each (``a ≈ a_hi + a_lo``, ``w ≈ w_hi + w_lo``) and three
products ``a_hi·w_hi + a_hi·w_lo + a_lo·w_hi`` are accumulated in fp32: ~2^-16 relative error per
product (TF32 is ~2^-11); for one-hot input ``a_lo`` is zero.

Autotuning: ``BLOCK_L`` × ``num_warps``, key ``(F, KW, SPLIT, FAST_GELU)`` + dtypes. The kernel
only reads ``x`` and the weights and writes ``out``: every trial is idempotent.
"""

import triton
import triton.language as tl

from strandwise.kernels import conv_norm_triton as cnt
from strandwise.kernels._host import AUTOTUNE_CACHE
from strandwise.kernels._triton_ops import gelu_tanh

__all__ = ["stem_kernel", "stem_kernel_tuned"]


@triton.jit
def stem_kernel(
    x_ptr, wh_ptr, wl_ptr, b_ptr, out_ptr, L, F, sxn, sxc, sxl,
    KW: tl.constexpr, TAPS: tl.constexpr, C_IN: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_F: tl.constexpr, SPLIT: tl.constexpr, FAST_GELU: tl.constexpr,
):
    pid_l = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    pid_f = tl.program_id(2)
    pos = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    k = tl.arange(0, C_IN * TAPS)
    c = k // TAPS
    t = k - c * TAPS
    src = pos[:, None] + (t - KW // 2)[None, :]
    m = (pos < L)[:, None] & (t < KW)[None, :] & (src >= 0) & (src < L)
    a = tl.load(x_ptr + n * sxn + c[None, :] * sxc + src * sxl, mask=m, other=0.0).to(tl.float32)
    f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    woffs = k[:, None] * F + f[None, :]
    wh = tl.load(wh_ptr + woffs, mask=fmask[None, :], other=0.0)
    a_hi = a.to(wh_ptr.dtype.element_ty)
    acc = tl.dot(a_hi, wh)
    if SPLIT:
        wl = tl.load(wl_ptr + woffs, mask=fmask[None, :], other=0.0)
        a_lo = (a - a_hi.to(tl.float32)).to(wh_ptr.dtype.element_ty)
        acc = tl.dot(a_hi, wl, acc)
        acc = tl.dot(a_lo, wh, acc)
    z = acc + tl.load(b_ptr + f, mask=fmask, other=0.0).to(tl.float32)[None, :]
    g = gelu_tanh(z, FAST_GELU)  # hardware tanh for half-precision output
    rows = n * L + pos
    tl.store(out_ptr + rows[:, None] * F + f[None, :], g.to(out_ptr.dtype.element_ty),
             mask=(pos < L)[:, None] & fmask[None, :])


def configs():
    return [
        triton.Config({"BLOCK_L": bl}, num_warps=nw, num_stages=1)
        for bl in (64, 128)
        for nw in (4, 8)
    ]


stem_kernel_tuned = triton.autotune(
    configs=configs(), key=["F", "KW", "SPLIT", "FAST_GELU", "BLOCK_F"], do_bench=cnt._bench,
    cache_results=AUTOTUNE_CACHE,
)(stem_kernel)
