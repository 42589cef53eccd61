"""Triton kernel of the Cheri Block inference megakernel (see :mod:`strandwise.kernels.cheri_infer`).

Kept apart so that importing :mod:`strandwise.kernels` never imports Triton.

Autotuning: ``BLOCK_M`` rows × ``BLOCK_H`` hidden units per chunk × ``RELOAD_RES`` ×
``num_warps`` × ``num_stages`` (the hidden-chunk loop is software-pipelined, so stages matter
here), launch options on the Config, pruned (see :func:`prune`) to 32–128 accumulator elements per
thread. Key ``(C, H, DOT, PRECISION)`` + the tensors' dtypes. The kernel only reads ``x`` and the
weights and writes ``out``: every trial is idempotent, so the first call is exact.
"""

import triton
import triton.language as tl

from strandwise.kernels import conv_norm_triton as cnt
from strandwise.kernels._host import AUTOTUNE_CACHE, CAPPED_CONFIGS
from strandwise.kernels._triton_ops import gelu_tanh

__all__ = ["mlp_kernel", "mlp_kernel_tuned", "configs", "prune", "prune_full"]


@triton.jit
def _tile_offsets(pid, NL, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, EVEN: tl.constexpr):
    """Row tile ``pid`` (int64) of an (NL, C) row-major array, for use after a long loop (see
    :func:`mlp_kernel`): the tile's first element offset (a scalar), the int32 offsets within the
    tile and the tile's mask."""
    lr = tl.arange(0, BLOCK_M)
    lc = tl.arange(0, BLOCK_C)
    if EVEN:
        m = tl.full([BLOCK_M, BLOCK_C], 1, tl.int1)
    else:
        m = ((pid * BLOCK_M + lr) < NL)[:, None] & (lc < C)[None, :]
    return pid * BLOCK_M * C, lr[:, None] * C + lc[None, :], m


@triton.jit
def mlp_kernel(
    x_ptr, cw_ptr, w1t_ptr, w2t_ptr, mean_ptr, rstd_ptr, out_ptr, xn_ptr, z_ptr, h_ptr, NL, L, C, H, D,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
    DOT: tl.constexpr, PRECISION: tl.constexpr, FAST_GELU: tl.constexpr, RELOAD_RES: tl.constexpr = 0,
    SAVE: tl.constexpr = 0, EVEN: tl.constexpr = 0, HALF_W2: tl.constexpr = 0,
):
    # DOT: 0 = operands in the weights' dtype (input dtype, or bf16 for fp32 input);
    #      1 = fp32 operands with PRECISION ("tf32" or "ieee").
    # RELOAD_RES: 1 = re-read the residual x tile after the hidden loop (an L2 hit) instead of
    #      keeping it live in fp32 registers through the loop (BLOCK_M·BLOCK_C/threads registers
    #      per thread freed during the products: more programs per SM or bigger tiles).
    # SAVE: 1 = training forward (DOT 0 only): also store what the backward reads, exactly the
    #      products' operands: x̂ (N·L, C), the pre-activation z and h = gelu(z) (N·L, H), all in
    #      the weights' dtype (strandwise.kernels.cheri_train).
    # EVEN: 1 = the caller guarantees NL % BLOCK_M == 0 and C == BLOCK_C, so the tile needs no
    #      row or column masks (only the conv taps' sequence-edge masks); 10-30 fewer registers
    #      at 8 warps (offline sm_90 compile). cheri_infer.launch_block_kernel sets it where
    #      N·L % 128 == 0 and C is a power of two (unless STRANDWISE_CAPPED_CONFIGS=0).
    # HALF_W2: 1 = w2t holds ½·(s·W2)ᵀ and the loop multiplies it by 2·GELU(z), which saves the
    #      GELU's multiply by ½ per hidden element; both factors are exact power-of-two rescalings
    #      of the HALF_W2=0 operands, so the products and the output are bit-identical (inference
    #      only: SAVE stores the true GELU).
    tl.static_assert(HALF_W2 == 0 or SAVE == 0)
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < NL
    n = rows // L
    pos = rows - n * L
    cols = tl.arange(0, BLOCK_C)
    cmask = cols < C
    w0 = tl.load(cw_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    w1 = tl.load(cw_ptr + C + cols, mask=cmask, other=0.0).to(tl.float32)
    w2 = tl.load(cw_ptr + 2 * C + cols, mask=cmask, other=0.0).to(tl.float32)
    offs = rows[:, None] * C + cols[None, :]
    if EVEN:  # constant all-true row/column masks: the compiler drops them
        m_c = tl.full([BLOCK_M, BLOCK_C], 1, tl.int1)
    else:
        m_c = rmask[:, None] & cmask[None, :]
    m_m = m_c & (pos >= D)[:, None]
    m_p = m_c & (pos + D < L)[:, None]
    xm = tl.load(x_ptr + offs - D * C, mask=m_m, other=0.0).to(tl.float32)
    xc = tl.load(x_ptr + offs, mask=m_c, other=0.0).to(tl.float32)
    xp = tl.load(x_ptr + offs + D * C, mask=m_p, other=0.0).to(tl.float32)
    y = w0[None, :] * xm + w1[None, :] * xc + w2[None, :] * xp
    mu = tl.load(mean_ptr + n, mask=rmask, other=0.0)
    r = tl.load(rstd_ptr + n, mask=rmask, other=0.0)
    xhat = tl.where(m_c, (y - mu[:, None]) * r[:, None], 0.0)
    if DOT == 0:
        a = xhat.to(w1t_ptr.dtype.element_ty)
    else:
        a = xhat
    if SAVE:
        tl.store(xn_ptr + offs, a, mask=m_c)
    acc = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        hid = h0 + tl.arange(0, BLOCK_H)
        hmask = hid < H
        w1c = tl.load(w1t_ptr + cols[:, None] * H + hid[None, :],
                      mask=cmask[:, None] & hmask[None, :], other=0.0)
        if DOT == 0:
            z = tl.dot(a, w1c)
        else:
            z = tl.dot(a, w1c, input_precision=PRECISION)
        # half-precision operands: hardware tanh (below the bf16/fp16 rounding that follows)
        g = gelu_tanh(z, FAST_GELU, HALF_W2)
        if SAVE:
            hoffs = rows[:, None] * H + hid[None, :]
            hm = rmask[:, None] & hmask[None, :]
            tl.store(z_ptr + hoffs, z.to(z_ptr.dtype.element_ty), mask=hm)
            tl.store(h_ptr + hoffs, g.to(h_ptr.dtype.element_ty), mask=hm)
        w2c = tl.load(w2t_ptr + hid[:, None] * C + cols[None, :],
                      mask=hmask[:, None] & cmask[None, :], other=0.0)
        if DOT == 0:
            acc += tl.dot(g.to(w2t_ptr.dtype.element_ty), w2c)
        else:
            acc += tl.dot(g, w2c, input_precision=PRECISION)
    # The tile's addresses and masks after the loop are computed afresh, as the tile's base offset
    # plus int32 offsets within it, not reused from before the loop: in the products' accumulator
    # layout they are a 64-bit address per 4-byte piece, and held through the loop they cost
    # ~60-90 registers per thread (offline sm_90, C = 128: 64 rows × 8 warps 172 -> 149,
    # 128 rows × 8 warps 248 -> 183; with a 128-register cap, no spills).
    base, o_off, o_m = _tile_offsets(pid, NL, C, BLOCK_M, BLOCK_C, EVEN)
    if RELOAD_RES:
        xc = tl.load(x_ptr + base + o_off, mask=o_m, other=0.0).to(tl.float32)
    out = xc + acc
    tl.store(out_ptr + base + o_off, out.to(out_ptr.dtype.element_ty), mask=o_m)



def configs():
    """Full search space: BLOCK_M × BLOCK_H × RELOAD_RES × num_warps × num_stages (launch options
    on the Config)."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_H": bh, "RELOAD_RES": rr}, num_warps=nw, num_stages=ns)
        for bm in (32, 64, 128, 256)
        for bh in (16, 32, 64, 128)
        for rr in (0, 1)
        for nw in (4, 8, 16)
        for ns in (2, 3, 4)
    ] + (capped_fwd_configs() if CAPPED_CONFIGS else [])


#: (BLOCK_M, num_warps, maxnreg) of the register-capped tiles: 64 rows with 8 warps at 128 registers
#: (two programs, 16 warps, per SM) or 4 warps at 168 (three programs, 12 warps), 128 rows with 8
#: warps at 128.
CAPPED_TILES = ((64, 8, 128), (64, 4, 168), (128, 8, 128))
#: The subset the forward kernel's space keeps: in the H100 sweep of the bf16 inference pass
#: (BENCHMARKS.md Round 13) the capped 64-row 8-warp tiles were 48-118 % slower than the pick, 4
#: stages lost to 3 for every capped tile but one (within 3 %), and for the kept tiles the 64-wide
#: chunk lost to the 32-wide one by 20-38 %.
CAPPED_TILES_FWD = ((64, 4, 168), (128, 8, 128))


def capped_configs(stages=(3, 4), tiles=CAPPED_TILES, chunks=(32, 64), **kwargs):
    """Candidates (on unless ``STRANDWISE_CAPPED_CONFIGS=0``; H100 timings in BENCHMARKS.md Round 13)
    for this kernel (``kwargs``: its other meta-parameters) and the training backward, with the
    registers capped per thread (``maxnreg``): ``tiles`` (:data:`CAPPED_TILES`) × hidden ``chunks``
    × ``stages``. The forward's space takes :data:`CAPPED_TILES_FWD` with chunks of 32 and 3 stages
    (the 4-warp one won the H100 sweep: bf16 inference MLP pass 0.288 ms against 0.319 for the best
    uncapped tile; uncapped, the same tile also compiles to 168 registers, so the 32-wide chunk is
    what wins); the backward takes all of them (not yet swept alone). Offline sm_90 compile at
    C = 128, H = 256 (BENCHMARKS.md Round 12), stack (spill) bytes of the inference /
    training-forward / backward kernels: 64 rows, 8 warps: 0 / 0–48 / 0; 64 rows, 4 warps: 0–8 / 0 /
    0–64; 128 rows, 8 warps: 0–16 / 208–232 / 0–208 (the larger figures with chunks of 64)."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_H": bh, **kwargs}, num_warps=nw, num_stages=ns, maxnreg=reg)
        for bm, nw, reg in tiles
        for bh in chunks
        for ns in stages
    ]


def capped_fwd_configs():
    """The forward kernel's capped candidates: :data:`CAPPED_TILES_FWD`, chunks of 32, 3 stages."""
    return capped_configs(stages=(3,), tiles=CAPPED_TILES_FWD, chunks=(32,), RELOAD_RES=1)


def chunk_ok(cfg, widest: int) -> bool:
    """The hidden chunk of ``cfg`` is the widest one (:func:`_widest_chunk`), or half of it (16 at
    least) for a register-capped config (:func:`capped_configs`)."""
    bh = cfg.kwargs["BLOCK_H"]
    return bh == widest or (cfg.maxnreg is not None and bh == widest // 2 and bh >= 16)


def _widest_chunk(H: int) -> int:
    return 64 if H >= 64 else 32 if H >= 32 else 16  # H % 16 == 0 is guaranteed


def prune(cfgs, named_args, **kwargs):
    """The autotuner's pruning: :func:`prune_full`, then only ``RELOAD_RES = 1``, the widest
    64-or-less hidden chunk and ``num_stages ≤ 3``. The sweep of the full space
    (``benchmarks/sweep_cheri_infer.py``, H200, N=512, L=1024, C=128; JSON in
    ``benchmarks/results/cheri_infer_sweep_h200.json``) found ``RELOAD_RES`` within 1 % either way
    and 128-wide hidden chunks 5–25 % slower; compiling the whole space on every new shape would
    cost minutes."""
    widest = _widest_chunk(named_args["H"])
    keep = [c for c in prune_full(cfgs, named_args, **kwargs)
            if c.kwargs["RELOAD_RES"] == 1 and (c.num_stages <= 3 or c.maxnreg) and chunk_ok(c, widest)]
    return keep or prune_full(cfgs, named_args, **kwargs)[:1]


def prune_full(cfgs, named_args, **kwargs):
    """Keep 32–128 fp32 accumulator elements per thread, hidden chunks of 64 or 128 (≤ H, or the
    widest chunk for small H), no stage count deeper than the hidden loop is long."""
    bc = kwargs["BLOCK_C"]
    H = named_args["H"]
    widest = _widest_chunk(H)
    keep = []
    for cfg in cfgs:
        bm, bh = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_H"]
        per_thread = bm * bc // (32 * cfg.num_warps)
        # up to 128 accumulator registers per thread: the usual Hopper tile (128×128 per warpgroup)
        if not (32 <= per_thread <= 128):
            continue
        if not (chunk_ok(cfg, widest) or (bh == 128 and H % 128 == 0 and bc <= 256)):
            continue
        if bm < 64 and bc <= 256:  # small row tiles re-read the weights often
            continue
        if bm > 128 or cfg.num_warps > 8:  # measured slower on an H200 (round 1)
            continue
        if cfg.num_stages > 2 and H // bh < 2:  # a one-trip loop has nothing to pipeline
            continue
        keep.append(cfg)
    if not keep:
        keep = [triton.Config({"BLOCK_M": 32, "BLOCK_H": widest, "RELOAD_RES": 1}, num_warps=4, num_stages=2)]
    return keep


mlp_kernel_tuned = triton.autotune(
    configs=configs(), key=["C", "H", "DOT", "PRECISION", "FAST_GELU", "SAVE"],
    prune_configs_by={"early_config_prune": prune}, do_bench=cnt._bench, cache_results=AUTOTUNE_CACHE,
)(mlp_kernel)
