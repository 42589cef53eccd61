"""Triton Mamba-1 selective scan, forward and backward (spec ``caduceus.md`` §5.2, §5.4, §5.6).

Per (batch b, channel d, state n), in scan order t (``reverse=True`` walks positions L-1 … 0)::

    Δ_t   = softplus(delta_t + delta_bias)          (if delta_softplus; threshold 20)
    h_t   = exp(Δ_t·A) · h_{t-1} + Δ_t·B_t·u_t        (h_{-1} = initial_state or 0)
    y_t   = Σ_n C_t·h_t + D·u_t
    out_t = y_t · silu(z_t)                           (if z is given)

Design (why it looks like this):

* **Chunks of T positions.** A program owns ``BLOCK_D`` channels of one batch row and one *segment*
  of the sequence. It walks its segment in chunks of ``T`` positions; inside a chunk the recurrence
  is a ``tl.associative_scan`` over ``(a, b)`` pairs of the ``[BLOCK_D, N, T]`` tile with the
  combine ``(a1·a2, a2·b1 + b2)``; the carry ``h`` enters through the first element. Nothing of
  shape ``(B, d_inner, L, N)`` ever reaches memory.
* **Sequence split.** When ``B · cdiv(d_inner, BLOCK_D)`` programs would not fill the GPU (batch 1,
  L = 131,072) the sequence is cut into segments handled by separate programs. A cheap summary
  kernel first reduces each segment to its end state from a zero start,
  ``Σ_s exp(A·(S_end − S_s))·Δ_s·B_s·u_s`` (no scan: a cumulative sum of Δ and one exp per
  element), and ``ΣΔ``; each program then folds the summaries of the segments before it into its
  start state. The backward does the same for the adjoint ``g`` running the other way.
* **Saved state.** The forward stores the state at every chunk start, ``(B, d_inner, n_chunks, N)``
  fp32 (``N/T`` floats per position and channel); the backward recomputes ``h`` inside each chunk
  from it instead of storing per-step states.
* **Backward.** Per chunk, walked in reverse: recompute ``h`` (forward scan), run the reverse scan
  ``g_t = C_t·dy_t + a_{t+1}·g_{t+1}`` (``a_{t+1}`` comes from re-reading Δ one position ahead),
  and use ``a_t·h_{t-1} = h_t − Δ_t·B_t·u_t`` so no shifted state is needed. dA, dD and
  d delta_bias accumulate in registers; dB and dC (reductions over channels) are reduced over
  each warp's 32 channels in registers and then either added atomically (fp32) into one buffer —
  the default — or, under ``torch.use_deterministic_algorithms(True)`` (or for d_state ≠ 16),
  written as per-channel-block partials and summed afterwards in a fixed order.
* **Reverse** maps logical position p to physical ``L-1-p`` in every address computation, so the
  reverse scan needs no flipped copies.
* **Numerics.** fp32 state and accumulation, ``exp2`` with ``A`` pre-scaled by log2(e), softplus in
  fp32 with threshold 20; inputs are cast at load, outputs at store.

Autotuning only varies ``BLOCK_D`` and ``num_warps``; every kernel writes only buffers it never
reads, except the atomic dB/dC sum, which the autotuner zeroes before every trial and before the
tuned run, so the first, tuned call returns the same result as later calls (to float rounding of
the atomic sum's order; bit for bit with deterministic algorithms on).
"""

from __future__ import annotations

import torch
import triton
from torch.autograd.function import once_differentiable
import triton.language as tl

from strandwise.kernels._host import AUTOTUNE_CACHE, DIRECT, INTERPRETING, cdiv, env_flag, env_get, next_pow2
from strandwise.kernels.selective_scan import autograd_records

__all__ = ["selective_scan_triton", "SelectiveScanTritonFunc", "selective_scan_triton_fwd",
           "selective_scan_triton_bwd"]

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _interpreting() -> bool:
    return INTERPRETING  # read once at import (strandwise.kernels._host)


def _autotuning() -> bool:
    # STRANDWISE_SCAN_AUTOTUNE=0 pins the default configs (quick test runs: no per-shape tuning);
    # read per call (tests switch it), and a value other than 0 / 1 raises
    return not _interpreting() and env_flag("STRANDWISE_SCAN_AUTOTUNE", True)


# --------------------------------------------------------------------------------------------
# device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _neg_zero():
    # -0.0 as an fp32 constant, for the "other" value of masked sums: x + (-0.0) is x exactly, so
    # the compiler drops those adds, which it must keep for +0.0 (+0.0 + -0.0 is +0.0). A literal
    # -0.0 in a kernel reached the IR as +0.0 (Triton 3.6: the TTGIR constant is dense<0.0>),
    # hence the bit pattern. Offline sm_90: loop instructions forward 723 -> 703, forward
    # summary 463 -> 447, backward 1,515 -> 1,448, backward summary 333 -> 283.
    return tl.full([1], -2147483648, tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) is the earlier element in scan order: h = a2·(a1·h0 + b1) + b2.
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # log(1 + e^x) with torch's threshold 20 (identity above it), in fp32.
    sp = tl.log2(1.0 + tl.exp2(x * 1.4426950408889634)) * 0.6931471805599453
    return tl.where(x > 20.0, x, sp)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp2(x * -1.4426950408889634))


@triton.jit
def _load_delta(delta_ptr, offs2, m2, dbias, HAS_DBIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Δ after bias and softplus, 0 outside the valid positions (so a = 1, b = 0 there)."""
    raw = tl.load(delta_ptr + offs2, mask=m2, other=0.0).to(tl.float32)
    if HAS_DBIAS:
        raw = raw + dbias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    dt = tl.where(m2, dt, 0.0)
    return dt, raw


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


@triton.jit
def _ld_td(base, offs_d, s_d, phys, m2):
    """[TF, BLOCK_D] tile of a (·, d_inner, L) tensor as fp32, 0 where masked."""
    return tl.load(base + offs_d[None, :] * s_d + phys[:, None], mask=m2, other=0.0).to(tl.float32)


@triton.jit
def _dt_td(d_base, offs_d, s_dd, phys, m2, dbias, HAS_DBIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Δ after bias and softplus as a [TF, BLOCK_D] tile (0 where masked), and the raw argument."""
    raw = _ld_td(d_base, offs_d, s_dd, phys, m2)
    if HAS_DBIAS:
        raw = raw + dbias[None, :]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return tl.where(m2, dt, 0.0), raw


@triton.jit
def _fwd_summary_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, dbias_ptr, hsum_ptr, dsum_ptr,
    L, DI, N, n_seg, seg_chunks, n_chunks,
    s_ub, s_ud, s_db, s_dd, s_bb, s_bn,
    HAS_DBIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, TF: tl.constexpr,
):
    """Segment summary: the segment's end state from a zero start, and ΣΔ over the segment.

    Same ``[N, TF, BLOCK_D]`` tiles as the forward (one channel per thread, the scan in-thread),
    without C, z, the output or the saved states.
    """
    pid0 = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = pid0 // n_seg
    seg = pid0 % n_seg
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, TF)
    md = offs_d < DI
    mn = offs_n < N
    mnd = mn[:, None] & md[None, :]
    A2 = tl.load(A_ptr + offs_d[None, :] * N + offs_n[:, None], mask=mnd, other=0.0) * 1.4426950408889634
    dbias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_DBIAS:
        dbias = tl.load(dbias_ptr + offs_d, mask=md, other=0.0)
    b64 = b.to(tl.int64)
    u_base = u_ptr + b64 * s_ub
    d_base = delta_ptr + b64 * s_db
    B_base = B_ptr + b64 * s_bb
    first = (offs_t == 0)[None, :, None]
    last_t = (offs_t == TF - 1)[None, :, None]
    SUB: tl.constexpr = T // TF
    h = tl.zeros([NP, BLOCK_D], dtype=tl.float32)
    tot = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0 = seg * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    if seg == n_seg - 1:
        c1 = c0  # no segment follows the last one: its summary is never read
    for k in range(c0 * SUB, c1 * SUB):
        p = k * TF + offs_t
        pm = p < L
        if REVERSE:
            phys = L - 1 - p
        else:
            phys = p
        m2 = pm[:, None] & md[None, :]
        dt, raw = _dt_td(d_base, offs_d, s_dd, phys, m2, dbias, HAS_DBIAS, SOFTPLUS)
        u = _ld_td(u_base, offs_d, s_ud, phys, m2)
        Bt = tl.load(B_base + offs_n[:, None] * s_bn + phys[None, :],
                     mask=mn[:, None] & pm[None, :], other=0.0).to(tl.float32)
        a = tl.exp2(dt[None, :, :] * A2[:, None, :])
        bb = (dt * u)[None, :, :] * Bt[:, :, None]
        bb = tl.where(first, bb + a * h[:, None, :], bb)
        _, hs = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
        h = tl.sum(tl.where(last_t, hs, _neg_zero()), axis=1)
        tot += tl.sum(dt, axis=0)
    ob = pid0.to(tl.int64) * DI
    tl.store(hsum_ptr + (ob + offs_d[None, :]) * N + offs_n[:, None], h, mask=mnd)
    tl.store(dsum_ptr + ob + offs_d, tot, mask=md)


@triton.jit
def _fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dbias_ptr, h0_ptr,
    hsum_ptr, dsum_ptr, out_ptr, states_ptr, last_ptr,
    L, DI, N, n_seg, seg_chunks, n_chunks,
    s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_bb, s_bn, s_cb, s_cn,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DBIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, REVERSE: tl.constexpr, STORE_LAST: tl.constexpr,
    STORE_STATES: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, TF: tl.constexpr,
):
    # Tiles are laid out [N, TF, BLOCK_D]: Triton's default layout puts lanes on the last axis,
    # so each thread owns one channel with all its states and TF consecutive positions. The
    # scan along TF and the sum over N then run inside the thread, with no shuffles.
    # ``T`` is the state-saving granularity (the backward's chunk); TF divides it.
    pid0 = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = pid0 // n_seg
    seg = pid0 % n_seg
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, TF)
    md = offs_d < DI
    mn = offs_n < N
    mnd = mn[:, None] & md[None, :]
    A2 = tl.load(A_ptr + offs_d[None, :] * N + offs_n[:, None], mask=mnd, other=0.0) * 1.4426950408889634
    dbias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_DBIAS:
        dbias = tl.load(dbias_ptr + offs_d, mask=md, other=0.0)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0)
    b64 = b.to(tl.int64)
    nd_off = (b64 * DI + offs_d[None, :]) * N + offs_n[:, None]  # (B, DI, N) layout, [N, D] tile
    h = tl.zeros([NP, BLOCK_D], dtype=tl.float32)
    if HAS_H0:
        h = tl.load(h0_ptr + nd_off, mask=mnd, other=0.0)
    # fold the summaries of the segments before this one into the start state
    for j in range(0, seg):
        sb = (b64 * n_seg + j) * DI
        tot = tl.load(dsum_ptr + sb + offs_d, mask=md, other=0.0)
        hl = tl.load(hsum_ptr + (sb + offs_d[None, :]) * N + offs_n[:, None], mask=mnd, other=0.0)
        h = tl.exp2(A2 * tot[None, :]) * h + hl
    u_base = u_ptr + b64 * s_ub
    d_base = delta_ptr + b64 * s_db
    z_base = z_ptr + b64 * s_zb
    B_base = B_ptr + b64 * s_bb
    C_base = C_ptr + b64 * s_cb
    o_base = out_ptr + b64 * DI * L
    first = (offs_t == 0)[None, :, None]
    last_t = (offs_t == TF - 1)[None, :, None]
    SUB: tl.constexpr = T // TF
    c0 = seg * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    for k in range(c0 * SUB, c1 * SUB):
        if STORE_STATES:  # the backward's chunk-start states (a forward without one skips them)
            if k % SUB == 0:
                tl.store(states_ptr + ((b64 * DI + offs_d[None, :]) * n_chunks + k // SUB) * N
                         + offs_n[:, None], h, mask=mnd)
        p = k * TF + offs_t
        pm = p < L
        if REVERSE:
            phys = L - 1 - p
        else:
            phys = p
        m2 = pm[:, None] & md[None, :]  # [TF, D]
        mnt = mn[:, None] & pm[None, :]  # [N, TF]
        raw = tl.load(d_base + offs_d[None, :] * s_dd + phys[:, None], mask=m2, other=0.0).to(tl.float32)
        if HAS_DBIAS:
            raw = raw + dbias[None, :]
        dt = raw
        if SOFTPLUS:
            dt = _softplus(raw)
        dt = tl.where(m2, dt, 0.0)
        u = tl.load(u_base + offs_d[None, :] * s_ud + phys[:, None], mask=m2, other=0.0).to(tl.float32)
        Bt = tl.load(B_base + offs_n[:, None] * s_bn + phys[None, :], mask=mnt, other=0.0).to(tl.float32)
        Ct = tl.load(C_base + offs_n[:, None] * s_cn + phys[None, :], mask=mnt, other=0.0).to(tl.float32)
        a = tl.exp2(dt[None, :, :] * A2[:, None, :])  # [N, TF, D]
        bb = (dt * u)[None, :, :] * Bt[:, :, None]
        bb = tl.where(first, bb + a * h[:, None, :], bb)
        _, hs = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
        y = tl.sum(hs * Ct[:, :, None], axis=0)  # [TF, D]
        if HAS_D:
            y += Dv[None, :] * u
        if HAS_Z:
            zz = tl.load(z_base + offs_d[None, :] * s_zd + phys[:, None], mask=m2, other=0.0).to(tl.float32)
            y = y * zz * _sigmoid(zz)
        tl.store(o_base + offs_d[None, :] * L + phys[:, None], y.to(out_ptr.dtype.element_ty), mask=m2)
        h = tl.sum(tl.where(last_t, hs, _neg_zero()), axis=1)
    if STORE_LAST:
        if seg == n_seg - 1:
            tl.store(last_ptr + nd_off, h, mask=mnd)


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------


@triton.jit
def _rs16(lo, hi, bit):
    # lanes with ``bit`` set keep ``hi`` and add their partner's (lane ^ 16) ``hi``; the others keep
    # ``lo``: half of a butterfly's exchanges, since each lane only needs half of the result
    return tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .f32 s, k, r; setp.ne.s32 p, $3, 0; selp.f32 s, $1, $2, p; "
        "selp.f32 k, $2, $1, p; shfl.sync.bfly.b32 r, s, 16, 0x1f, 0xffffffff; add.f32 $0, k, r; }",
        "=f,f,f,r", [lo, hi, bit], dtype=tl.float32, is_pure=True, pack=1)

@triton.jit
def _rs8(lo, hi, bit):
    # lanes with ``bit`` set keep ``hi`` and add their partner's (lane ^ 8) ``hi``; the others keep
    # ``lo``: half of a butterfly's exchanges, since each lane only needs half of the result
    return tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .f32 s, k, r; setp.ne.s32 p, $3, 0; selp.f32 s, $1, $2, p; "
        "selp.f32 k, $2, $1, p; shfl.sync.bfly.b32 r, s, 8, 0x1f, 0xffffffff; add.f32 $0, k, r; }",
        "=f,f,f,r", [lo, hi, bit], dtype=tl.float32, is_pure=True, pack=1)

@triton.jit
def _rs4(lo, hi, bit):
    # lanes with ``bit`` set keep ``hi`` and add their partner's (lane ^ 4) ``hi``; the others keep
    # ``lo``: half of a butterfly's exchanges, since each lane only needs half of the result
    return tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .f32 s, k, r; setp.ne.s32 p, $3, 0; selp.f32 s, $1, $2, p; "
        "selp.f32 k, $2, $1, p; shfl.sync.bfly.b32 r, s, 4, 0x1f, 0xffffffff; add.f32 $0, k, r; }",
        "=f,f,f,r", [lo, hi, bit], dtype=tl.float32, is_pure=True, pack=1)

@triton.jit
def _rs2(lo, hi, bit):
    # lanes with ``bit`` set keep ``hi`` and add their partner's (lane ^ 2) ``hi``; the others keep
    # ``lo``: half of a butterfly's exchanges, since each lane only needs half of the result
    return tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .f32 s, k, r; setp.ne.s32 p, $3, 0; selp.f32 s, $1, $2, p; "
        "selp.f32 k, $2, $1, p; shfl.sync.bfly.b32 r, s, 2, 0x1f, 0xffffffff; add.f32 $0, k, r; }",
        "=f,f,f,r", [lo, hi, bit], dtype=tl.float32, is_pure=True, pack=1)

@triton.jit
def _rs1(lo, hi, bit):
    # lanes with ``bit`` set keep ``hi`` and add their partner's (lane ^ 1) ``hi``; the others keep
    # ``lo``: half of a butterfly's exchanges, since each lane only needs half of the result
    return tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .f32 s, k, r; setp.ne.s32 p, $3, 0; selp.f32 s, $1, $2, p; "
        "selp.f32 k, $2, $1, p; shfl.sync.bfly.b32 r, s, 1, 0x1f, 0xffffffff; add.f32 $0, k, r; }",
        "=f,f,f,r", [lo, hi, bit], dtype=tl.float32, is_pure=True, pack=1)

@triton.jit
def _lane_sum_scatter16(X, Y, offs_n, lane):
    """Sum two [16, TF, 32·w] tiles (lanes on the last axis) over the 32 lanes of each warp.

    A reduce-scatter: 31 exchanges per slot instead of the 2 × 16 × 5 of two butterfly
    reductions. Returns a [TF, 32·w] tile in which lane l holds, per slot, the warp's sum of
    ``(Y if l & 16 else X)[l & 15]``.
    """
    nz = _neg_zero()  # masked-out value: the sums below are picks, no adds left
    x0 = tl.sum(tl.where(offs_n[:, None, None] == 0, X, nz), axis=0)
    y0 = tl.sum(tl.where(offs_n[:, None, None] == 0, Y, nz), axis=0)
    x1 = tl.sum(tl.where(offs_n[:, None, None] == 1, X, nz), axis=0)
    y1 = tl.sum(tl.where(offs_n[:, None, None] == 1, Y, nz), axis=0)
    x2 = tl.sum(tl.where(offs_n[:, None, None] == 2, X, nz), axis=0)
    y2 = tl.sum(tl.where(offs_n[:, None, None] == 2, Y, nz), axis=0)
    x3 = tl.sum(tl.where(offs_n[:, None, None] == 3, X, nz), axis=0)
    y3 = tl.sum(tl.where(offs_n[:, None, None] == 3, Y, nz), axis=0)
    x4 = tl.sum(tl.where(offs_n[:, None, None] == 4, X, nz), axis=0)
    y4 = tl.sum(tl.where(offs_n[:, None, None] == 4, Y, nz), axis=0)
    x5 = tl.sum(tl.where(offs_n[:, None, None] == 5, X, nz), axis=0)
    y5 = tl.sum(tl.where(offs_n[:, None, None] == 5, Y, nz), axis=0)
    x6 = tl.sum(tl.where(offs_n[:, None, None] == 6, X, nz), axis=0)
    y6 = tl.sum(tl.where(offs_n[:, None, None] == 6, Y, nz), axis=0)
    x7 = tl.sum(tl.where(offs_n[:, None, None] == 7, X, nz), axis=0)
    y7 = tl.sum(tl.where(offs_n[:, None, None] == 7, Y, nz), axis=0)
    x8 = tl.sum(tl.where(offs_n[:, None, None] == 8, X, nz), axis=0)
    y8 = tl.sum(tl.where(offs_n[:, None, None] == 8, Y, nz), axis=0)
    x9 = tl.sum(tl.where(offs_n[:, None, None] == 9, X, nz), axis=0)
    y9 = tl.sum(tl.where(offs_n[:, None, None] == 9, Y, nz), axis=0)
    x10 = tl.sum(tl.where(offs_n[:, None, None] == 10, X, nz), axis=0)
    y10 = tl.sum(tl.where(offs_n[:, None, None] == 10, Y, nz), axis=0)
    x11 = tl.sum(tl.where(offs_n[:, None, None] == 11, X, nz), axis=0)
    y11 = tl.sum(tl.where(offs_n[:, None, None] == 11, Y, nz), axis=0)
    x12 = tl.sum(tl.where(offs_n[:, None, None] == 12, X, nz), axis=0)
    y12 = tl.sum(tl.where(offs_n[:, None, None] == 12, Y, nz), axis=0)
    x13 = tl.sum(tl.where(offs_n[:, None, None] == 13, X, nz), axis=0)
    y13 = tl.sum(tl.where(offs_n[:, None, None] == 13, Y, nz), axis=0)
    x14 = tl.sum(tl.where(offs_n[:, None, None] == 14, X, nz), axis=0)
    y14 = tl.sum(tl.where(offs_n[:, None, None] == 14, Y, nz), axis=0)
    x15 = tl.sum(tl.where(offs_n[:, None, None] == 15, X, nz), axis=0)
    y15 = tl.sum(tl.where(offs_n[:, None, None] == 15, Y, nz), axis=0)
    zero = tl.zeros_like(x0).to(tl.int32)
    b16 = zero + ((lane & 16) != 0).to(tl.int32)[None, :]
    b8 = zero + ((lane & 8) != 0).to(tl.int32)[None, :]
    b4 = zero + ((lane & 4) != 0).to(tl.int32)[None, :]
    b2 = zero + ((lane & 2) != 0).to(tl.int32)[None, :]
    b1 = zero + ((lane & 1) != 0).to(tl.int32)[None, :]
    r0 = _rs16(x0, y0, b16)
    r1 = _rs16(x1, y1, b16)
    r2 = _rs16(x2, y2, b16)
    r3 = _rs16(x3, y3, b16)
    r4 = _rs16(x4, y4, b16)
    r5 = _rs16(x5, y5, b16)
    r6 = _rs16(x6, y6, b16)
    r7 = _rs16(x7, y7, b16)
    r8 = _rs16(x8, y8, b16)
    r9 = _rs16(x9, y9, b16)
    r10 = _rs16(x10, y10, b16)
    r11 = _rs16(x11, y11, b16)
    r12 = _rs16(x12, y12, b16)
    r13 = _rs16(x13, y13, b16)
    r14 = _rs16(x14, y14, b16)
    r15 = _rs16(x15, y15, b16)
    s0 = _rs8(r0, r8, b8)
    s1 = _rs8(r1, r9, b8)
    s2 = _rs8(r2, r10, b8)
    s3 = _rs8(r3, r11, b8)
    s4 = _rs8(r4, r12, b8)
    s5 = _rs8(r5, r13, b8)
    s6 = _rs8(r6, r14, b8)
    s7 = _rs8(r7, r15, b8)
    t0 = _rs4(s0, s4, b4)
    t1 = _rs4(s1, s5, b4)
    t2 = _rs4(s2, s6, b4)
    t3 = _rs4(s3, s7, b4)
    v0 = _rs2(t0, t2, b2)
    v1 = _rs2(t1, t3, b2)
    return _rs1(v0, v1, b1)


@triton.jit
def _bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dbias_ptr, dout_ptr, states_ptr,
    dlast_ptr, gsum_ptr, dsum_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dBp_ptr, dCp_ptr, dAp_ptr, dDp_ptr, ddbp_ptr, dh0_ptr, outz_ptr,
    L, DI, N, n_seg, seg_chunks, n_chunks, n_dblk,
    s_ub, s_ud, s_db, s_dd, s_zb, s_zd, s_bb, s_bn, s_cb, s_cn, s_ob, s_od, s_p,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DBIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr, REVERSE: tl.constexpr, SUMMARY: tl.constexpr,
    LANE_RS: tl.constexpr, STORE_OUT: tl.constexpr, ATOMIC_BC: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, TF: tl.constexpr,
):
    # Same [N, TF, BLOCK_D] tiles as the forward: one channel per thread with all its states and
    # TF consecutive positions, so both scans and the sums over states stay in-thread; only the
    # dB/dC sums over channels cross lanes. Chunks of T positions are walked in reverse. Pass 1
    # re-runs the chunk forward from its saved start state and parks the state at every
    # sub-chunk start in a per-program scratch (each thread reads back only what it wrote);
    # pass 2 walks the sub-chunks in reverse, recomputes their states from the scratch and runs
    # the adjoint scan. SUMMARY=True only runs the adjoint from zero over the segment (no h
    # needed) and stores a_start·g_start and ΣΔ, for the sequence split.
    pid0 = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = pid0 // n_seg
    seg = pid0 % n_seg
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, NP)
    offs_t = tl.arange(0, TF)
    md = offs_d < DI
    mn = offs_n < N
    mnd = mn[:, None] & md[None, :]
    A = tl.load(A_ptr + offs_d[None, :] * N + offs_n[:, None], mask=mnd, other=0.0)
    dbias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_DBIAS:
        dbias = tl.load(dbias_ptr + offs_d, mask=md, other=0.0)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=md, other=0.0)
    b64 = b.to(tl.int64)
    nd_off = (b64 * DI + offs_d[None, :]) * N + offs_n[:, None]  # (B, DI, N) layout, [N, D] tile
    # q = a_{next}·g_{next}: what flows into the last position of this program's range
    q = tl.zeros([NP, BLOCK_D], dtype=tl.float32)
    if not SUMMARY:
        if HAS_DLAST:
            q = tl.load(dlast_ptr + nd_off, mask=mnd, other=0.0)
        for jj in range(0, n_seg - 1 - seg):
            j = n_seg - 1 - jj
            sb = (b64 * n_seg + j) * DI
            tot = tl.load(dsum_ptr + sb + offs_d, mask=md, other=0.0)
            gl = tl.load(gsum_ptr + (sb + offs_d[None, :]) * N + offs_n[:, None], mask=mnd, other=0.0)
            q = tl.exp2(A * (tot * 1.4426950408889634)[None, :]) * q + gl
    u_base = u_ptr + b64 * s_ub
    d_base = delta_ptr + b64 * s_db
    z_base = z_ptr + b64 * s_zb
    B_base = B_ptr + b64 * s_bb
    C_base = C_ptr + b64 * s_cb
    o_base = dout_ptr + b64 * s_ob
    gbase = b64 * DI * L  # du, ddelta, dz are contiguous (B, DI, L)
    pbase = (b64 * n_dblk + pid_d) * 2 * N * L  # dB/dC partials (B, n_dblk, 2, N, L)
    lane = tl.arange(0, BLOCK_D) % 32
    SUB: tl.constexpr = T // TF
    # this launch's own grid width: n_dblk counts the narrowest channel blocks, not BLOCK_D's
    scr = scratch_ptr + (pid0.to(tl.int64) * tl.num_programs(1) + pid_d) * (SUB * NP * BLOCK_D)
    scr_off = offs_n[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]  # int32, per thread
    first = (offs_t == 0)[None, :, None]
    last_t = (offs_t == TF - 1)[None, :, None]
    # q and dA are carried through the loops as [N, 1, D] tiles of the scans' 3-D layout: as
    # [N, D] tiles the compiler kept them in the layout of their global loads/stores and changed
    # layout (through shared memory) at every position of the adjoint
    q = tl.expand_dims(q, 1)
    dA_acc = tl.zeros([NP, 1, BLOCK_D], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    ddb_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    tot_s = tl.zeros([BLOCK_D], dtype=tl.float32)
    c0 = seg * seg_chunks
    c1 = tl.minimum(c0 + seg_chunks, n_chunks)
    if SUMMARY:
        if seg == 0:
            c1 = c0  # the adjoint flows toward position 0: nothing reads the first segment's summary
    for cc in range(0, c1 - c0):
        c = c1 - 1 - cc
        if not SUMMARY:
            # pass 1: states at the sub-chunk starts of this chunk
            h = tl.load(states_ptr + ((b64 * DI + offs_d[None, :]) * n_chunks + c) * N
                        + offs_n[:, None], mask=mnd, other=0.0)
            for s in range(0, SUB - 1):
                tl.store(scr + (s * (NP * BLOCK_D) + scr_off), h)
                p = (c * SUB + s) * TF + offs_t
                pm = p < L
                if REVERSE:
                    phys = L - 1 - p
                else:
                    phys = p
                m2 = pm[:, None] & md[None, :]
                dt, raw = _dt_td(d_base, offs_d, s_dd, phys, m2, dbias, HAS_DBIAS, SOFTPLUS)
                u = _ld_td(u_base, offs_d, s_ud, phys, m2)
                Bt = tl.load(B_base + (offs_n[:, None] * s_bn + phys[None, :]),
                             mask=mn[:, None] & pm[None, :], other=0.0).to(tl.float32)
                a = tl.exp2((dt * 1.4426950408889634)[None, :, :] * A[:, None, :])
                bb = (dt * u)[None, :, :] * Bt[:, :, None]
                bb = tl.where(first, bb + a * h[:, None, :], bb)
                _, hs = tl.associative_scan((a, bb), axis=1, combine_fn=_combine)
                h = tl.sum(tl.where(last_t, hs, _neg_zero()), axis=1)
            tl.store(scr + ((SUB - 1) * (NP * BLOCK_D) + scr_off), h)
        # pass 2: sub-chunks in reverse. Ordered for register pressure (one [N, TF] fp32 tile per
        # thread is 16·TF registers): the forward scan first (a, Δ·B·u → h), then C (y and the
        # adjoint), and B loaded a second time for the gradients, instead of keeping B and Δ·B·u
        # live across both scans. The kernel still compiles to 255 registers (8 one-warp programs
        # per SM); this and the [N, 1, D] carries cut its spills from 312 to 160 bytes (sm_90).
        for ss in range(0, SUB):
            s = SUB - 1 - ss
            p = (c * SUB + s) * TF + offs_t
            pm = p < L
            if REVERSE:
                phys = L - 1 - p
            else:
                phys = p
            m2 = pm[:, None] & md[None, :]
            mnt = mn[:, None] & pm[None, :]
            bc_off = offs_n[:, None] * s_bn + phys[None, :]
            dt, raw = _dt_td(d_base, offs_d, s_dd, phys, m2, dbias, HAS_DBIAS, SOFTPLUS)
            a = tl.exp2((dt * 1.4426950408889634)[None, :, :] * A[:, None, :])
            if not SUMMARY:
                h0 = tl.load(scr + (s * (NP * BLOCK_D) + scr_off))
                u = _ld_td(u_base, offs_d, s_ud, phys, m2)
                dtu = dt * u
                Bt = tl.load(B_base + bc_off, mask=mnt, other=0.0).to(tl.float32)
                bb = dtu[None, :, :] * Bt[:, :, None]
                _, hs = tl.associative_scan((a, tl.where(first, bb + a * h0[:, None, :], bb)), axis=1,
                                            combine_fn=_combine)
            Ct = tl.load(C_base + (offs_n[:, None] * s_cn + phys[None, :]), mask=mnt,
                         other=0.0).to(tl.float32)
            do = _ld_td(o_base, offs_d, s_od, phys, m2)
            if HAS_Z:
                zz = _ld_td(z_base, offs_d, s_zd, phys, m2)
                sz = _sigmoid(zz)
                dy = do * zz * sz
            else:
                dy = do
            if not SUMMARY:
                if HAS_Z or STORE_OUT:
                    y = tl.sum(hs * Ct[:, :, None], axis=0)
                    if HAS_D:
                        y += Dv[None, :] * u
                    if HAS_Z:
                        dz = do * y * sz * (1.0 + zz * (1.0 - sz))
                        tl.store(dz_ptr + gbase + offs_d[None, :] * L + phys[:, None],
                                 dz.to(dz_ptr.dtype.element_ty), mask=m2)
                        if STORE_OUT:  # the forward's output again, y·silu(z)
                            y = y * zz * sz
                    if STORE_OUT:
                        tl.store(outz_ptr + gbase + offs_d[None, :] * L + phys[:, None],
                                 y.to(outz_ptr.dtype.element_ty), mask=m2)
            # adjoint: g_t = C_t·dy_t + a_{t+1}·g_{t+1}, q = a_{t+1}·g_{t+1} entering at the last
            # slot. Unrolled over the TF in-thread slots: the slot selects are compile-time
            # constants per register, so this is plain register code (Triton's reverse
            # associative_scan costs warp shuffles here, and a shifted decay would cost an exp).
            bg = Ct[:, :, None] * dy[None, :, :]
            g = tl.zeros_like(a)
            for r in tl.static_range(TF):
                sel = (offs_t == TF - 1 - r)[None, :, None]
                g_j = tl.sum(tl.where(sel, bg, _neg_zero()), axis=1, keep_dims=True) + q
                g = tl.where(sel, g_j, g)
                q = tl.sum(tl.where(sel, a, _neg_zero()), axis=1, keep_dims=True) * g_j
            if SUMMARY:
                tot_s += tl.sum(dt, axis=0)
            else:
                # B again rather than kept live across both scans (an L1 hit: every thread of the
                # program reads the same [N, TF] values)
                Bt = tl.load(B_base + bc_off, mask=mnt, other=0.0).to(tl.float32)
                gh = g * (hs - dtu[None, :, :] * Bt[:, :, None])  # g_t·a_t·h_{t-1}
                dA_acc += tl.sum(gh * dt[None, :, :], axis=1, keep_dims=True)
                gB = tl.sum(g * Bt[:, :, None], axis=0)
                ddt = u * gB + tl.sum(gh * A[:, None, :], axis=0)
                du = dt * gB + Dv[None, :] * dy
                if HAS_D:
                    dD_acc += tl.sum(dy * u, axis=0)
                if SOFTPLUS:
                    ddt = tl.where(raw > 20.0, ddt, ddt * _sigmoid(raw))
                ddt = tl.where(m2, ddt, 0.0)
                ddb_acc += tl.sum(ddt, axis=0)
                tl.store(du_ptr + gbase + offs_d[None, :] * L + phys[:, None],
                         du.to(du_ptr.dtype.element_ty), mask=m2)
                tl.store(ddelta_ptr + gbase + offs_d[None, :] * L + phys[:, None],
                         ddt.to(ddelta_ptr.dtype.element_ty), mask=m2)
                # dB/dC: sums over channels into (B, rows, 2, N, L) fp32 — per channel block
                # partials summed on the host (deterministic), or with ATOMIC_BC every block
                # added into row 0 (an L2-resident reduction)
                if LANE_RS:
                    # rows are warps (32 channels); lane l holds (dC if l & 16 else dB)[l & 15]
                    red = _lane_sum_scatter16(g * dtu[None, :, :], hs * dy[None, :, :], offs_n, lane)
                    row = offs_d // 32
                    n_rows = 1 if ATOMIC_BC else n_dblk
                    prow = 0 if ATOMIC_BC else row
                    paddr = ((((b64 * n_rows + prow) * 2 + (lane // 16) % 2) * N + lane % 16) * L)
                    pmask = pm[:, None] & (row < n_dblk)[None, :]
                    if ATOMIC_BC:
                        tl.atomic_add(dBp_ptr + paddr[None, :] + phys[:, None], red, mask=pmask,
                                      sem="relaxed")
                    else:
                        tl.store(dBp_ptr + paddr[None, :] + phys[:, None], red, mask=pmask)
                else:
                    dBc = tl.sum(g * dtu[None, :, :], axis=2)  # [N, TF]
                    dCc = tl.sum(hs * dy[None, :, :], axis=2)
                    tl.store(dBp_ptr + pbase + offs_n[:, None] * L + phys[None, :], dBc, mask=mnt)
                    tl.store(dBp_ptr + pbase + N * L + offs_n[:, None] * L + phys[None, :], dCc,
                             mask=mnt)
    sb = pid0.to(tl.int64) * DI  # (B * n_seg, DI[, N]) partials / summaries
    q = tl.sum(q, axis=1)
    dA_acc = tl.sum(dA_acc, axis=1)
    if SUMMARY:
        tl.store(gsum_ptr + (sb + offs_d[None, :]) * N + offs_n[:, None], q, mask=mnd)
        tl.store(dsum_ptr + sb + offs_d, tot_s, mask=md)
    else:
        # dA/dD/d bias partials: one row of s_p elements per (batch, segment), the three side by
        # side, so that one reduction over the rows sums all three
        pr = pid0.to(tl.int64) * s_p
        tl.store(dAp_ptr + pr + offs_d[None, :] * N + offs_n[:, None], dA_acc, mask=mnd)
        tl.store(dDp_ptr + pr + offs_d, dD_acc, mask=md)
        tl.store(ddbp_ptr + pr + offs_d, ddb_acc, mask=md)
        if seg == 0:
            tl.store(dh0_ptr + nd_off, q, mask=mnd)


# --------------------------------------------------------------------------------------------

_FWD_CONFIGS = [
    triton.Config({"BLOCK_D": 32 * w, "TF": tf}, num_warps=w, num_stages=1)
    for w in (1, 2)
    for tf in (2, 4)
]
_BWD_CONFIGS = [  # TF = 4 spills heavily in the backward (255 registers + 1.5 KB stack)
    triton.Config({"BLOCK_D": 32 * w, "TF": 2}, num_warps=w, num_stages=1)
    for w in (1, 2)
]
_AUTOTUNE_KEY = ["L", "DI", "N", "n_seg", "HAS_Z", "HAS_D", "REVERSE"]

_fwd_kernel_tuned = triton.autotune(configs=_FWD_CONFIGS, key=_AUTOTUNE_KEY,
                                    cache_results=AUTOTUNE_CACHE)(_fwd_kernel)
# dBp_ptr is zeroed before every tuning trial and before the tuned run: with ATOMIC_BC the kernel
# adds into it (without, it only writes, and the zeroing is a wasted memset during tuning only)
_bwd_kernel_tuned = triton.autotune(configs=_BWD_CONFIGS, key=_AUTOTUNE_KEY + ["ATOMIC_BC"],
                                    reset_to_zero=["dBp_ptr"], cache_results=AUTOTUNE_CACHE)(_bwd_kernel)

# The dB/dC partial buffers have one row per channel block; size them for the smallest BLOCK_D
# any config can pick and sum only the rows the chosen config wrote.
_MIN_BLOCK_D_BWD = min(c.kwargs["BLOCK_D"] for c in _BWD_CONFIGS)
_MAX_BLOCK_D_BWD = max(c.kwargs["BLOCK_D"] for c in _BWD_CONFIGS)
_MIN_TF_BWD = min(c.kwargs["TF"] for c in _BWD_CONFIGS)
_DEFAULT_BLOCK_D = 4  # used when interpreting (no autotuning on CPU)
_SEG_MIN_CHUNKS = 2  # module-level so tests can force sequence splits on short inputs
# With 64-position chunks (L > 8,192) segments of at least 8 chunks (512 positions): at
# (2, 512, 16,384) on an H200 that measured forward 0.415 → 0.341 ms and backward 1.579 → 1.482 ms
# of kernel time against 2-chunk segments (fewer, longer segments: less summary and fold-in work
# per position). 131k inputs already get 16-chunk segments; 32-position chunks keep 2 (at
# (4, 512, 1,024) 4 or 8 were slower).
_SEG_MIN_CHUNKS_T64 = 8
_PROGRAMS_PER_SM = 32  # plan target: 1-warp programs per SM (the backward, at 255 registers, fits only 8: ncu, 2026-12-03)


def _env_int(name: str, default: int, choices: tuple[int, ...] | None = None) -> int:
    """A positive-integer plan override from the environment (experiments), with a clear error."""
    raw = env_get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        v = 0
    if choices is not None and v not in choices:
        allowed = ", ".join(map(str, choices[:-1])) + f" or {choices[-1]}"
        raise ValueError(f"{name} must be {allowed}; got {raw!r}")
    if v < 1:
        raise ValueError(f"{name} must be a positive integer; got {raw!r}")
    return v


def _chunk_len(L: int) -> int:
    # The forward saves the state every T positions (N/T fp32 per position and channel). Up to
    # 8k positions T = 32 allows twice the sequence split (short inputs need it to fill the GPU);
    # below 32, the smallest power of two (≥ 16) that covers L.
    forced = _env_int("STRANDWISE_SCAN_CHUNK", 0, choices=(16, 32, 64))  # plan sweeps only
    if forced:
        return forced
    if L > 8192:
        return 64
    return 32 if L >= 32 else max(16, next_pow2(L))


_SMS: dict = {}


def _num_sms(device) -> int:
    if device.type != "cuda":
        return 8
    idx = device.index if device.index is not None else torch.cuda.current_device()
    n = _SMS.get(idx)
    if n is None:  # cached: the property lookup costs more host time than a small scan's kernels
        n = _SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return n




def _plan_segments(batch: int, di: int, n_chunks: int, device, T: int) -> tuple[int, int]:
    """(n_seg, chunks per segment): split L only when batch × channel blocks cannot fill the GPU.

    Each segment keeps at least ``_SEG_MIN_CHUNKS`` chunks (``_SEG_MIN_CHUNKS_T64`` with
    64-position chunks) so the summary pass stays a small fraction of the work.
    """
    programs = batch * cdiv(di, 32)
    per_sm = _env_int("STRANDWISE_SCAN_PROGRAMS_PER_SM", _PROGRAMS_PER_SM)
    default = _SEG_MIN_CHUNKS if T < 64 else max(_SEG_MIN_CHUNKS, _SEG_MIN_CHUNKS_T64)
    min_chunks = _env_int("STRANDWISE_SCAN_SEG_MIN_CHUNKS", default)
    target = per_sm * _num_sms(device)
    n_seg = 1
    if programs < target:
        n_seg = min(cdiv(target, programs), max(1, n_chunks // min_chunks))
    seg_chunks = cdiv(n_chunks, n_seg)
    n_seg = cdiv(n_chunks, seg_chunks)
    return n_seg, seg_chunks


def _np(N: int) -> int:
    return max(2, next_pow2(N))


_PLANS: dict = {}
_PLAN_ENV = ("STRANDWISE_SCAN_CHUNK", "STRANDWISE_SCAN_PROGRAMS_PER_SM", "STRANDWISE_SCAN_SEG_MIN_CHUNKS")


def _plan(batch: int, di: int, L: int, device) -> tuple[int, int, int, int]:
    """``(T, n_chunks, n_seg, seg_chunks)`` for a call, computed once per shape, device and plan
    override (a small scan's host time is its wall time: the uncached plan read three environment
    variables and the device's SM count on every call)."""
    key = (batch, di, L, device, _SEG_MIN_CHUNKS, _SEG_MIN_CHUNKS_T64, *map(env_get, _PLAN_ENV))
    plan = _PLANS.get(key)
    if plan is None:
        T = _chunk_len(L)
        n_chunks = cdiv(L, T)
        plan = (T, n_chunks, *_plan_segments(batch, di, n_chunks, device, T))
        if len(_PLANS) > 1024:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


# --------------------------------------------------------------------------------------------
# host wrappers
# --------------------------------------------------------------------------------------------


def _lastdim_contig(x):
    return x if x.stride(-1) == 1 else x.contiguous()


def _f32(x):
    # B and C (batch, N, L) are small next to u/Δ/z: one fp32 copy saves every thread unpacking
    # the same broadcast bf16/fp16 [N, TF] tiles in every pass. Small inputs skip it: there the
    # extra launch costs more than it saves.
    return x if (x.dtype == torch.float32 or x.numel() < (1 << 19)) else x.float()


def selective_scan_triton_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse,
                              initial_state, return_last_state, store_states=True):
    """Launch the forward; returns ``(out, last_state or None, states, plan)``.

    ``store_states=False`` (a forward no backward will follow: inference) neither allocates nor
    writes the chunk-start states the backward needs (``states`` is then ``None``): at
    (4, 512, 1,024) they are 4 MiB of fp32 writes beside 16 MiB of bf16 inputs and output.
    """
    batch, di, L = u.shape
    N = A.shape[1]
    B, C = _f32(B), _f32(C)
    dev = u.device
    T, n_chunks, n_seg, seg_chunks = _plan(batch, di, L, dev)
    NP = _np(N)
    f32 = torch.float32
    su, sd, sz, sB, sC = u.stride(), delta.stride(), (z if z is not None else u).stride(), B.stride(), C.stride()
    out = torch.empty((batch, di, L), device=dev, dtype=u.dtype)
    states = torch.empty((batch, di, n_chunks, N), device=dev, dtype=f32) if store_states else None
    last = torch.empty((batch, di, N), device=dev, dtype=f32) if return_last_state else A
    zz = z if z is not None else u
    Dv = D if D is not None else A
    db = delta_bias if delta_bias is not None else A
    h0 = initial_state if initial_state is not None else A
    if n_seg > 1:
        hsum = torch.empty((batch, n_seg, di, N), device=dev, dtype=f32)
        dsum = torch.empty((batch, n_seg, di), device=dev, dtype=f32)
        sbd = _DEFAULT_BLOCK_D if _interpreting() else 32
        grid = (batch * n_seg, cdiv(di, sbd))
        DIRECT.run(_fwd_summary_kernel, grid, (u, delta, A, B, db, hsum, dsum),
                (L, di, N, n_seg, seg_chunks, n_chunks, su[0], su[1], sd[0], sd[1], sB[0], sB[1]),
                dict(HAS_DBIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                     REVERSE=bool(reverse), BLOCK_D=sbd, NP=NP, T=T, TF=4, num_warps=1),
                (u.dtype, delta.dtype, B.dtype))
    else:
        hsum = dsum = A
    tens = (u, delta, A, B, C, Dv, zz, db, h0, hsum, dsum, out, A if states is None else states, last)
    ints = (L, di, N, n_seg, seg_chunks, n_chunks, su[0], su[1], sd[0], sd[1], sz[0], sz[1],
            sB[0], sB[1], sC[0], sC[1])
    dts = (u.dtype, delta.dtype, zz.dtype, B.dtype, C.dtype)
    flags = dict(
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DBIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), HAS_H0=initial_state is not None, REVERSE=bool(reverse),
        STORE_LAST=bool(return_last_state), STORE_STATES=states is not None, NP=NP, T=T,
    )
    if not _autotuning():
        bd = _DEFAULT_BLOCK_D if _interpreting() else 32
        grid = (batch * n_seg, cdiv(di, bd))
        DIRECT.run(_fwd_kernel, grid, tens, ints, dict(flags, BLOCK_D=bd, TF=4, num_warps=1), dts)
    else:
        grid = lambda meta: (batch * n_seg, cdiv(di, meta["BLOCK_D"]))  # noqa: E731
        DIRECT.run(_fwd_kernel_tuned, grid, tens, ints, flags, dts)
    plan = (T, n_chunks, n_seg, seg_chunks)
    return out, (last if return_last_state else None), states, plan


def selective_scan_triton_bwd(dout, dlast, u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              reverse, states, plan, return_out=False):
    """Launch the backward; returns ``(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dh0)``.

    ``return_out=True`` appends the forward's output ``out`` (recomputed by the backward pass as it
    goes, one extra store): the fused Mamba inner function saves it this way instead of keeping it.
    """
    batch, di, L = u.shape
    N = A.shape[1]
    T, n_chunks, n_seg, seg_chunks = plan
    NP = _np(N)
    dB_dtype, dC_dtype = B.dtype, C.dtype
    B, C = _f32(B), _f32(C)
    dev = u.device
    f32 = torch.float32
    dout = _lastdim_contig(dout)
    zz = z if z is not None else u
    Dv = D if D is not None else A
    db = delta_bias if delta_bias is not None else A
    dl = dlast.contiguous() if dlast is not None else A
    du = torch.empty((batch, di, L), device=dev, dtype=u.dtype)
    ddelta = torch.empty((batch, di, L), device=dev, dtype=delta.dtype)
    dz = torch.empty((batch, di, L), device=dev, dtype=z.dtype) if z is not None else du
    outz = torch.empty((batch, di, L), device=dev, dtype=u.dtype) if return_out else du
    interp = _interpreting()
    block_d = _DEFAULT_BLOCK_D if interp else (_MIN_BLOCK_D_BWD if _autotuning() else 32)
    n_dblk_max = cdiv(di, block_d)
    # per-program scratch for the sub-chunk start states: sized for the widest channel block
    # and the most sub-chunks any config can use
    bd_max = _DEFAULT_BLOCK_D if interp else _MAX_BLOCK_D_BWD
    scratch = torch.empty((batch * n_seg * cdiv(di, bd_max) * bd_max * (T // _MIN_TF_BWD) * NP,),
                          device=dev, dtype=f32)
    # lane reduce-scatter for the dB/dC channel sums: compiled code, N = 16 (d_state of Mamba)
    lane_rs = not interp and N == 16 and env_flag("STRANDWISE_SCAN_LANE_RS", True)
    if lane_rs:
        n_dblk_max = cdiv(di, 32)
    # dB/dC: with the lane reduce-scatter, fp32 atomic adds of the channel blocks' sums into one
    # (B, 2, N, L) buffer, unless torch.use_deterministic_algorithms is on (then per-block partials
    # summed here in a fixed order: bit-reproducible, one more pass over n_dblk × that buffer)
    atomic_bc = lane_rs and not torch.are_deterministic_algorithms_enabled()
    if atomic_bc:
        dBCp = torch.zeros((batch, 1, 2, N, L), device=dev, dtype=f32)
    else:
        dBCp = torch.empty((batch, n_dblk_max, 2, N, L), device=dev, dtype=f32)
    # per (batch, segment) row: [dA (di·N) | dD (di) | d bias (di)] partials, one sum for all
    s_p = di * N + 2 * di
    par = torch.empty((batch * n_seg, s_p), device=dev, dtype=f32)
    dAp, dDp, ddbp = par, par[:, di * N:], par[:, di * N + di:]
    dh0 = torch.empty((batch, di, N), device=dev, dtype=f32)
    if n_seg > 1:
        gsum = torch.empty((batch, n_seg, di, N), device=dev, dtype=f32)
        dsum = torch.empty((batch, n_seg, di), device=dev, dtype=f32)
    else:
        gsum = dsum = A

    tens = (u, delta, A, B, C, Dv, zz, db, dout, states, dl, gsum, dsum, scratch,
            du, ddelta, dz, dBCp, dBCp, dAp, dDp, ddbp, dh0, outz)
    su, sd, sz, sB, sC, so = (t.stride() for t in (u, delta, zz, B, C, dout))
    ints = (L, di, N, n_seg, seg_chunks, n_chunks, n_dblk_max, su[0], su[1], sd[0], sd[1],
            sz[0], sz[1], sB[0], sB[1], sC[0], sC[1], so[0], so[1], s_p)
    dts = (u.dtype, delta.dtype, zz.dtype, B.dtype, C.dtype, dout.dtype, dl.dtype)

    flags = dict(
        HAS_D=D is not None, HAS_Z=z is not None, HAS_DBIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), HAS_DLAST=dlast is not None, REVERSE=bool(reverse),
        LANE_RS=lane_rs, STORE_OUT=bool(return_out), ATOMIC_BC=atomic_bc, NP=NP, T=T,
    )
    if n_seg > 1:  # adjoint summaries of every segment (a_start·g_start from zero, ΣΔ)
        grid = (batch * n_seg, cdiv(di, block_d))
        DIRECT.run(_bwd_kernel, grid, tens, ints,
                dict(flags, SUMMARY=True, BLOCK_D=block_d, TF=4, num_warps=1), dts)
    if not _autotuning():
        grid = (batch * n_seg, cdiv(di, block_d))
        DIRECT.run(_bwd_kernel, grid, tens, ints,
                dict(flags, SUMMARY=False, BLOCK_D=block_d, TF=_MIN_TF_BWD, num_warps=1), dts)
        used_bd = block_d
    else:
        grid = lambda meta: (batch * n_seg, cdiv(di, meta["BLOCK_D"]))  # noqa: E731
        used_bd = DIRECT.run(_bwd_kernel_tuned, grid, tens, ints, dict(flags, SUMMARY=False),
                          dts)["BLOCK_D"]
    if atomic_bc:
        dBC = dBCp[:, 0]
    else:
        n_used = n_dblk_max if lane_rs else cdiv(di, used_bd)  # rows the kernel wrote
        dBC = dBCp[:, :n_used].sum(dim=1)
    if dB_dtype == dC_dtype:  # one cast for both (autograd takes the views as they are)
        dBC = dBC.to(dB_dtype)
        dB, dC = dBC[:, 0], dBC[:, 1]
    else:
        dB, dC = dBC[:, 0].to(dB_dtype), dBC[:, 1].to(dC_dtype)
    psum = par[0] if par.shape[0] == 1 else par.sum(dim=0)
    dA = psum[:di * N].view(di, N)
    dD = psum[di * N:di * N + di] if D is not None else None
    ddb = psum[di * N + di:] if delta_bias is not None else None
    grads = (du, ddelta, dA, dB, dC, dD, (dz if z is not None else None), ddb, dh0)
    return grads + (outz,) if return_out else grads


# --------------------------------------------------------------------------------------------
# autograd + public entry point
# --------------------------------------------------------------------------------------------


class SelectiveScanTritonFunc(torch.autograd.Function):
    """``apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, reverse,
    initial_state)``: Triton forward and backward; saves the inputs and the chunk-start states
    ``(B, d_inner, cdiv(L, 64), N)`` fp32, never per-step states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                reverse, initial_state):
        out, last, states, plan = selective_scan_triton_fwd(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, initial_state,
            return_last_state, store_states=any(ctx.needs_input_grad))
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.flags = (bool(delta_softplus), bool(reverse), plan)
        ctx.has_h0 = initial_state is not None
        ctx.return_last_state = return_last_state
        if return_last_state:
            return out, last
        return out

    @staticmethod
    @once_differentiable  # Triton kernels: a second derivative raises instead of coming out wrong
    def backward(ctx, dout, *rest):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        softplus, reverse, plan = ctx.flags
        dlast = rest[0] if (ctx.return_last_state and rest) else None
        du, ddelta, dA, dB, dC, dD, dz, ddb, dh0 = selective_scan_triton_bwd(
            dout, dlast, u, delta, A, B, C, D, z, delta_bias, softplus, reverse, states, plan)
        return (du, ddelta, dA, dB, dC, dD, dz, ddb, None, None, None,
                dh0 if ctx.has_h0 else None)


def _check(name, t, shape, dtypes):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"selective_scan_triton: {name} must be a tensor; got {type(t).__name__}")
    if t.shape != shape:
        raise ValueError(f"selective_scan_triton: {name} must have shape {tuple(shape)}; "
                         f"got {tuple(t.shape)}")
    if t.dtype not in dtypes:
        raise TypeError(f"selective_scan_triton: {name} must have dtype in "
                        f"{[str(d) for d in dtypes]}; got {t.dtype}")


_ACT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                          delta_softplus=False, return_last_state=False, reverse=False,
                          initial_state=None):
    """Mamba-1 selective scan on CUDA through Triton (forward and backward).

    Parameters
    ----------
    u, delta : torch.Tensor, shape (batch, d_inner, L), fp32/bf16/fp16
        Input and raw step sizes; ``delta`` may have its own floating dtype.
    A : torch.Tensor, shape (d_inner, N), fp32
    B, C : torch.Tensor, shape (batch, N, L), dtype of ``u``
    D : torch.Tensor, shape (d_inner,), fp32, optional
        Skip connection ``D·u``.
    z : torch.Tensor, shape (batch, d_inner, L), optional
        Gate: the output is multiplied by ``silu(z)``.
    delta_bias : torch.Tensor, shape (d_inner,), fp32, optional
    delta_softplus : bool
        Apply softplus (threshold 20) to ``delta + delta_bias``.
    return_last_state : bool
        Also return the state after the last scanned position.
    reverse : bool
        Scan from position L-1 down to 0 (no flipped copies are made).
    initial_state : torch.Tensor, shape (batch, d_inner, N), fp32, optional

    Returns
    -------
    out : torch.Tensor, shape (batch, d_inner, L), dtype of ``u``
    last_state : torch.Tensor, shape (batch, d_inner, N), fp32 (only if ``return_last_state``)
    """
    if not isinstance(u, torch.Tensor) or u.ndim != 3:
        raise ValueError("selective_scan_triton: u must have shape (batch, d_inner, L); got "
                         f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
    batch, di, L = u.shape
    if L < 1 or di < 1 or batch < 1:
        raise ValueError(f"selective_scan_triton: empty input of shape {tuple(u.shape)}")
    if u.dtype not in _ACT_DTYPES:
        raise TypeError(f"selective_scan_triton: u must be fp32/bf16/fp16; got {u.dtype}")
    if A.ndim != 2 or A.shape[0] != di:
        raise ValueError(f"selective_scan_triton: A must have shape (d_inner={di}, N); "
                         f"got {tuple(A.shape)}")
    N = A.shape[1]
    _check("delta", delta, (batch, di, L), _ACT_DTYPES)
    _check("A", A, (di, N), (torch.float32,))
    _check("B", B, (batch, N, L), _ACT_DTYPES)
    _check("C", C, (batch, N, L), _ACT_DTYPES)
    if D is not None:
        _check("D", D, (di,), (torch.float32,))
    if z is not None:
        _check("z", z, (batch, di, L), _ACT_DTYPES)
    if delta_bias is not None:
        _check("delta_bias", delta_bias, (di,), (torch.float32,))
    if initial_state is not None:
        _check("initial_state", initial_state, (batch, di, N), (torch.float32,))
    tensors = [t for t in (u, delta, A, B, C, D, z, delta_bias, initial_state) if t is not None]
    if not _interpreting() and not all(t.is_cuda for t in tensors):
        raise ValueError("selective_scan_triton: all tensors must be CUDA tensors")
    if any(t.device != u.device for t in tensors):
        raise ValueError("selective_scan_triton: all tensors must be on one device")
    u, delta, B, C = (_lastdim_contig(t) for t in (u, delta, B, C))
    z = _lastdim_contig(z) if z is not None else None
    A = A.contiguous()
    D = D.contiguous() if D is not None else None
    delta_bias = delta_bias.contiguous() if delta_bias is not None else None
    initial_state = initial_state.contiguous() if initial_state is not None else None
    if not autograd_records(*tensors):
        # no backward can follow (inference): no autograd node, no saved chunk states
        out, last, _, _ = selective_scan_triton_fwd(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, initial_state,
            return_last_state, store_states=False)
        return (out, last) if return_last_state else out
    return SelectiveScanTritonFunc.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                         bool(return_last_state), bool(reverse), initial_state)
