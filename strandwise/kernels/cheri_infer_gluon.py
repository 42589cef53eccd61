"""Hopper (sm_90) Gluon kernels of the Cheri Block inference MLP pass (see
:mod:`strandwise.kernels.cheri_infer`).

Same arithmetic as :func:`strandwise.kernels.cheri_infer_triton.mlp_kernel` with half-precision
operands (``DOT = 0``): recompute the 3-tap conv from ``x``, normalise with the prepass's
statistics, ``z = x̂·W1ᵀ`` → GELU(tanh) → ``acc += g·(s·W2)ᵀ`` over hidden chunks, ``out = x + acc``
(the same operands, products and chunk order: bit-identical outputs with ``PACKED = 0``; the
default for bf16/fp16 input, ``PACKED = 1``, runs the GELU on packed pairs of the second product's
operand type, see :func:`_gelu_packed`). What the Triton kernel cannot express and these do
(Triton 3.6 waits for every product before the GELU, so within a warpgroup the products and the
GELU never overlap — BENCHMARKS.md rounds 2 and 4):

* the weights ``W1ᵀ`` and ``(s·W2)ᵀ`` are copied into shared memory once per persistent program
  (one per SM), not re-read from L2 for every row tile;
* :func:`mlp_kernel_gluon_ws` (the default on sm_90 for bf16/fp16 input) forks the program into
  ``NPART`` one-warpgroup partitions (``gl.warp_specialize``) that walk their own row tiles with
  their own x̂ buffer in shared memory and synchronise only their own 4 warps, so one
  partition's GELU runs beside another's products (BENCHMARKS.md, Cherimoya round 17);
  :func:`mlp_kernel_gluon` is round 10's variant: all warps of the program walk tiles together,
  x̂ held in registers as the operand;
* within a warpgroup the products are software-pipelined by hand (``PIPE``): the first product
  of chunk ``j+1`` is issued before the GELU of chunk ``j`` runs, and the wait keeps the later
  products in flight (``warpgroup_mma_wait(num_outstanding=…)``).

Eligible (:func:`strandwise.kernels.cheri_infer.gluon_mlp_ok`): compute capability 9.0, Gluon
importable, not under the interpreter, and both weights in shared memory within
``GLUON_SMEM_BUDGET``. Kept apart so that importing :mod:`strandwise.kernels` never imports Triton.
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared, warpgroup_mma, warpgroup_mma_wait,
)

__all__ = ["mlp_kernel_gluon", "mlp_kernel_gluon_ws"]


@gluon.jit
def _gelu_fast(z):
    # GELU(tanh) with the hardware tanh.approx.f32 (as _triton_ops.gelu_tanh with FAST=1)
    u = z * (0.035677408136300125 * (z * z) + 0.7978845608028654)
    th = gl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [u], dtype=gl.float32,
                                   is_pure=True, pack=1)
    return 0.5 * (z * th + z)


@gluon.jit
def _gelu_exact(z):
    t = 1.5957691216057308 * z * (1.0 + 0.044715 * z * z)
    return z / (1.0 + gl.exp(-t))


@gluon.jit
def _gelu(z, FAST: gl.constexpr):
    if FAST:
        g = _gelu_fast(z)
    else:
        g = _gelu_exact(z)
    return g


# GELU(tanh) on pairs of half-precision values, one 32-bit register a pair: the same formula as
# _gelu_fast, ½·z·(1 + tanh(z·(c0 + c1·z²))), written as h = ½z, h·t + h, in packed f16x2 / bf16x2
# arithmetic with the hardware tanh.approx of that type (sm_90 for bf16x2). Six packed
# instructions a pair instead of eight fp32 ones an element plus the conversion; the result is
# the operand of the second product anyway, so only the intermediate roundings are added (the
# constants rounded to the type: c0 = 0.79785 / 0.79688, c1 = 0.035675 / 0.035645).
_PACKED_GELU_PTX = """{{
.reg .b32 c0, c1, hf, z2, p, u, t, h;
mov.b32 c0, {c0};
mov.b32 c1, {c1};
mov.b32 hf, {half};
mul{rn}.{ty} z2, $1, $1;
fma.rn.{ty} p, z2, c1, c0;
mul{rn}.{ty} u, $1, p;
tanh.approx.{ty} t, u;
mul{rn}.{ty} h, $1, hf;
fma.rn.{ty} $0, h, t, h;
}}"""
_GELU_F16X2 = gl.constexpr(_PACKED_GELU_PTX.format(ty="f16x2", rn=".rn", c0="0x3a623a62",
                                                  c1="0x28912891", half="0x38003800"))
_GELU_BF16X2 = gl.constexpr(_PACKED_GELU_PTX.format(ty="bf16x2", rn=".rn", c0="0x3f4c3f4c",
                                                   c1="0x3d123d12", half="0x3f003f00"))


@gluon.jit
def _gelu_packed(z, gdt: gl.constexpr):
    zh = z.to(gdt)
    if gdt == gl.float16:
        g = gl.inline_asm_elementwise(_GELU_F16X2, "=r,r", [zh], dtype=gl.float16, is_pure=True, pack=2)
    else:
        g = gl.inline_asm_elementwise(_GELU_BF16X2, "=r,r", [zh], dtype=gl.bfloat16, is_pure=True, pack=2)
    return g


@gluon.jit
def _gelu_operand(z, gdt: gl.constexpr, FAST: gl.constexpr, PACKED: gl.constexpr):
    """GELU(z) in the second product's operand dtype ``gdt``: in fp32 then rounded, or with
    ``PACKED`` (and the hardware tanh) on packed pairs of ``gdt`` (bf16/fp16)."""
    if PACKED and FAST:
        g = _gelu_packed(z, gdt)
    else:
        g = _gelu(z, FAST).to(gdt)
    return g


@gluon.jit
def _load_weights(w1t_ptr, w2t_ptr, C, H, BLOCK_C: gl.constexpr, BLOCK_H: gl.constexpr,
                  NUM_H: gl.constexpr):
    """``W1ᵀ`` and ``(s·W2)ᵀ`` into shared memory (zero-padded to BLOCK_C × NUM_H·BLOCK_H), by all
    the warps of the current context, fenced and barriered; returns the two descriptors."""
    wdt: gl.constexpr = w1t_ptr.dtype.element_ty
    w2dt: gl.constexpr = w2t_ptr.dtype.element_ty
    ld_l: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [gl.num_warps(), 1], [1, 0])
    w1_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_C, BLOCK_H], wdt)
    w2_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_H, BLOCK_C], w2dt)
    w1s = gl.allocate_shared_memory(wdt, [NUM_H, BLOCK_C, BLOCK_H], w1_sl)
    w2s = gl.allocate_shared_memory(w2dt, [NUM_H, BLOCK_H, BLOCK_C], w2_sl)
    kc = gl.arange(0, BLOCK_C, layout=gl.SliceLayout(1, ld_l))
    kh = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(0, ld_l))
    rh = gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, ld_l))
    rc = gl.arange(0, BLOCK_C, layout=gl.SliceLayout(0, ld_l))
    for j in gl.static_range(NUM_H):
        hc = j * BLOCK_H + kh
        t1 = gl.load(w1t_ptr + kc[:, None] * H + hc[None, :],
                     mask=(kc[:, None] < C) & (hc[None, :] < H), other=0.0)
        w1s.index(j).store(t1)
        hr = j * BLOCK_H + rh
        t2 = gl.load(w2t_ptr + hr[:, None] * C + rc[None, :],
                     mask=(hr[:, None] < H) & (rc[None, :] < C), other=0.0)
        w2s.index(j).store(t2)
    fence_async_shared()
    gl.thread_barrier()
    return w1s, w2s


@gluon.jit
def _mlp_tiles(
    first, step, x_ptr, cw_ptr, mean_ptr, rstd_ptr, out_ptr, w1s, w2s, xs, rs, NL, L, C, D, num_tiles,
    BLOCK_M: gl.constexpr, BLOCK_C: gl.constexpr, BLOCK_H: gl.constexpr, NUM_H: gl.constexpr,
    FAST_GELU: gl.constexpr, COALESCED: gl.constexpr, TPW_C: gl.constexpr, PIPE: gl.constexpr, EVEN: gl.constexpr,
    A_SMEM: gl.constexpr, PACKED: gl.constexpr, RES_SMEM: gl.constexpr,
):
    """Row tiles ``first, first + step, …`` of the MLP pass, by the warps of the current context
    (the whole program, or one partition of the warp-specialised kernel). ``PIPE``: 1 = the first
    product of hidden chunk ``j+1`` is issued before chunk ``j``'s GELU (two ``z`` chunks live); 0 =
    each ``z`` is waited for at once (fewer registers; the overlap then comes from the other
    warpgroups of the SM). ``A_SMEM``: x̂ is computed in the coalesced layout and written to the
    (BLOCK_M, BLOCK_C) shared buffer ``xs``, the first product's operand, instead of being held in
    registers in the operand layout (32 registers a thread fewer, 16-byte loads; two barriers of
    the current warps a tile: only for a one-warpgroup context, i.e. a partition)."""
    nw: gl.constexpr = gl.num_warps()
    wdt: gl.constexpr = w1s.dtype
    gdt: gl.constexpr = w2s.dtype
    # Layouts: one warpgroup per 64 rows; z (BLOCK_M, BLOCK_H) and acc (BLOCK_M, BLOCK_C) in the
    # wgmma accumulator layouts; x̂ and g in the register-operand layouts of the two products.
    mma_z: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[nw, 1],
                                                   instr_shape=[16, BLOCK_H, 16])
    mma_o: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[nw, 1],
                                                   instr_shape=[16, BLOCK_C, 16])
    a_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_z, k_width=2)
    g_l: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_o, k_width=2)
    # COALESCED: x is read and out written in a layout where each thread holds 16-byte row
    # pieces (a warp instruction covers whole 128-byte lines); the conversion to and from the
    # wgmma layouts goes through shared-memory scratch (offline sm_90: 16 KB a partition for the
    # store). Otherwise x is read straight in the operand layout: 4-byte pieces of 8 rows per warp
    # instruction, 8 cache lines per instruction.
    io_l: gl.constexpr = gl.BlockedLayout([16 // (32 // TPW_C), 8], [32 // TPW_C, TPW_C], [nw, 1], [1, 0])
    x_l: gl.constexpr = io_l if (COALESCED or A_SMEM) else a_l
    o_l: gl.constexpr = io_l if COALESCED else mma_o
    cols = gl.arange(0, BLOCK_C, layout=gl.SliceLayout(0, x_l))
    cmask = cols < C
    cols_o = gl.arange(0, BLOCK_C, layout=gl.SliceLayout(0, o_l))
    cmask_o = cols_o < C

    for tile in range(first, num_tiles, step):
        # ---- conv + norm, into the first product's operand (registers, or xs with A_SMEM)
        # Addresses: the tile's first element as one 64-bit scalar, the elements within it as
        # int32 offsets; with EVEN the row stride is the constexpr BLOCK_C, so a thread's
        # offsets are compile-time constants from one base (offline sm_90 this alone did not
        # lower the plain kernel's 255 registers; x̂ in shared memory, A_SMEM, cut the spills).
        lr = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, x_l))
        r0 = tile.to(gl.int64) * BLOCK_M
        rows = r0 + lr
        n = rows // L
        pos = (rows - n * L).to(gl.int32)
        if EVEN:
            stride = BLOCK_C
            m_c = gl.full([BLOCK_M, BLOCK_C], 1, gl.int1, layout=x_l)
        else:
            stride = C
            m_c = (rows < NL)[:, None] & cmask[None, :]
        rmask = rows < NL
        xt = x_ptr + r0 * stride
        offs = lr[:, None] * stride + cols[None, :]
        m_m = m_c & (pos >= D)[:, None]
        m_p = m_c & (pos + D < L)[:, None]
        # conv taps re-read per tile (L1 hits): held through the loop they would cost a register
        # per channel this thread touches and tap
        cw0 = gl.load(cw_ptr + cols, mask=cmask, other=0.0).to(gl.float32)
        y = cw0[None, :] * gl.load(xt + offs - D * stride, mask=m_m, other=0.0).to(gl.float32)
        cw1 = gl.load(cw_ptr + C + cols, mask=cmask, other=0.0).to(gl.float32)
        xc = gl.load(xt + offs, mask=m_c, other=0.0)
        if RES_SMEM:
            # the centre tap is the residual: kept in the (BLOCK_M, BLOCK_C) buffer rs in the
            # layout it was loaded in, instead of re-read from L2 after the products
            rs.store(xc)
        y += cw1[None, :] * xc.to(gl.float32)
        cw2 = gl.load(cw_ptr + 2 * C + cols, mask=cmask, other=0.0).to(gl.float32)
        y += cw2[None, :] * gl.load(xt + offs + D * stride, mask=m_p, other=0.0).to(gl.float32)
        mu = gl.load(mean_ptr + n, mask=rmask, other=0.0)
        r = gl.load(rstd_ptr + n, mask=rmask, other=0.0)
        a = gl.where(m_c, (y - mu[:, None]) * r[:, None], 0.0).to(wdt)
        if A_SMEM:
            gl.thread_barrier()  # the previous tile's products have all been waited for
            xs.store(a)
            fence_async_shared()
            gl.thread_barrier()
            a = xs
        elif COALESCED:
            a = gl.convert_layout(a, a_l)

        acc = gl.zeros([BLOCK_M, BLOCK_C], gl.float32, layout=mma_o)
        zero_z = gl.zeros([BLOCK_M, BLOCK_H], gl.float32, layout=mma_z)
        if PIPE:
            # ---- products and GELU, software-pipelined over hidden chunks (all unrolled).
            # Issue order: Z0 Z1 | G0 A0 Z2 | G1 A1 Z3 | … ; wgmma groups retire in order, so the
            # wait for Z_j leaves the products issued after it in flight.
            zt = warpgroup_mma(a, w1s.index(0), zero_z, use_acc=False, is_async=True)
            for j in gl.static_range(NUM_H):
                if j + 1 < NUM_H:
                    zn = warpgroup_mma(a, w1s.index(j + 1), zero_z, use_acc=False, is_async=True)
                    if j == 0:
                        z = warpgroup_mma_wait(num_outstanding=1, deps=(zt,))
                    else:
                        z = warpgroup_mma_wait(num_outstanding=2, deps=(zt,))
                else:
                    if j == 0:
                        z = warpgroup_mma_wait(num_outstanding=0, deps=(zt,))
                    else:
                        z = warpgroup_mma_wait(num_outstanding=1, deps=(zt,))
                g = gl.convert_layout(_gelu_operand(z, gdt, FAST_GELU, PACKED), g_l)
                acc = warpgroup_mma(g, w2s.index(j), acc, is_async=True)
                if j + 1 < NUM_H:
                    zt = zn
        else:
            # ---- one chunk at a time: Z_j (waited at once, which also retires A_{j-1}), GELU,
            # A_j issued asynchronously
            for j in gl.static_range(NUM_H):
                zt = warpgroup_mma(a, w1s.index(j), zero_z, use_acc=False, is_async=True)
                z, acc = warpgroup_mma_wait(num_outstanding=0, deps=(zt, acc))
                g = gl.convert_layout(_gelu_operand(z, gdt, FAST_GELU, PACKED), g_l)
                acc = warpgroup_mma(g, w2s.index(j), acc, is_async=True)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))

        # ---- residual (re-read: an L2 hit) and store, in the accumulator layout
        lr_o = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, o_l))
        offs_o = lr_o[:, None] * stride + cols_o[None, :]
        if EVEN:
            m_o = gl.full([BLOCK_M, BLOCK_C], 1, gl.int1, layout=o_l)
        else:
            m_o = ((r0 + lr_o) < NL)[:, None] & cmask_o[None, :]
        if RES_SMEM:
            xr = rs.load(o_l).to(gl.float32)
        else:
            xr = gl.load(xt + offs_o, mask=m_o, other=0.0).to(gl.float32)
        if COALESCED:
            acc = gl.convert_layout(acc, o_l)
        gl.store(out_ptr + r0 * stride + offs_o, (xr + acc).to(out_ptr.dtype.element_ty), mask=m_o)


@gluon.jit
def mlp_kernel_gluon(
    x_ptr, cw_ptr, w1t_ptr, w2t_ptr, mean_ptr, rstd_ptr, out_ptr, NL, L, C, H, D, num_tiles,
    BLOCK_M: gl.constexpr, BLOCK_C: gl.constexpr, BLOCK_H: gl.constexpr, NUM_H: gl.constexpr,
    FAST_GELU: gl.constexpr, COALESCED: gl.constexpr, TPW_C: gl.constexpr, num_warps: gl.constexpr,
    PIPE: gl.constexpr = 1, EVEN: gl.constexpr = 0, PACKED: gl.constexpr = 0,
):
    # w1t: W1ᵀ (C, H) and w2t: (s·W2)ᵀ (H, C), contiguous, in the operand dtype (bf16/fp16).
    # One program per SM: the weights go to shared memory once, then all warps walk row tiles
    # together (BLOCK_M = 16 · num_warps rows a tile).
    w1s, w2s = _load_weights(w1t_ptr, w2t_ptr, C, H, BLOCK_C, BLOCK_H, NUM_H)
    _mlp_tiles(gl.program_id(0), gl.num_programs(0), x_ptr, cw_ptr, mean_ptr, rstd_ptr, out_ptr,
               w1s, w2s, w1s, w1s, NL, L, C, D, num_tiles, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU,
               COALESCED, TPW_C, PIPE, EVEN, 0, PACKED, 0)


@gluon.jit
def _ws_partition(
    part, rt, NPART: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_C: gl.constexpr, BLOCK_H: gl.constexpr,
    NUM_H: gl.constexpr, FAST_GELU: gl.constexpr, COALESCED: gl.constexpr, TPW_C: gl.constexpr,
    PIPE: gl.constexpr, EVEN: gl.constexpr, PACKED: gl.constexpr, RES_SMEM: gl.constexpr,
):
    # rt: the runtime arguments as one tuple (constexprs must be passed on their own: inside a
    # tuple, warp_specialize hands them over as tensors)
    x_ptr, cw_ptr, mean_ptr, rstd_ptr, out_ptr, w1s, w2s, xs, rs, NL, L, C, D, num_tiles = rt
    _mlp_tiles(gl.program_id(0) * NPART + part, gl.num_programs(0) * NPART, x_ptr, cw_ptr,
               mean_ptr, rstd_ptr, out_ptr, w1s, w2s, xs.index(part), rs.index(part), NL, L, C, D,
               num_tiles, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU, COALESCED, TPW_C, PIPE, EVEN, 1,
               PACKED, RES_SMEM)


@gluon.jit
def mlp_kernel_gluon_ws(
    x_ptr, cw_ptr, w1t_ptr, w2t_ptr, mean_ptr, rstd_ptr, out_ptr, NL, L, C, H, D, num_tiles,
    BLOCK_M: gl.constexpr, BLOCK_C: gl.constexpr, BLOCK_H: gl.constexpr, NUM_H: gl.constexpr,
    FAST_GELU: gl.constexpr, COALESCED: gl.constexpr, TPW_C: gl.constexpr, PIPE: gl.constexpr, EVEN: gl.constexpr,
    NPART: gl.constexpr, REGS: gl.constexpr, PACKED: gl.constexpr = 0, RES_SMEM: gl.constexpr = 0,
):
    # Launched with num_warps = 4: one warpgroup per partition, NPART (2 or 3) partitions per
    # program, each walking its own row tiles of BLOCK_M = 64 rows with its own products and GELU,
    # x̂ in its own shared buffer (A_SMEM). The weights sit in shared memory once per SM for all
    # of them, and nothing in the tile loop synchronises the partitions, so one's GELU runs beside
    # another's products. 12 warps with weights resident is what a plain launch cannot have
    # (num_warps must be a power of two and the 128 KB of weights allow one program per SM).
    gl.static_assert(NPART == 2 or NPART == 3)
    w1s, w2s = _load_weights(w1t_ptr, w2t_ptr, C, H, BLOCK_C, BLOCK_H, NUM_H)
    xs = gl.allocate_shared_memory(w1s.dtype, [NPART, BLOCK_M, BLOCK_C],
                                   gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_C], w1s.dtype))
    if RES_SMEM:  # one residual tile a partition, x's dtype, row-major as loaded (needs COALESCED)
        rs = gl.allocate_shared_memory(x_ptr.dtype.element_ty, [NPART, BLOCK_M, BLOCK_C],
                                       gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
    else:
        rs = xs
    rt = (x_ptr, cw_ptr, mean_ptr, rstd_ptr, out_ptr, w1s, w2s, xs, rs, NL, L, C, D, num_tiles)
    if NPART == 3:
        gl.warp_specialize([
            (_ws_partition, (0, rt, NPART, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU, COALESCED, TPW_C, PIPE, EVEN, PACKED, RES_SMEM)),
            (_ws_partition, (1, rt, NPART, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU, COALESCED, TPW_C, PIPE, EVEN, PACKED, RES_SMEM)),
            (_ws_partition, (2, rt, NPART, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU, COALESCED, TPW_C, PIPE, EVEN, PACKED, RES_SMEM)),
        ], [4, 4], [REGS, REGS])
    else:
        gl.warp_specialize([
            (_ws_partition, (0, rt, NPART, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU, COALESCED, TPW_C, PIPE, EVEN, PACKED, RES_SMEM)),
            (_ws_partition, (1, rt, NPART, BLOCK_M, BLOCK_C, BLOCK_H, NUM_H, FAST_GELU, COALESCED, TPW_C, PIPE, EVEN, PACKED, RES_SMEM)),
        ], [4], [REGS])
