"""Triton kernel of the Cheri Block training backward (see :mod:`strandwise.kernels.cheri_train`).

Kept apart so that importing :mod:`strandwise.kernels` never imports Triton. The forward is the
inference megakernel with ``SAVE=1`` (:func:`strandwise.kernels.cheri_infer_triton.mlp_kernel`).

``mlp_bwd_kernel``: per tile of ``BLOCK_M`` flattened rows, for each chunk of ``BLOCK_H`` hidden
units, ``dh = dout · (s·W2)[:, chunk]`` → ``dz = dh · gelu'(z)`` (z re-read, stored once) →
``dx̂ += dz · W1[chunk, :]``; finally ``dx̂`` is stored, with its per-row sums ``Σ_c dx̂`` and
``Σ_c dx̂·x̂`` (fp32, ``(2, N·L)``): summed per example they are the conv-norm backward's ``S1``,
``S2``, which spares that backward its statistics pass. (Reading ``x̂`` back costs this kernel
about 70 µs on an H100 at N=512, L=1024, C=128, against the 90 µs pass it removes; taking ``S2`` as
``Σ_h dz·z`` from values the loop already holds instead raised its registers, 143 to 193 at the
64-row, 8-warp tile, and measured slower still: 475 against 462 µs.) The gradient of the hidden activations
``dh`` never goes to memory, and neither does a separate GELU-backward pass. Products accumulate in
fp32 with operands in the activations' dtype (bf16/fp16), like cuBLAS on the unfused path.

Autotuning: ``BLOCK_M ∈ {64, 128}`` × ``num_warps ∈ {4, 8}`` × ``num_stages ∈ {2, 3}``, ``BLOCK_H``
the widest chunk up to 64, pruned like the forward (32–128 accumulator elements per thread); the
tiles with at most 32 elements per thread are also tried with ``x̂`` loaded before the hidden loop
(``PREFETCH_XN``). The
kernel only reads ``dout``, ``z``, ``x̂`` and the weights and writes ``dz``, ``dx̂`` and the row
sums: every trial is idempotent, so the first call is exact.
"""

import triton
import triton.language as tl

from strandwise.kernels import cheri_infer_triton as cit
from strandwise.kernels import conv_norm_triton as cnt
from strandwise.kernels._host import AUTOTUNE_CACHE, CAPPED_CONFIGS
from strandwise.kernels._triton_ops import gelu_tanh_grad

__all__ = ["mlp_bwd_kernel", "mlp_bwd_kernel_tuned", "bwd_configs"]


@triton.jit
def mlp_bwd_kernel(
    dout_ptr, z_ptr, w1_ptr, w2s_ptr, dz_ptr, dxn_ptr, xn_ptr, rs_ptr, NL, C, H,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, FAST_GELU: tl.constexpr,
    PREFETCH_XN: tl.constexpr = 0, DOT: tl.constexpr = 0, PRECISION: tl.constexpr = "ieee",
):
    # w1: W1 (H, C) and w2s: s·W2 (C, H), both contiguous in the activations' dtype.
    # PREFETCH_XN: load x̂ (for the S2 row sums) before the hidden loop, so its latency hides under
    # the products, at the cost of holding the tile in registers through the loop; 0 loads it
    # after the loop. Both are autotune candidates.
    # DOT: 0 = half-precision operands (bf16/fp16 activations); 1 = fp32 activations, products
    # with PRECISION ("tf32", "tf32x3" or "ieee"; see cheri_train).
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < NL
    cols = tl.arange(0, BLOCK_C)
    cmask = cols < C
    offs = rows[:, None] * C + cols[None, :]
    m_c = rmask[:, None] & cmask[None, :]
    go = tl.load(dout_ptr + offs, mask=m_c, other=0.0)
    if PREFETCH_XN:
        xh = tl.load(xn_ptr + offs, mask=m_c, other=0.0)
    acc = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        hid = h0 + tl.arange(0, BLOCK_H)
        hmask = hid < H
        w2c = tl.load(w2s_ptr + cols[:, None] * H + hid[None, :],
                      mask=cmask[:, None] & hmask[None, :], other=0.0)
        if DOT == 0:
            dh = tl.dot(go, w2c)
        else:
            dh = tl.dot(go, w2c, input_precision=PRECISION)
        hoffs = rows[:, None] * H + hid[None, :]
        hm = rmask[:, None] & hmask[None, :]
        z = tl.load(z_ptr + hoffs, mask=hm, other=0.0).to(tl.float32)
        dz = (dh * gelu_tanh_grad(z, FAST_GELU)).to(dz_ptr.dtype.element_ty)
        tl.store(dz_ptr + hoffs, dz, mask=hm)
        w1c = tl.load(w1_ptr + hid[:, None] * C + cols[None, :],
                      mask=hmask[:, None] & cmask[None, :], other=0.0)
        if DOT == 0:
            acc += tl.dot(dz, w1c)
        else:
            acc += tl.dot(dz, w1c, input_precision=PRECISION)
    gq = acc.to(dxn_ptr.dtype.element_ty)
    # addresses and masks computed afresh after the loop (as in cit.mlp_kernel: held through it
    # they cost registers)
    base, o_off, o_m = cit._tile_offsets(pid, NL, C, BLOCK_M, BLOCK_C, 0)
    tl.store(dxn_ptr + base + o_off, gq, mask=o_m)
    # the conv-norm backward's per-row sums Σ_c dx̂ and Σ_c dx̂·x̂ (x̂ as saved by the forward, dx̂
    # as stored), so that it needs no statistics pass re-reading x and dx̂
    gf = gq.to(tl.float32)
    if not PREFETCH_XN:
        xh = tl.load(xn_ptr + base + o_off, mask=o_m, other=0.0)
    tl.store(rs_ptr + rows, tl.sum(gf, axis=1), mask=rmask)
    tl.store(rs_ptr + NL + rows, tl.sum(gf * xh.to(tl.float32), axis=1), mask=rmask)


def bwd_configs():
    """Search space: BLOCK_M × BLOCK_H × num_warps × num_stages (launch options on the Config) ×
    where x̂ is loaded (``PREFETCH_XN``)."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_H": bh, "PREFETCH_XN": pf}, num_warps=nw, num_stages=ns)
        for bm in (32, 64, 128)
        for bh in (16, 32, 64)
        for nw in (4, 8)
        for ns in (2, 3)
        for pf in (0, 1)
    ] + (capped_bwd_configs() if CAPPED_CONFIGS else [])


def capped_bwd_configs():
    """On unless ``STRANDWISE_CAPPED_CONFIGS=0``: the register-capped tiles of
    :func:`cit.capped_configs` (its docstring gives their offline register/spill figures)."""
    return cit.capped_configs(stages=(2, 3), PREFETCH_XN=0)


def _prune(cfgs, named_args, **kwargs):
    """The forward's rules (:func:`cheri_infer_triton.prune_full`) with the widest hidden chunk
    up to 64 only."""
    widest = cit._widest_chunk(named_args["H"])
    bc = kwargs["BLOCK_C"]
    keep = []
    for cfg in cfgs:
        bm = cfg.kwargs["BLOCK_M"]
        per_thread = bm * bc // (32 * cfg.num_warps)
        if not cit.chunk_ok(cfg, widest) or not (32 <= per_thread <= 128):
            continue
        if bm < 64 and bc <= 256:
            continue
        if cfg.num_stages > 2 and named_args["H"] // widest < 2:
            continue
        # the early x̂ load holds its tile through the loop: only where registers are left
        # (offline sm_90 at C = 128: 64 rows / 8 warps 143 -> 176 registers, no spills; the
        # 4-warp tiles are at 255 already)
        if cfg.kwargs["PREFETCH_XN"] and per_thread > 32:
            continue
        keep.append(cfg)
    return keep or [triton.Config({"BLOCK_M": 32, "BLOCK_H": widest}, num_warps=4, num_stages=2)]


mlp_bwd_kernel_tuned = triton.autotune(
    configs=bwd_configs(), key=["C", "H", "FAST_GELU", "DOT", "PRECISION"],
    prune_configs_by={"early_config_prune": _prune}, do_bench=cnt._bench, cache_results=AUTOTUNE_CACHE,
)(mlp_bwd_kernel)
