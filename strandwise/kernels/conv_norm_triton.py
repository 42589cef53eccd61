"""Triton kernels of the fused dilated depthwise conv + per-example norm (spec ``cherimoya.md`` §2).

Entry points (called by :class:`strandwise.kernels.conv_norm.FusedDilatedConvNormFunc`):

* :func:`conv_norm_fwd` ``(x, w, dilation, eps) -> (out, mean (N,) fp32, rstd (N,) fp32)``
* :func:`conv_norm_bwd` ``(g, x, w, mean, rstd, dilation) -> (dx in x.dtype, dw in w.dtype)``

Both are also registered as PyTorch custom ops (``strandwise::conv_norm_fwd`` /
``strandwise::conv_norm_bwd``) so that ``torch.compile`` treats them as opaque calls instead of
tracing into the Triton launcher.

Plan
----
Every kernel works on a tile of ``BLOCK_L`` positions × ``BLOCK_C`` channels of one example; the
grid is ``(N, ceil(L / BLOCK_L), ceil(C / BLOCK_C))`` with ``BLOCK_C = min(next_pow2(C), 256)``
(wider channel counts are split over the third grid axis, which is the same thing as a C-chunk
loop but keeps each program's register footprint bounded). The statistics pass flattens the first
two axes with the row tile varying fastest from dilation 64 on (:func:`stats_rows_first`), so
that its taps at ±D rows stay in L2. The conv is always recomputed from
``x`` (three taps, all in fp32); nothing of shape ``(N, L, C)`` is ever written except the result.

Forward (3 launches):
  1. ``_fwd_stats``: per tile, ``Σy`` and the tile-centred ``Σ(y − ȳ_tile)²`` and the element count,
     into per-tile partial buffers (no atomics: deterministic run to run).
  2. ``_fwd_finalize`` (grid ``N``): combines the partials with Chan's parallel-variance formula
     (numerically better than ``E[y²] − μ²``) into ``mean``, ``rstd``.
  3. ``_fwd_norm``: recompute the conv, write ``(y − μ)·r`` in the input dtype.

Backward (2 launches + one deterministic ``torch.sum``; 1 + sum when the caller passes ``S1``,
``S2``), the single-pass "recompute δ" plan of spec §2.5 — no ``(N, L, C)`` scratch:
  1. ``_bwd_stats``: per-tile partials of ``S1 = Σg`` and ``S2 = Σ g·x̂``; summed by ``torch``.
  2. ``_bwd_comb``: each tile row walks ``p, p + D, p + 2D, …`` for ``K`` steps, carrying ``x`` at
     ``p − D, p, p + D`` and ``δ`` at ``p − D, p`` in registers, so a step loads one ``x`` row and
     one ``g`` row and computes one ``δ``; writes ``dx`` and per-program ``dw`` partials.
  3. ``dw = partials.sum((0, 1))`` in ``torch`` (fixed order ⇒ deterministic).
The per-tile main kernel it replaced (``_bwd_main``: every tile recomputes ``δ`` at its three
taps from ``x`` at five shifted rows) is :func:`conv_norm_bwd_tile`, kept for benchmarking.
The alternative scratch plan (upstream's) is :func:`conv_norm_bwd_scratch`, kept for benchmarking.

Autotuning
----------
``num_warps ∈ {4, 8, 16}`` × ``BLOCK_L ∈ {32, 64, 128, 256}``, launch options on the
:class:`triton.Config` (never in its kwargs), pruned to tiles of 2K–32K elements. ``num_stages`` is
not searched for these kernels: they contain no loop for the software pipeliner to act on, so
different stage counts compile to the same code — listing them would only create indistinguishable
configs. No kernel reads a buffer it writes, so every autotune trial is idempotent and the first
call returns the same result as later ones (upstream's first backward per shape was wrong because a
trial overwrote scratch the next trial read). Key: ``(C, L)`` plus the tensors' dtypes.

:func:`set_autotune` switches to a single heuristic config per kernel (used by tests that sweep
many shapes, where compiling every config would dominate the run time).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import triton
import triton.language as tl

from strandwise.kernels._host import AUTOTUNE_CACHE, DIRECT, cdiv, env_flag, env_int, next_pow2

__all__ = [
    "conv_norm_fwd",
    "conv_norm_bwd",
    "conv_norm_bwd_scratch",
    "conv_norm_bwd_tile",
    "conv_norm_stats",
    "stats_rows_first",
    "STATS_ROWS_FIRST_MIN_D",
    "set_autotune",
    "autotune_enabled",
    "conv_norm_configs",
    "MAX_BLOCK_C",
]

#: Channel tile cap; wider C is split over the third grid axis.
MAX_BLOCK_C = 256
_BLOCK_LS = (32, 64, 128, 256)
_WARPS = (4, 8, 16)
_STATE = {"autotune": True}

#: The statistics pass's grid order (:func:`_fwd_stats_kernel`): with the row tile varying fastest
#: from this dilation on, with the example varying fastest below it. Measured on an H100
#: (BENCHMARKS.md, Cherimoya round 16; ``benchmarks/probe_stats_grid.py``): with the example
#: fastest, the programs resident together hold the same rows of different examples and the taps
#: at ±D rows come back from DRAM once D reaches ~64 rows (bf16, N=512, L=1024, C=128: 0.074 ms at
#: D ≤ 16, 0.083 at 64, 0.130 at 128; row tile fastest: 0.075-0.076 throughout), while below it
#: the example-fastest order is up to 16 % faster (fp32, D = 16).
STATS_ROWS_FIRST_MIN_D = 64

#: ``STRANDWISE_STATS_ROWS_FIRST`` (read at import): unset = by dilation (above); ``1`` / ``0``
#: forces the row-tile-fastest / example-fastest order for every dilation (A/B timing).
_STATS = {"rows_first": env_flag("STRANDWISE_STATS_ROWS_FIRST", None)}


#: Row tiles per statistics program (``STRANDWISE_STATS_LOOP``, read at import). 0 (default): one
#: tile a program (:func:`_fwd_stats_kernel`). k > 0: :func:`_fwd_stats_loop_kernel`, each program
#: walks k consecutive row tiles of one example, so the ±D taps of a tile that the program itself
#: read for an earlier tile can come from its L1 instead of L2, and the tile's partial is folded
#: into the program's running one (one partial per program). Experimental: not yet timed (the
#: statistics pass was 18 % of the whole model's bf16 inference on an H100 at 61 % of DRAM
#: bandwidth, BENCHMARKS.md Cherimoya round 19; three tap reads per element from L2 is the
#: suspect).
_STATS["loop"] = env_int("STRANDWISE_STATS_LOOP", 0, 0, 64)


def stats_rows_first(dilation: int) -> bool:
    """Whether the statistics pass runs with the row tile varying fastest at this dilation."""
    forced = _STATS["rows_first"]
    return int(dilation) >= STATS_ROWS_FIRST_MIN_D if forced is None else bool(forced)


def set_autotune(enabled: bool) -> None:
    """Turn autotuning on (default) or off (one heuristic config per kernel, no benchmarking)."""
    _STATE["autotune"] = bool(enabled)


def autotune_enabled() -> bool:
    return _STATE["autotune"]


def _bench(fn, quantiles):
    # Short warm-up/repeat: these kernels run in microseconds and a per-shape tuning of ~10
    # configs must stay well under a second (excluding compilation).
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


def conv_norm_configs():
    """The full search space (list of ``triton.Config``) before pruning."""
    return [
        triton.Config({"BLOCK_L": bl}, num_warps=nw, num_stages=1)
        for bl in _BLOCK_LS
        for nw in _WARPS
    ]


def _prune(configs, named_args, **kwargs):
    block_c = kwargs.get("BLOCK_C", named_args.get("BLOCK_C"))
    L = named_args["L"]
    keep = []
    for cfg in configs:
        bl = cfg.kwargs["BLOCK_L"]
        tile = bl * block_c
        per_thread = tile // (32 * cfg.num_warps)
        if tile > 32768 or tile < 2048 and bl != _BLOCK_LS[0]:
            continue
        if per_thread < 4 or per_thread > 64:
            continue
        if bl > 32 and bl // 2 >= L:  # a tile twice as long as the sequence only wastes lanes
            continue
        keep.append(cfg)
    if not keep:  # tiny tiles (C = 1..8): keep the smallest config
        keep = [min(configs, key=lambda c: (c.kwargs["BLOCK_L"], c.num_warps))]
    return keep


def _heuristic(L: int, block_c: int):
    bl = max(32, min(256, 8192 // block_c))
    while bl > 32 and bl // 2 >= L:
        bl //= 2
    nw = 4 if bl * block_c <= 8192 else 8
    return {"BLOCK_L": bl}, nw


def _block_c(C: int) -> int:
    return min(next_pow2(C), MAX_BLOCK_C)


def _tuned(fn, extra_key=()):
    """Wrap a jitted kernel: (autotuned launcher, plain launcher). ``extra_key``: constexprs
    that change the kernel enough to need their own tuning (Triton's key sees only the names
    listed here)."""
    tuned = triton.autotune(
        configs=conv_norm_configs(),
        key=["C", "L", *extra_key],
        prune_configs_by={"early_config_prune": _prune},
        do_bench=_bench,
        cache_results=AUTOTUNE_CACHE,
    )(fn)
    return tuned, fn


# --------------------------------------------------------------------------------------------
# shared device helpers


@triton.jit
def _load_taps(w_ptr, cols, cmask, C):
    w0 = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    w1 = tl.load(w_ptr + C + cols, mask=cmask, other=0.0).to(tl.float32)
    w2 = tl.load(w_ptr + 2 * C + cols, mask=cmask, other=0.0).to(tl.float32)
    return w0, w1, w2


@triton.jit
def _load_rows(xb, rows, cols, cmask, L, C):
    """x[rows, cols] as fp32, zero outside [0, L) (the conv's zero padding)."""
    m = ((rows >= 0) & (rows < L))[:, None] & cmask[None, :]
    ptrs = xb + rows[:, None].to(tl.int64) * C + cols[None, :]
    return tl.load(ptrs, mask=m, other=0.0).to(tl.float32)


@triton.jit
def _conv3(xm, xc, xp, w0, w1, w2):
    return w0[None, :] * xm + w1[None, :] * xc + w2[None, :] * xp


# --------------------------------------------------------------------------------------------
# forward


@triton.jit
def _stats_pids(L, ROWS: tl.constexpr, ROWS_FIRST: tl.constexpr):
    """(example n (int64), row tile, channel tile, batch size as int64) of a statistics program
    (``ROWS`` rows per program; grid order: see :func:`_fwd_stats_kernel`)."""
    if ROWS_FIRST:
        nlt = tl.cdiv(L, ROWS)
        pid = tl.program_id(0)
        n = pid // nlt
        return (n.to(tl.int64), pid - n * nlt, tl.program_id(1),
                (tl.num_programs(0) // nlt).to(tl.int64))
    else:
        return (tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2),
                tl.num_programs(0).to(tl.int64))


@triton.jit
def _tile_partial(xb, lt, ct, cols, cmask, L, C, D, w0, w1, w2,
                  BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr):
    """(sum, centred M2, count) of the conv output over row tile ``lt`` of one example (``xb``)
    and channel tile ``ct`` (``cols``)."""
    rows = lt * BLOCK_L + tl.arange(0, BLOCK_L)
    y = _conv3(
        _load_rows(xb, rows - D, cols, cmask, L, C),
        _load_rows(xb, rows, cols, cmask, L, C),
        _load_rows(xb, rows + D, cols, cmask, L, C),
        w0, w1, w2,
    )
    valid = (rows < L)[:, None] & cmask[None, :]
    y = tl.where(valid, y, 0.0)
    ncols = tl.minimum(C - ct * BLOCK_C, BLOCK_C)
    cnt = (tl.minimum(L - lt * BLOCK_L, BLOCK_L) * ncols).to(tl.float32)
    s = tl.sum(tl.sum(y, axis=1), axis=0)
    dev = tl.where(valid, y - s / cnt, 0.0)
    m2 = tl.sum(tl.sum(dev * dev, axis=1), axis=0)
    return s, m2, cnt


@triton.jit
def _fwd_stats_kernel(
    x_ptr, w_ptr, part_ptr, L, C, D, TMAX, NCT,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, ROWS_FIRST: tl.constexpr = 0,
):
    # ROWS_FIRST: grid (N·row tiles, channel tiles), the row tile varying fastest, so that the
    # programs resident together read neighbouring rows of one example and the taps at ±D rows
    # are L2 hits; else grid (N, row tiles, channel tiles), the example varying fastest
    n, lt, ct, NB = _stats_pids(L, BLOCK_L, ROWS_FIRST)
    cols = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    s, m2, cnt = _tile_partial(xb, lt, ct, cols, cmask, L, C, D, w0, w1, w2, BLOCK_L, BLOCK_C)
    slot = n * TMAX + lt * NCT + ct
    NT = NB * TMAX
    tl.store(part_ptr + slot, s)
    tl.store(part_ptr + NT + slot, m2)
    tl.store(part_ptr + 2 * NT + slot, cnt)


@triton.jit
def _fwd_stats_loop_kernel(
    x_ptr, w_ptr, part_ptr, L, C, D, TMAX, NCT,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, TILES: tl.constexpr,
):
    # grid (N · groups, channel tiles): a group is TILES consecutive row tiles of one example, the
    # groups of an example varying fastest. Each tile's (sum, centred M2, count) as in
    # _fwd_stats_kernel, folded into the program's running partial by Chan's combination.
    nlt = tl.cdiv(L, BLOCK_L)
    ngr = tl.cdiv(nlt, TILES)
    pid = tl.program_id(0)
    n = pid // ngr
    gr = pid - n * ngr
    ct = tl.program_id(1)
    NB = (tl.num_programs(0) // ngr).to(tl.int64)
    n = n.to(tl.int64)
    cols = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    lt0 = gr * TILES
    run_s = 0.0
    run_m2 = 0.0
    run_c = 0.0
    for i in range(0, tl.minimum(TILES, nlt - lt0)):
        s, m2, cnt = _tile_partial(xb, lt0 + i, ct, cols, cmask, L, C, D, w0, w1, w2,
                                   BLOCK_L, BLOCK_C)
        delta = s / cnt - run_s / tl.maximum(run_c, 1.0)
        run_m2 += m2 + delta * delta * (run_c * cnt / (run_c + cnt))
        run_s += s
        run_c += cnt
    slot = n * TMAX + gr * NCT + ct
    NT = NB * TMAX
    tl.store(part_ptr + slot, run_s)
    tl.store(part_ptr + NT + slot, run_m2)
    tl.store(part_ptr + 2 * NT + slot, run_c)


@triton.jit
def _fwd_finalize_kernel(part_ptr, mean_ptr, rstd_ptr, NT, TMAX, T, M, eps, CHUNK: tl.constexpr):
    """Chan's combination of per-tile (sum, centred M2, count) into (mean, 1/sqrt(var + eps))."""
    n = tl.program_id(0).to(tl.int64)
    base = part_ptr + n * TMAX
    acc = tl.zeros([CHUNK], dtype=tl.float32)
    for t0 in range(0, T, CHUNK):
        idx = t0 + tl.arange(0, CHUNK)
        acc += tl.load(base + idx, mask=idx < T, other=0.0)
    mean = tl.sum(acc, axis=0) / M
    m2 = tl.zeros([CHUNK], dtype=tl.float32)
    for t0 in range(0, T, CHUNK):
        idx = t0 + tl.arange(0, CHUNK)
        msk = idx < T
        s = tl.load(base + idx, mask=msk, other=0.0)
        q = tl.load(base + NT + idx, mask=msk, other=0.0)
        c = tl.load(base + 2 * NT + idx, mask=msk, other=1.0)
        dm = s / c - mean
        m2 += tl.where(msk, q + c * dm * dm, 0.0)
    var = tl.maximum(tl.sum(m2, axis=0) / M, 0.0)
    tl.store(mean_ptr + n, mean)
    tl.store(rstd_ptr + n, 1.0 / tl.sqrt(var + eps))


@triton.jit
def _fwd_norm_kernel(
    x_ptr, w_ptr, mean_ptr, rstd_ptr, out_ptr, L, C, D,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    y = _conv3(
        _load_rows(xb, rows - D, cols, cmask, L, C),
        _load_rows(xb, rows, cols, cmask, L, C),
        _load_rows(xb, rows + D, cols, cmask, L, C),
        w0, w1, w2,
    )
    mean = tl.load(mean_ptr + n)
    rstd = tl.load(rstd_ptr + n)
    out = (y - mean) * rstd
    m = (rows < L)[:, None] & cmask[None, :]
    optrs = out_ptr + n * L * C + rows[:, None].to(tl.int64) * C + cols[None, :]
    tl.store(optrs, out.to(out_ptr.dtype.element_ty), mask=m)


_fwd_stats_tuned, _fwd_stats_plain = _tuned(_fwd_stats_kernel, extra_key=("ROWS_FIRST",))
_fwd_stats_loop_tuned, _fwd_stats_loop_plain = _tuned(_fwd_stats_loop_kernel, extra_key=("TILES",))
_fwd_norm_tuned, _fwd_norm_plain = _tuned(_fwd_norm_kernel)


def _launch(tuned, plain, grid_fn, args, L, block_c, **extra):
    """Launch autotuned or with the heuristic config; returns the BLOCK_L used. ``extra``:
    further constexprs of the kernel."""
    if _STATE["autotune"]:
        return DIRECT.call(tuned, grid_fn, args, dict(BLOCK_C=block_c, **extra))["BLOCK_L"]
    meta, nw = _heuristic(L, block_c)
    DIRECT.call(plain, grid_fn, args, dict(BLOCK_C=block_c, num_warps=nw, num_stages=1, **meta, **extra))
    return meta["BLOCK_L"]


def _check(x, w, dilation):
    if x.ndim != 3 or not x.is_contiguous():
        raise ValueError(f"x must be a contiguous (N, L, C) tensor; got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"Triton conv-norm supports fp32/bf16/fp16 inputs; got {x.dtype}")
    if w.shape != (3, x.shape[2]):
        raise ValueError(f"w must have shape (3, {x.shape[2]}); got {tuple(w.shape)}")
    if int(dilation) < 1:
        raise ValueError(f"dilation must be >= 1; got {dilation}")


def conv_norm_stats(x: torch.Tensor, w: torch.Tensor, dilation: int, eps: float):
    """Per-example ``(mean, rstd)`` of the conv output, each ``(N,)`` fp32 (2 launches).

    Shared with the inference megakernel (:mod:`strandwise.kernels.cheri_infer`).
    """
    N, L, C = x.shape
    w = w.contiguous()
    bc = _block_c(C)
    nct = cdiv(C, bc)
    tmax = cdiv(L, _BLOCK_LS[0]) * nct
    part = torch.empty((3, N, tmax), device=x.device, dtype=torch.float32)
    mean = torch.empty((N,), device=x.device, dtype=torch.float32)
    rstd = torch.empty((N,), device=x.device, dtype=torch.float32)

    tiles = int(_STATS["loop"])  # row tiles a program: 0 = one, by _fwd_stats_kernel
    rf = int(stats_rows_first(dilation))

    def grid(meta):
        nlt = cdiv(L, meta["BLOCK_L"])
        if tiles:
            return (N * cdiv(nlt, tiles), nct)
        return (N * nlt, nct) if rf else (N, nlt, nct)

    if tiles:
        kernels, extra = (_fwd_stats_loop_tuned, _fwd_stats_loop_plain), dict(TILES=tiles)
    else:
        kernels, extra = (_fwd_stats_tuned, _fwd_stats_plain), dict(ROWS_FIRST=rf)
    bl = _launch(*kernels, grid, (x, w, part, L, C, int(dilation), tmax, nct), L, bc, **extra)
    t_used = cdiv(cdiv(L, bl), max(tiles, 1)) * nct  # partials written per example
    DIRECT.call(_fwd_finalize_kernel, (N,),
                (part, mean, rstd, N * tmax, tmax, t_used, float(L * C), float(eps)),
                dict(CHUNK=128, num_warps=4))
    return mean, rstd


def _conv_norm_fwd_impl(x, w, dilation, eps):
    _check(x, w, dilation)
    N, L, C = x.shape
    out = torch.empty_like(x)
    if x.numel() == 0:
        z = torch.zeros((N,), device=x.device, dtype=torch.float32)
        return out, z, z.clone()
    w = w.contiguous()
    mean, rstd = conv_norm_stats(x, w, dilation, eps)
    bc = _block_c(C)
    nct = cdiv(C, bc)

    def grid(meta):
        return (N, cdiv(L, meta["BLOCK_L"]), nct)

    _launch(_fwd_norm_tuned, _fwd_norm_plain, grid, (x, w, mean, rstd, out, L, C, int(dilation)), L, bc)
    return out, mean, rstd


# --------------------------------------------------------------------------------------------
# backward


@triton.jit
def _bwd_stats_kernel(
    g_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, part_ptr, L, C, D, TMAX, NCT,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    lt = tl.program_id(1)
    ct = tl.program_id(2)
    rows = lt * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    y = _conv3(
        _load_rows(xb, rows - D, cols, cmask, L, C),
        _load_rows(xb, rows, cols, cmask, L, C),
        _load_rows(xb, rows + D, cols, cmask, L, C),
        w0, w1, w2,
    )
    xhat = (y - tl.load(mean_ptr + n)) * tl.load(rstd_ptr + n)
    g = _load_rows(g_ptr + n * L * C, rows, cols, cmask, L, C)  # zero outside the tile
    s1 = tl.sum(tl.sum(g, axis=1), axis=0)
    s2 = tl.sum(tl.sum(g * xhat, axis=1), axis=0)
    slot = n * TMAX + lt * NCT + ct
    NT = tl.num_programs(0).to(tl.int64) * TMAX
    tl.store(part_ptr + slot, s1)
    tl.store(part_ptr + NT + slot, s2)


@triton.jit
def _delta_coeffs(mean_ptr, rstd_ptr, s_ptr, n, NB, L, C):
    """Example ``n``'s ``(mean, r, r·S1/M, r·S2/M)``: the scalars of ``δ = r·g − b − c·x̂``."""
    mean = tl.load(mean_ptr + n)
    r = tl.load(rstd_ptr + n)
    inv_m = 1.0 / (L * C).to(tl.float32)
    return mean, r, r * inv_m * tl.load(s_ptr + n), r * inv_m * tl.load(s_ptr + NB + n)


@triton.jit
def _delta_at(g_ptr, xm, xc, xp, w0, w1, w2, rows, cols, cmask, L, C, mean, a, b, c):
    """δ = r·g − (r/M)·S1 − (r/M)·S2·x̂ at ``rows``; zero outside [0, L) (δ is only defined there)."""
    xhat = (_conv3(xm, xc, xp, w0, w1, w2) - mean) * a
    g = _load_rows(g_ptr, rows, cols, cmask, L, C)
    valid = ((rows >= 0) & (rows < L))[:, None] & cmask[None, :]
    return tl.where(valid, a * g - b - c * xhat, 0.0)


@triton.jit
def _store_dx(dx_ptr, res_ptr, n, rows, cols, cmask, L, C, d_m, d_0, d_p, w0, w1, w2,
              HAS_RES: tl.constexpr):
    """The transposed conv ``dx[p] = w1·δ[p] + w0·δ[p+d] + w2·δ[p−d]`` (plus the residual's
    gradient when ``HAS_RES``, in fp32 before the one rounding), stored at ``rows`` < L."""
    dx = w1[None, :] * d_0 + w0[None, :] * d_p + w2[None, :] * d_m
    m = (rows < L)[:, None] & cmask[None, :]
    roffs = n * L * C + rows[:, None].to(tl.int64) * C + cols[None, :]
    if HAS_RES:
        dx += tl.load(res_ptr + roffs, mask=m, other=0.0).to(tl.float32)
    tl.store(dx_ptr + roffs, dx.to(dx_ptr.dtype.element_ty), mask=m)


@triton.jit
def _bwd_main_kernel(
    g_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, s_ptr, dx_ptr, dwp_ptr, res_ptr, L, C, D, TLMAX, NB,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, HAS_RES: tl.constexpr = 0,
):
    # HAS_RES: dx += res (the residual branch's gradient of a whole Cheri Block, added in fp32
    # before the one rounding to x's dtype instead of in a separate pass)
    n = tl.program_id(0).to(tl.int64)
    lt = tl.program_id(1)
    ct = tl.program_id(2)
    rows = lt * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    gb = g_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    mean, r, b, c = _delta_coeffs(mean_ptr, rstd_ptr, s_ptr, n, NB, L, C)
    x_m2 = _load_rows(xb, rows - 2 * D, cols, cmask, L, C)
    x_m1 = _load_rows(xb, rows - D, cols, cmask, L, C)
    x_0 = _load_rows(xb, rows, cols, cmask, L, C)
    x_p1 = _load_rows(xb, rows + D, cols, cmask, L, C)
    x_p2 = _load_rows(xb, rows + 2 * D, cols, cmask, L, C)
    d_0 = _delta_at(gb, x_m1, x_0, x_p1, w0, w1, w2, rows, cols, cmask, L, C, mean, r, b, c)
    d_m = _delta_at(gb, x_m2, x_m1, x_0, w0, w1, w2, rows - D, cols, cmask, L, C, mean, r, b, c)
    d_p = _delta_at(gb, x_0, x_p1, x_p2, w0, w1, w2, rows + D, cols, cmask, L, C, mean, r, b, c)
    _store_dx(dx_ptr, res_ptr, n, rows, cols, cmask, L, C, d_m, d_0, d_p, w0, w1, w2, HAS_RES)
    # dw[k] partial over this tile: Σ_i δ[i]·x[i + (k−1)·d]  (δ is already 0 on padded rows)
    pb = dwp_ptr + ((n * TLMAX + lt) * 3) * C + cols
    tl.store(pb, tl.sum(d_0 * x_m1, axis=0), mask=cmask)
    tl.store(pb + C, tl.sum(d_0 * x_0, axis=0), mask=cmask)
    tl.store(pb + 2 * C, tl.sum(d_0 * x_p1, axis=0), mask=cmask)



@triton.jit
def _bwd_comb_kernel(
    g_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, s_ptr, dx_ptr, dwp_ptr, res_ptr, L, C, D, PMAX, NB,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr, K: tl.constexpr, HAS_RES: tl.constexpr = 0,
):
    """The backward's main pass walking each tile row along its own comb ``p, p + D, p + 2D, …``
    for ``K`` steps, so that the taps of one step are the previous step's values: per step it
    loads one new ``x`` row (at ``p + 2D``) and one ``g`` row (at ``p + D``), computes one new
    ``δ`` and keeps ``x`` at ``p − D, p, p + D`` and ``δ`` at ``p − D, p`` in registers. The dw
    products accumulate element-wise and are reduced over rows once per program.

    Tile rows: ``T = min(D, BLOCK_L)`` consecutive offsets of one dilation period times
    ``U = BLOCK_L // T`` sub-strips of ``K`` periods each (lanes past ``U·T`` idle when ``T`` does
    not divide ``BLOCK_L``). Grid axis 0 is ``(period block qb, offset block tb)`` with
    ``cdiv(D, T)`` offset blocks; program ``(qb, tb)`` covers positions
    ``qb·U·K·D + u·K·D + k·D + tb·T + t``: every position exactly once.
    """
    # programs of one example run next to each other (grid axis 0), so the comb halo a program
    # reads is mostly its neighbours' rows, still in L2
    pid = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    ct = tl.program_id(2)
    T = tl.minimum(D, BLOCK_L)
    U = BLOCK_L // T
    NTB = tl.cdiv(D, T)
    qb = pid // NTB
    tb = pid % NTB
    i = tl.arange(0, BLOCK_L)
    u = i // T
    t = tb * T + i % T
    lane_ok = (u < U) & (t < D)
    # idle lanes sit far enough past the end that every load of theirs is masked off
    p = tl.where(lane_ok, qb * (U * K * D) + u * (K * D) + t, L + 2 * D)
    cols = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    gb = g_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    mean, r, b, c = _delta_coeffs(mean_ptr, rstd_ptr, s_ptr, n, NB, L, C)
    x_m1 = _load_rows(xb, p - D, cols, cmask, L, C)
    x_0 = _load_rows(xb, p, cols, cmask, L, C)
    x_p1 = _load_rows(xb, p + D, cols, cmask, L, C)
    d_m = _delta_at(gb, _load_rows(xb, p - 2 * D, cols, cmask, L, C), x_m1, x_0, w0, w1, w2,
                    p - D, cols, cmask, L, C, mean, r, b, c)
    d_0 = _delta_at(gb, x_m1, x_0, x_p1, w0, w1, w2, p, cols, cmask, L, C, mean, r, b, c)
    acc0 = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_L, BLOCK_C], dtype=tl.float32)
    for _ in range(K):
        x_p2 = _load_rows(xb, p + 2 * D, cols, cmask, L, C)
        d_p = _delta_at(gb, x_0, x_p1, x_p2, w0, w1, w2, p + D, cols, cmask, L, C, mean, r, b, c)
        _store_dx(dx_ptr, res_ptr, n, p, cols, cmask, L, C, d_m, d_0, d_p, w0, w1, w2, HAS_RES)
        # dw[k] partial: Σ_p δ[p]·x[p + (k−1)·d]  (δ is 0 outside [0, L))
        acc0 += d_0 * x_m1
        acc1 += d_0 * x_0
        acc2 += d_0 * x_p1
        x_m1, x_0, x_p1 = x_0, x_p1, x_p2
        d_m, d_0 = d_0, d_p
        p += D
    pb = dwp_ptr + ((n * PMAX + pid) * 3) * C + cols
    tl.store(pb, tl.sum(acc0, axis=0), mask=cmask)
    tl.store(pb + C, tl.sum(acc1, axis=0), mask=cmask)
    tl.store(pb + 2 * C, tl.sum(acc2, axis=0), mask=cmask)


_bwd_stats_tuned, _bwd_stats_plain = _tuned(_bwd_stats_kernel)
# The residual variant (HAS_RES=1) tunes on its own: the config best without the extra load can
# be much worse with it (offline sm_90 at C=128: 32-row/8-warp tiles grow from 128 to 146
# registers, halving the programs per SM; on an H100 a shared choice made this kernel 1.8x
# slower, 826 vs 461 us at N=512, L=1024).
_bwd_main_tuned, _bwd_main_plain = _tuned(_bwd_main_kernel, extra_key=("HAS_RES",))

# The comb kernel's search space: rows per tile, comb steps K, warps. Tiles hold 4-16 elements per
# thread (8 fp32 tiles stay live across steps) and every program walks >= 32 positions.
_COMB_BLOCK_LS = (8, 16, 32, 64)
_COMB_KS = (4, 8, 16)
_COMB_WARPS = (4, 8)
_COMB_MIN_ROWS = 32
#: CUDA's limit on grid axis 1 (the comb kernel's example axis)
_MAX_GRID_Y = 65535


def comb_configs():
    """The comb kernel's full search space (list of ``triton.Config``) before pruning."""
    return [
        triton.Config({"BLOCK_L": bl, "K": k}, num_warps=nw, num_stages=1)
        for bl in _COMB_BLOCK_LS for k in _COMB_KS for nw in _COMB_WARPS
        if bl * k >= _COMB_MIN_ROWS
    ]


def _comb_programs(L: int, D: int, bl: int, k: int) -> int:
    """Programs along L of the comb kernel (grid axis 0) for one tile shape."""
    t = min(D, bl)
    return cdiv(L, (bl // t) * k * D) * cdiv(D, t)


@functools.lru_cache(maxsize=1024)
def _comb_pmax(L: int, D: int, block_c: int) -> int:
    """The most programs along L any comb config (or the heuristic's) can use: the dw partial
    buffer's size. Cached: building the config list costs tens of µs per backward call."""
    heur, _ = _comb_heuristic(L, D, block_c)
    shapes = {(c.kwargs["BLOCK_L"], c.kwargs["K"]) for c in comb_configs()}
    shapes.add((heur["BLOCK_L"], heur["K"]))
    return max(_comb_programs(L, D, bl, k) for bl, k in shapes)


def _comb_prune(configs, named_args, **kwargs):
    block_c = kwargs.get("BLOCK_C", named_args.get("BLOCK_C"))
    L, D = named_args["L"], named_args["D"]
    keep = []
    for cfg in configs:
        bl, k = cfg.kwargs["BLOCK_L"], cfg.kwargs["K"]
        per_thread = bl * block_c // (32 * cfg.num_warps)
        if per_thread < 4 or per_thread > 16:
            continue
        t = min(D, bl)
        region = (bl // t) * k * D
        if k > _COMB_KS[0] and region // 2 >= L:  # half the steps would fall past the end
            continue
        keep.append(cfg)
    if not keep:  # tiny C or extreme shapes: the heuristic's choice
        meta, nw = _comb_heuristic(L, D, block_c)
        keep = [triton.Config(meta, num_warps=nw, num_stages=1)]
    return keep


def _comb_heuristic(L: int, D: int, block_c: int):
    bl = max(_COMB_BLOCK_LS[0], min(_COMB_BLOCK_LS[-1], 2048 // block_c))
    k = max(8, _COMB_MIN_ROWS // bl)
    while k > _COMB_KS[0] and ((bl // min(D, bl)) * k * D) // 2 >= L and bl * k > _COMB_MIN_ROWS:
        k //= 2
    nw = max(1, min(8, bl * block_c // (32 * 8)))
    return {"BLOCK_L": bl, "K": k}, nw


_bwd_comb_tuned = triton.autotune(
    configs=comb_configs(),
    key=["C", "L", "D", "HAS_RES"],
    prune_configs_by={"early_config_prune": _comb_prune},
    do_bench=_bench,
    cache_results=AUTOTUNE_CACHE,
)(_bwd_comb_kernel)


def _bwd_sums(g, x, w, mean, rstd, dilation):
    """``(2, N)`` fp32: ``S1 = Σ g`` and ``S2 = Σ g·x̂`` per example (deterministic)."""
    N, L, C = x.shape
    bc = _block_c(C)
    nct = cdiv(C, bc)
    tmax = cdiv(L, _BLOCK_LS[0]) * nct
    part = torch.empty((2, N, tmax), device=x.device, dtype=torch.float32)

    def grid(meta):
        return (N, cdiv(L, meta["BLOCK_L"]), nct)

    bl = _launch(
        _bwd_stats_tuned, _bwd_stats_plain, grid,
        (g, x, w, mean, rstd, part, L, C, int(dilation), tmax, nct), L, bc,
    )
    t_used = cdiv(L, bl) * nct
    return part[:, :, :t_used].sum(dim=2).contiguous()


def _conv_norm_bwd_impl(g, x, w, mean, rstd, dilation, residual=None, plan="comb", sums=None):
    _check(x, w, dilation)
    if g.shape != x.shape:
        raise ValueError(f"grad shape {tuple(g.shape)} != input shape {tuple(x.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual shape {tuple(residual.shape)} != input shape {tuple(x.shape)}")
    N, L, C = x.shape
    g = g.contiguous()
    w = w.contiguous()
    mean = mean.contiguous().float()
    rstd = rstd.contiguous().float()
    dx = torch.empty_like(x)
    if x.numel() == 0:
        return dx, torch.zeros_like(w)
    res = g if residual is None else residual.contiguous()
    has_res = int(residual is not None)
    if sums is None:
        sums = _bwd_sums(g, x, w, mean, rstd, dilation)
    elif sums.shape != (2, N) or sums.dtype != torch.float32:
        raise ValueError(f"sums must be a (2, {N}) fp32 tensor; got {tuple(sums.shape)} {sums.dtype}")
    sums = sums.contiguous()
    bc = _block_c(C)
    nct = cdiv(C, bc)
    d = int(dilation)
    if plan == "tile":  # the per-tile kernel of rounds 1-7, kept to benchmark against
        # dw partials per (example, L-tile); channel chunks of one tile write disjoint columns.
        tlmax = cdiv(L, _BLOCK_LS[0])
        dwp = torch.empty((N, tlmax, 3, C), device=x.device, dtype=torch.float32)

        def grid(meta):
            return (N, cdiv(L, meta["BLOCK_L"]), nct)

        bl = _launch(
            _bwd_main_tuned, _bwd_main_plain, grid,
            (g, x, w, mean, rstd, sums, dx, dwp, res, L, C, d, tlmax, N), L, bc, HAS_RES=has_res,
        )
        return dx, dwp[:, : cdiv(L, bl)].sum(dim=(0, 1)).to(w.dtype)
    if plan != "comb":
        raise ValueError(f"plan must be 'comb' or 'tile'; got {plan!r}")
    # a dilation of L or more reaches only the zero padding, exactly as one of L does: clamping
    # keeps the number of programs (and the dw partial buffer) bounded by L
    d = min(d, L)
    heur, heur_nw = _comb_heuristic(L, d, bc)
    pmax = _comb_pmax(L, d, bc)
    dwp = torch.empty((N, pmax, 3, C), device=x.device, dtype=torch.float32)

    meta = heur
    sflat = sums.view(-1)
    # examples go on grid axis 1 (at most 65,535): larger batches launch in slices of examples
    for n0 in range(0, N, _MAX_GRID_Y):
        n1 = min(N, n0 + _MAX_GRID_Y)

        def comb_grid(meta, nb=n1 - n0):
            return (_comb_programs(L, d, meta["BLOCK_L"], meta["K"]), nb, nct)

        args = (g[n0:n1], x[n0:n1], w, mean[n0:], rstd[n0:], sflat[n0:], dx[n0:n1], dwp[n0:n1],
                res[n0:n1], L, C, d, pmax, N)
        if _STATE["autotune"]:
            meta = DIRECT.call(_bwd_comb_tuned, comb_grid, args, dict(BLOCK_C=bc, HAS_RES=has_res))
        else:
            DIRECT.call(_bwd_comb_kernel, comb_grid, args,
                        dict(BLOCK_C=bc, HAS_RES=has_res, num_warps=heur_nw, num_stages=1, **meta))
    used = _comb_programs(L, d, meta["BLOCK_L"], meta["K"])
    return dx, dwp[:, :used].sum(dim=(0, 1)).to(w.dtype)


# --------------------------------------------------------------------------------------------
# the scratch plan (upstream's structure), kept only to benchmark against the recompute plan


@triton.jit
def _scratch_delta_kernel(
    g_ptr, x_ptr, w_ptr, mean_ptr, rstd_ptr, s_ptr, delta_ptr, dwp_ptr, L, C, D, TLMAX, NB,
    BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    lt = tl.program_id(1)
    ct = tl.program_id(2)
    rows = lt * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = ct * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    xb = x_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    mean, r, b, c = _delta_coeffs(mean_ptr, rstd_ptr, s_ptr, n, NB, L, C)
    x_m1 = _load_rows(xb, rows - D, cols, cmask, L, C)
    x_0 = _load_rows(xb, rows, cols, cmask, L, C)
    x_p1 = _load_rows(xb, rows + D, cols, cmask, L, C)
    d_0 = _delta_at(g_ptr + n * L * C, x_m1, x_0, x_p1, w0, w1, w2, rows, cols, cmask, L, C,
                    mean, r, b, c)
    m = (rows < L)[:, None] & cmask[None, :]
    tl.store(delta_ptr + n * L * C + rows[:, None].to(tl.int64) * C + cols[None, :], d_0, mask=m)
    pb = dwp_ptr + ((n * TLMAX + lt) * 3) * C + cols
    tl.store(pb, tl.sum(d_0 * x_m1, axis=0), mask=cmask)
    tl.store(pb + C, tl.sum(d_0 * x_0, axis=0), mask=cmask)
    tl.store(pb + 2 * C, tl.sum(d_0 * x_p1, axis=0), mask=cmask)


@triton.jit
def _scratch_dx_kernel(
    delta_ptr, w_ptr, dx_ptr, L, C, D, BLOCK_L: tl.constexpr, BLOCK_C: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    db = delta_ptr + n * L * C
    w0, w1, w2 = _load_taps(w_ptr, cols, cmask, C)
    dx = _conv3(
        _load_rows(db, rows + D, cols, cmask, L, C),
        _load_rows(db, rows, cols, cmask, L, C),
        _load_rows(db, rows - D, cols, cmask, L, C),
        w0, w1, w2,
    )
    m = (rows < L)[:, None] & cmask[None, :]
    tl.store(dx_ptr + n * L * C + rows[:, None].to(tl.int64) * C + cols[None, :],
             dx.to(dx_ptr.dtype.element_ty), mask=m)


def conv_norm_bwd_tile(g, x, w, mean, rstd, dilation, residual=None):
    """Backward with the per-tile main kernel (every tile recomputes ``δ`` at its three taps and
    reduces its own dw partial), the default until the comb kernel replaced it; kept for
    benchmarking. Same results as :func:`conv_norm_bwd` up to fp32 summation order."""
    return _conv_norm_bwd_impl(g, x, w, mean, rstd, dilation, residual, plan="tile")


def conv_norm_bwd_scratch(g, x, w, mean, rstd, dilation):
    """Backward with an fp32 ``δ`` scratch and a separate ``dx`` launch (benchmark baseline).

    Same results as :func:`conv_norm_bwd` (heuristic configs, no autotuning).
    """
    _check(x, w, dilation)
    N, L, C = x.shape
    g, w = g.contiguous(), w.contiguous()
    mean, rstd = mean.float().contiguous(), rstd.float().contiguous()
    sums = _bwd_sums(g, x, w, mean, rstd, dilation)
    bc = _block_c(C)
    nct = cdiv(C, bc)
    meta, nw = _heuristic(L, bc)
    bl = meta["BLOCK_L"]
    tlmax = cdiv(L, bl)
    delta = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    dwp = torch.empty((N, tlmax, 3, C), device=x.device, dtype=torch.float32)
    grid = (N, cdiv(L, bl), nct)
    _scratch_delta_kernel[grid](
        g, x, w, mean, rstd, sums, delta, dwp, L, C, int(dilation), tlmax, N,
        BLOCK_L=bl, BLOCK_C=bc, num_warps=nw,
    )
    dx = torch.empty_like(x)
    _scratch_dx_kernel[grid](delta, w, dx, L, C, int(dilation), BLOCK_L=bl, BLOCK_C=bc, num_warps=nw)
    return dx, dwp.sum(dim=(0, 1)).to(w.dtype)


# --------------------------------------------------------------------------------------------
# custom ops: opaque to torch.compile, eager-callable like plain functions


@torch.library.custom_op("strandwise::conv_norm_fwd", mutates_args=())
def _conv_norm_fwd_op(
    x: torch.Tensor, w: torch.Tensor, dilation: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _conv_norm_fwd_impl(x, w, dilation, eps)


@_conv_norm_fwd_op.register_fake
def _(x, w, dilation, eps):
    N = x.shape[0]
    return (
        torch.empty_like(x),
        x.new_empty((N,), dtype=torch.float32),
        x.new_empty((N,), dtype=torch.float32),
    )


@torch.library.custom_op("strandwise::conv_norm_bwd", mutates_args=())
def _conv_norm_bwd_op(
    g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
    dilation: int, residual: Optional[torch.Tensor] = None, sums: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _conv_norm_bwd_impl(g, x, w, mean, rstd, dilation, residual, sums=sums)


@_conv_norm_bwd_op.register_fake
def _(g, x, w, mean, rstd, dilation, residual=None, sums=None):
    return torch.empty_like(x), torch.empty_like(w)


def conv_norm_fwd(x: torch.Tensor, w: torch.Tensor, dilation: int, eps: float):
    """Triton forward of the fused conv + norm.

    Parameters
    ----------
    x : torch.Tensor, shape (N, L, C), contiguous, fp32/bf16/fp16, CUDA
    w : torch.Tensor, shape (3, C), any float dtype (taps are applied in fp32)
    dilation : int
    eps : float

    Returns
    -------
    out : torch.Tensor, shape (N, L, C), dtype of ``x``
    mean, rstd : torch.Tensor, shape (N,), fp32
    """
    return _conv_norm_fwd_op(x, w, int(dilation), float(eps))


def conv_norm_bwd(g, x, w, mean, rstd, dilation, residual=None, sums=None):
    """Triton backward: ``(dx (N, L, C) in x.dtype, dw (3, C) in w.dtype)`` (spec §2.5).

    ``residual`` (optional, shape of ``x``) is added to ``dx`` inside the kernel, in fp32 before
    the rounding to ``x``'s dtype: the gradient of ``x + f(conv_norm(x))`` in one pass.
    ``sums`` (optional, ``(2, N)`` fp32): ``S1 = Σ g`` and ``S2 = Σ g·x̂`` per example when the
    caller already has them (the fused Cheri block's MLP backward does), which skips the
    statistics pass."""
    return _conv_norm_bwd_op(g, x, w, mean, rstd, int(dilation), residual, sums)
