"""No-grad inference path of a whole Cheri Block (spec ``cherimoya.md`` §2.4, §2.6).

``out = x + s · W2 · gelu_tanh(W1 · x̂)``, ``x̂ = norm(conv(x))``, on channels-last ``(N, L, C)``.

Two passes over ``x`` and one write — the memory floor of spec §8.3 — in three launches:

1. stats prepass (shared with the training path, :func:`conv_norm_triton.conv_norm_stats`):
   per-tile partial sums of the conv output, no atomics, then a per-example finalize → ``μ, r``;
2. one kernel over flattened rows ``N·L`` in tiles of ``BLOCK_M × C``: recompute the 3-tap conv
   from ``x`` (never stored), normalise, then loop over hidden chunks of ``BLOCK_H``:
   ``z = x̂ · W1ᵀ[:, chunk]`` → GELU(tanh) → ``acc += h · (s·W2)ᵀ[chunk, :]``; finally
   ``out = x + acc`` in the input dtype.

Precision of the two matrix products (``tl.dot``, fp32 accumulation always):

* bf16 / fp16 input: operands in the input dtype (weights cast once to it);
* fp32 input: ``fp32_dot="bf16"`` (default, upstream 0.3.1's choice) — x̂ and the hidden
  activations rounded to bf16 for the two products, weights cached in bf16; ``"tf32"`` — fp32
  operands on the TF32 tensor-core path (measured 2.7× slower on an H200 and not more accurate in
  our tests); ``"ieee"`` — exact fp32 products on the ordinary FP32 units (slow; parity checks).
  The residual, conv and normalisation stay fp32 throughout.

With half-precision operands (bf16/fp16 input, or ``fp32_dot="bf16"``) GELU uses the hardware
``tanh.approx.f32`` (relative error ~2^-11, below the operand rounding that follows); the fp32
modes use the exact ``z·sigmoid(·)`` form.

Derived weights (``W1ᵀ`` and ``(s·W2)ᵀ``, contiguous, in the dot dtype) are cached per weight pair
and invalidated by the weights' version counters and storage pointers (spec §7.4 #11): any in-place
update through the tensor (optimizer step, ``copy_`` under ``no_grad``, ``load_state_dict``) bumps
the version. Writes through ``param.data`` bypass version counters; call
:func:`clear_derived_weight_cache` after such edits.

Eligibility (:func:`cheri_infer_eligible`): CUDA tensors, Triton importable, grad disabled,
``16 ≤ C ≤ 512``, ``H % 16 == 0``, fp32/bf16/fp16 input. Callers fall back silently otherwise.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from strandwise.kernels import _host
from strandwise.kernels._host import DIRECT, INTERPRETING, cdiv, env_flag, next_pow2
from strandwise.kernels.conv_norm import CONV_NORM_EPS, _cheri_conv_norm_cpu, triton_available

__all__ = [
    "cheri_block_inference",
    "cheri_infer_eligible",
    "cheri_block_reference",
    "clear_derived_weight_cache",
    "FP32_DOT_MODES",
]

FP32_DOT_MODES = ("tf32", "bf16", "ieee")
_MAX_C = 512


def cheri_block_reference(x, conv_weight, w1, w2, dilation, residual_scale=0.15, eps=CONV_NORM_EPS):
    """Plain-PyTorch block forward (the CPU path's arithmetic), any device.

    Parameters
    ----------
    x : torch.Tensor, shape (N, L, C)
    conv_weight : torch.Tensor, shape (3, C)
    w1 : torch.Tensor, shape (H, C)
    w2 : torch.Tensor, shape (C, H)
    dilation : int
    residual_scale : float

    Returns
    -------
    torch.Tensor, shape (N, L, C), dtype of ``x``.
    """
    h = _cheri_conv_norm_cpu(x, conv_weight, dilation, eps)
    h = F.linear(F.gelu(F.linear(h, w1.to(h.dtype)), approximate="tanh"), w2.to(h.dtype))
    return x + residual_scale * h


def block_shapes_ok(x, conv_weight, w1, w2, max_c: int) -> bool:
    """The block kernels' common eligibility: ``x`` a CUDA ``(N, L, C)`` tensor with
    ``16 ≤ C ≤ max_c``, ``W1 (H, C)`` with ``H`` a positive multiple of 16, ``W2 (C, H)``, conv
    taps ``(3, C)``, all on ``x``'s device. Shared with :mod:`strandwise.kernels.cheri_train`."""
    if not isinstance(x, torch.Tensor) or not x.is_cuda or x.ndim != 3:
        return False
    C, H = x.shape[-1], w1.shape[0]
    if not (16 <= C <= max_c) or H == 0 or H % 16 != 0:
        return False
    if tuple(w1.shape) != (H, C) or tuple(w2.shape) != (C, H) or tuple(conv_weight.shape) != (3, C):
        return False
    return all(t.device == x.device for t in (conv_weight, w1, w2))


def cheri_infer_eligible(x, conv_weight, w1, w2) -> bool:
    """True iff the inference megakernel can run on these tensors (no error is ever raised)."""
    try:
        if torch.is_grad_enabled() or not block_shapes_ok(x, conv_weight, w1, w2, _MAX_C):
            return False
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return False
        return triton_available()
    except Exception:  # pragma: no cover - defensive: eligibility must never raise
        return False


# ------------------------------------------------------------------------------ weight cache

_CACHE: dict = {}


def clear_derived_weight_cache() -> None:
    """Drop every cached derived weight — the blocks' and the stem's (needed only after edits
    through ``param.data``)."""
    _CACHE.clear()


def cached_derived(weights: tuple, tag: tuple, build):
    """``build()`` (under ``no_grad``), cached per ``(tag, weights)`` and re-derived when any
    weight's version counter, storage pointer, shape, dtype or device changes (spec §7.4 #11).

    The one cache behind every derived-weight copy of the kernels (the megakernel's and the fused
    training block's ``W1ᵀ``/``(s·W2)ᵀ``, the stem's stacked weights);
    :func:`clear_derived_weight_cache` empties it. While the current CUDA stream is capturing a
    graph, nothing is cached or reused: the copy is derived inside the graph, so every replay
    derives it from the weights as they are then.
    """
    if weights[0].is_cuda and torch.cuda.is_current_stream_capturing():
        # Under CUDA-graph capture the derivation must be recorded into the graph: a cache hit
        # would bake this tensor in, and replays after an optimizer step would read stale weights.
        with torch.no_grad():
            return build()
    key = (tag, *(id(w) for w in weights))
    stamp = tuple((w._version, w.data_ptr(), tuple(w.shape), w.dtype, w.device) for w in weights)
    hit = _CACHE.get(key)
    if hit is not None:
        refs, old_stamp, value = hit
        if old_stamp == stamp and all(r() is w for r, w in zip(refs, weights)):
            return value
    with torch.no_grad():
        value = build()
    if len(_CACHE) > 512:  # bounded: stale entries of dead models go eventually
        _CACHE.clear()
    _CACHE[key] = (tuple(weakref.ref(w) for w in weights), stamp, value)
    return value


def _derived_weights(w1, w2, scale: float, dtype: torch.dtype):
    """``(W1ᵀ (C, H), (s·W2)ᵀ (H, C))`` contiguous in ``dtype``, cached with version checks."""

    def build():
        return (w1.detach().t().to(dtype).contiguous(),
                (w2.detach().float() * float(scale)).t().to(dtype).contiguous())

    return cached_derived((w1, w2), ("mlp", float(scale), dtype), build)


# ------------------------------------------------------------------------------ Triton part

def _kernels():
    """The Triton module, imported lazily (Triton is an optional, GPU-only dependency)."""
    from strandwise.kernels import cheri_infer_triton

    return cheri_infer_triton


def heuristic_only(dot: int, prec: str) -> bool:
    """fp32 operands with the split (``tf32x3``) or exact (``ieee``) products launch the heuristic
    config (:func:`smem_ladder`), not the autotuner: tuning them hit an illegal memory access on an
    H100 (Triton 3.6, BENCHMARKS.md Round 11) while the heuristic configs pass the parity tests."""
    return dot == 1 and prec in ("tf32x3", "ieee")


def smem_ladder(meta: dict, num_stages: int, fp32_ops: bool):
    """``(meta, num_stages)`` of a heuristic launch, then (fp32 operands only) smaller shared-memory
    footprints: two stages, then hidden chunks halved down to 16. fp32 weight chunks take twice
    the bytes of bf16 ones: the bf16 choice needed 256 KiB at C = 128 (H100, tf32x3), over sm_90's
    227 KiB."""
    yield meta, num_stages
    if not fp32_ops:
        return
    if num_stages > 2:
        yield meta, 2
    bh = meta["BLOCK_H"]
    while bh > 16:
        bh //= 2
        yield dict(meta, BLOCK_H=bh), 2


def launch_first_fitting(launch, ladder) -> None:
    """``launch(meta, num_stages)`` for each step of ``ladder`` until one compiles within the
    GPU's shared memory; the last step's error propagates."""
    from triton.runtime.errors import OutOfResources

    error = None
    for meta, ns in ladder:
        try:
            launch(meta, ns)
            return
        except OutOfResources as exc:
            error = exc
    raise error


def _heuristic(bc: int, H: int):
    bm = max(32, min(128, 8192 // bc))
    nw = max(4, min(16, bm * bc // (32 * 64)))
    return {"BLOCK_M": bm, "BLOCK_H": 64 if H >= 64 else 32 if H >= 32 else 16, "RELOAD_RES": 1}, nw


def _infer_impl(x, conv_weight, w1, w2, dilation: int, residual_scale: float, eps: float, fp32_dot: str):
    cnt = _kernels().cnt
    x = x.contiguous()
    N, L, C = x.shape
    H = w1.shape[0]
    out = torch.empty_like(x)
    if x.numel() == 0:
        return out
    cw = conv_weight.contiguous()
    mean, rstd = cnt.conv_norm_stats(x, cw, dilation, eps)
    if x.dtype == torch.float32:
        dot, prec = (0, "ieee") if fp32_dot == "bf16" else (1, fp32_dot)
        wdtype = torch.bfloat16 if fp32_dot == "bf16" else torch.float32
    else:
        dot, prec, wdtype = 0, "ieee", x.dtype
    if inference_mlp_pass(x, H, fp32_dot) == "gluon":
        w1t, w2t = _derived_weights(w1, w2, residual_scale, wdtype)
        try:
            launch_gluon_kernel(x, cw, w1t, w2t, mean, rstd, out, int(dilation))
            return out
        except Exception as e:  # a compile or launch failure (before anything ran): the Triton pass
            _gluon_failed(e)
    half = int(half_w2_ok(dot, wdtype))
    # HALF_W2: the kernel multiplies 2·GELU(z) by ½·(s·W2)ᵀ, bit-identical to GELU(z)·(s·W2)ᵀ
    w1t, w2t = _derived_weights(w1, w2, residual_scale * (0.5 if half else 1.0), wdtype)
    launch_block_kernel((x, cw, w1t, w2t, mean, rstd, out, out, out, out, N * L, L, C, H, int(dilation)),
                        dot, prec, half_w2=half)
    return out


def half_w2_ok(dot: int, wdtype: torch.dtype) -> bool:
    """Whether the inference pass folds the GELU's ½ into its cached ``(s·W2)ᵀ`` (``HALF_W2``):
    bf16 operands only, where halving a weight and doubling a hidden value are exact (bf16 has
    fp32's exponent range; fp16's narrower one would make tiny halved weights subnormal and round
    them). Off with ``STRANDWISE_HALF_W2=0``."""
    return dot == 0 and wdtype == torch.bfloat16 and _HALF_W2["on"]


_HALF_W2 = {"on": env_flag("STRANDWISE_HALF_W2", True)}


# Hopper Gluon variant of the MLP pass (strandwise.kernels.cheri_infer_gluon). Automatic (None):
# the warp-specialised kernel wherever the products take half-precision operands (bf16/fp16 input,
# and fp32 input with the default bf16 dots) on compute capability 9.0, where it measured faster
# than the Triton megakernel (H100: block bf16 0.378 -> 0.278 ms, fp32 0.531 -> 0.454; whole-model
# inference bf16 60,452 -> 68,639 seq/s in round 17, fp32 45,979 -> 48,148 in round 20;
# BENCHMARKS.md, Cherimoya rounds 17, 19, 20). Until round 20 fp32 input stayed on the
# megakernel after round 17's whole-model figure (38.4k vs 46.2k seq/s), which did not reproduce.
# STRANDWISE_GLUON_INFER=0 (or set_gluon_inference(False)) turns it off, =1 (True) on, unset
# (None) automatic: today the same eligible calls as on.
_GLUON = {"on": env_flag("STRANDWISE_GLUON_INFER", None)}
GLUON_SMEM_BUDGET = 160 * 1024  # both weights resident in shared memory (bytes)
GLUON_BLOCK_H = 128  # widest hidden chunk (H's widest power-of-two divisor up to this, see _gluon_geometry)
GLUON_COALESCED = True  # residual read and out written in 16-byte row pieces (x too in the plain kernel)
#: Warp-specialised variant (cheri_infer_gluon.mlp_kernel_gluon_ws): 0 = the plain Gluon kernel
#: (8 warps walking tiles together), 2 or 3 = that many one-warpgroup partitions per program
#: sharing the resident weights. 2 measured fastest (3 partitions at 168 registers spill with the
#: chunk loop unrolled).
GLUON_WS = 2
GLUON_PIPE = 1  # 1 = hand-pipelined products (two z chunks live), 0 = one chunk at a time
GLUON_WS_REGS = None  # registers per thread for each worker partition; None: 240 for 2 partitions, 168 for 3
#: GELU on packed pairs of the input's half-precision type (bf16x2 / f16x2 arithmetic and
#: tanh.approx) for bf16/fp16 input (H100: bf16 block 0.301 -> 0.278 ms, whole model +3.5 %,
#: Cherimoya rounds 18 and 19); fp32 input (bf16 dots) keeps the fp32 GELU, where the packed one
#: measured 2 % slower (round 18). Off with STRANDWISE_GLUON_PACKED_GELU=0 (then the GELU is the
#: megakernel's, in fp32).
GLUON_PACKED_GELU = env_flag("STRANDWISE_GLUON_PACKED_GELU", True)
#: Experimental, off until timed: the warp-specialised kernel keeps each tile's centre tap (the
#: residual) in a shared-memory tile of its partition instead of re-reading it from L2 after the
#: products (offline sm_90: 16 fewer global loads in the loop, 229,380 bytes of shared memory at
#: C = 128, 224 bytes of stack vs 216). Only where it fits (with coalesced I/O).
GLUON_RES_SMEM = False


def _gluon_weight_bytes(bc: int, bh: int, nh: int) -> int:
    """Shared memory of the resident W1ᵀ and (s·W2)ᵀ, 16-bit, zero-padded to the geometry."""
    return 2 * bc * bh * nh * 2


def _gluon_res_smem(npart: int, bc: int, weight_bytes: int) -> int:
    fits = weight_bytes + npart * 64 * bc * 2 * 2 <= 196 * 1024
    return int(bool(GLUON_RES_SMEM) and npart > 0 and bool(GLUON_COALESCED) and fits)


def gluon_packed_gelu(x_dtype: torch.dtype) -> int:
    """1 when the Gluon pass computes GELU on packed half-precision pairs for this input dtype."""
    return int(bool(GLUON_PACKED_GELU) and x_dtype in (torch.bfloat16, torch.float16))


def _gluon_failed(e: Exception) -> None:
    """Switch the Gluon pass off for this process after it failed to compile or launch, with one
    warning; the caller then runs the Triton megakernel (same results)."""
    import warnings

    _GLUON["on"] = False
    warnings.warn(f"strandwise: the Gluon inference kernel failed ({type(e).__name__}: {str(e)[:200]}); "
                  "using the Triton kernel from now on (STRANDWISE_GLUON_INFER=0 silences this)",
                  RuntimeWarning, stacklevel=3)


def set_gluon_inference(on) -> None:
    """Use (``True``), not (``False``) or automatically (``None``: wherever eligible, i.e. with
    half-precision operands, fp32 input's default bf16 dots included) the Hopper Gluon kernel for
    the inference MLP pass."""
    _GLUON["on"] = None if on is None else bool(on)


def _gluon_geometry(C: int, H: int, block_h: int | None = None):
    """``(BLOCK_C, BLOCK_H, NUM_H)``: hidden chunks of ``block_h`` (default :data:`GLUON_BLOCK_H`)
    or the widest power of two below it that divides H."""
    widest = block_h or GLUON_BLOCK_H
    bc = max(16, next_pow2(C))
    bh = widest
    while bh > 16 and H % bh:  # the widest chunk that divides H (no zero-padded hidden columns)
        bh //= 2
    if H % bh:
        bh = min(widest, max(16, next_pow2(H)))
    nh = cdiv(H, bh)
    return bc, bh, nh


def inference_mlp_pass(x, H: int, fp32_dot: str = "bf16") -> str:
    """Which MLP pass :func:`cheri_block_inference` runs for ``x`` (N, L, C) and hidden width H:
    ``"gluon"`` (half-precision operands and :func:`gluon_mlp_ok`) or ``"triton"``."""
    half_ops = x.dtype != torch.float32 or fp32_dot == "bf16"
    return "gluon" if half_ops and gluon_mlp_ok(x, x.shape[-1], H) else "triton"


def gluon_mlp_ok(x, C: int, H: int) -> bool:
    """Whether the Gluon MLP kernel runs: not switched off, C ≥ 32, compute capability 9.0
    (wgmma), not under the interpreter, Gluon importable, and both weights (zero-padded) within
    :data:`GLUON_SMEM_BUDGET` of shared memory (with the warp-specialised kernel's x̂ buffers
    within the SM's 227 KB). Half-precision operands are the caller's condition
    (:func:`inference_mlp_pass`)."""
    on = _GLUON["on"]
    if on is False or INTERPRETING or not x.is_cuda or C < 32:
        return False  # C < 32: not covered by the GPU parity tests
    if torch.cuda.get_device_capability(x.device) != (9, 0):
        return False
    bc, bh, nh = _gluon_geometry(C, H)
    weight_bytes = _gluon_weight_bytes(bc, bh, nh)
    if weight_bytes > GLUON_SMEM_BUDGET:
        return False
    if GLUON_WS and weight_bytes + int(GLUON_WS) * 64 * bc * 2 > 200 * 1024:
        return False  # plus the partitions' x̂ buffers and layout-conversion scratch
    if not GLUON_WS and GLUON_COALESCED and weight_bytes + 128 * bc * 4 > 220 * 1024:
        return False  # plus the layout-conversion scratch (an fp32 tile at 8 warps)
    try:
        import strandwise.kernels.cheri_infer_gluon  # noqa: F401
    except Exception:
        return False
    return True


def gluon_ws_regs(npart: int) -> int:
    """Registers per thread requested for each partition: :data:`GLUON_WS_REGS`, else 240 for two
    partitions and 168 for three."""
    return int(GLUON_WS_REGS) if GLUON_WS_REGS else (240 if npart == 2 else 168)


def launch_gluon_kernel(x, cw, w1t, w2t, mean, rstd, out, dilation: int, num_warps: int = 8) -> None:
    """One persistent program per SM (:mod:`strandwise.kernels.cheri_infer_gluon`); with
    :data:`GLUON_WS` the warp-specialised kernel (that many 4-warp partitions a program)."""
    from strandwise.kernels import cheri_infer_gluon as cig

    N, L, C = x.shape
    H = w1t.shape[1]
    bc, bh, nh = _gluon_geometry(C, H)
    npart = int(GLUON_WS)
    bm = 64 if npart else 16 * num_warps
    NL = N * L
    tiles = cdiv(NL, bm)
    even = int(NL % bm == 0 and C == bc)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    common = dict(BLOCK_M=bm, BLOCK_C=bc, BLOCK_H=bh, NUM_H=nh, COALESCED=GLUON_COALESCED,
                  TPW_C=min(32, bc // 8), PIPE=int(GLUON_PIPE), EVEN=even,
                  PACKED=gluon_packed_gelu(x.dtype))

    # no run_with_fast_gelu here: a failure must not switch the hardware tanh off for the Triton
    # kernels too; _infer_impl falls back to the Triton pass instead
    fast = fast_gelu_ok()
    if npart:
        regs = gluon_ws_regs(npart)
        grid = (max(1, min(cdiv(tiles, npart), sms)),)
        res = _gluon_res_smem(npart, bc, _gluon_weight_bytes(bc, bh, nh))
        cig.mlp_kernel_gluon_ws[grid](x, cw, w1t, w2t, mean, rstd, out, NL, L, C, H, dilation, tiles,
                                      FAST_GELU=fast, NPART=npart, REGS=regs, RES_SMEM=res,
                                      num_warps=4, **common)
    else:
        cig.mlp_kernel_gluon[(min(tiles, sms),)](x, cw, w1t, w2t, mean, rstd, out, NL, L, C, H, dilation,
                                                 tiles, FAST_GELU=fast, num_warps=num_warps, **common)


_FAST_GELU = {"ok": True}


def fast_gelu_ok() -> bool:
    """Whether the hardware-tanh GELU is used (it needs inline PTX: not under the interpreter, and
    off for the process once a compile of it failed)."""
    return _FAST_GELU["ok"] and not INTERPRETING


def run_with_fast_gelu(launch, fast: bool) -> None:
    """``launch(fast)``; if the hardware-tanh form fails to compile, switch it off for good and
    launch again with the exp form."""
    try:
        launch(fast)
    except Exception:
        if not fast:
            raise
        _FAST_GELU["ok"] = False
        launch(False)


def full_tiles(NL: int, C: int) -> bool:
    """Whether every (BLOCK_M, BLOCK_C) tile of an (NL, C) activation is full, so the MLP kernel
    may run its unmasked ``EVEN`` variant: every BLOCK_M the autotuner keeps and the heuristic
    picks (32, 64 or 128; ``cheri_infer_triton.prune_full``) divides 128, and BLOCK_C is C's
    next power of two."""
    return NL % 128 == 0 and C == max(16, next_pow2(C))


def launch_block_kernel(args: tuple, dot: int, prec: str, save: int = 0, half_w2: int = 0) -> None:
    """Launch the block kernel (:func:`cheri_infer_triton.mlp_kernel`) over ``args`` =
    ``(x, cw, W1ᵀ, (s·W2)ᵀ, mean, rstd, out, xn, z, h, N·L, L, C, H, dilation)``; ``save=1`` also
    stores x̂, z and h (the training forward, :mod:`strandwise.kernels.cheri_train`);
    ``half_w2=1``: the fourth tensor is ``½·(s·W2)ᵀ`` (inference only, :func:`half_w2_ok`)."""
    k = _kernels()
    NL, C, H = args[10], args[12], args[13]
    bc = max(16, next_pow2(C))
    # EVEN goes with the capped configs (STRANDWISE_CAPPED_CONFIGS=0 switches both off)
    even = int(_host.CAPPED_CONFIGS and full_tiles(NL, C))

    def grid(meta):
        return (cdiv(NL, meta["BLOCK_M"]),)

    def launch(fast):
        consts = dict(BLOCK_C=bc, DOT=dot, PRECISION=prec, FAST_GELU=fast, SAVE=save, EVEN=even)
        if half_w2:  # only when set: the kernel's default, so other launches keep their keys
            consts["HALF_W2"] = 1
        if k.cnt.autotune_enabled() and not heuristic_only(dot, prec):
            DIRECT.call(k.mlp_kernel_tuned, grid, args, consts)
        else:
            meta, nw = _heuristic(bc, H)
            # 3 stages: the sweep's best at C=128 (0.320 vs 0.334 ms with 2, bf16, H200)
            ns = 3 if H // meta["BLOCK_H"] >= 2 else 2
            launch_first_fitting(
                lambda m, n: DIRECT.call(k.mlp_kernel, grid, args, dict(consts, num_warps=nw, num_stages=n, **m)),
                smem_ladder(meta, ns, fp32_ops=dot == 1))

    run_with_fast_gelu(launch, dot == 0 and fast_gelu_ok())


@torch.library.custom_op("strandwise::cheri_block_infer", mutates_args=())
def _infer_op(
    x: torch.Tensor, conv_weight: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
    dilation: int, residual_scale: float, eps: float, fp32_dot: str,
) -> torch.Tensor:
    return _infer_impl(x, conv_weight, w1, w2, dilation, residual_scale, eps, fp32_dot)


@_infer_op.register_fake
def _(x, conv_weight, w1, w2, dilation, residual_scale, eps, fp32_dot):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def cheri_block_inference(
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    dilation: int,
    residual_scale: float = 0.15,
    eps: float = CONV_NORM_EPS,
    fp32_dot: str = "bf16",
) -> torch.Tensor:
    """Whole Cheri Block forward without autograd, in one fused Triton pass (plus a stats prepass).

    Parameters
    ----------
    x : torch.Tensor, shape (N, L, C), CUDA, fp32/bf16/fp16 (made contiguous if it is not)
    conv_weight : torch.Tensor, shape (3, C)
    w1 : torch.Tensor, shape (H, C) — ``linear1.weight``
    w2 : torch.Tensor, shape (C, H) — ``linear2.weight``
    dilation : int
    residual_scale : float
    eps : float
    fp32_dot : {"tf32", "bf16", "ieee"}
        Matrix-product precision for fp32 input (ignored for bf16/fp16 input).

    Returns
    -------
    torch.Tensor, shape (N, L, C), dtype of ``x``.

    Raises
    ------
    ValueError
        If the tensors are not eligible (see :func:`cheri_infer_eligible`) or ``fp32_dot`` is
        unknown. Callers that want a silent fallback check eligibility first.
    """
    if fp32_dot not in FP32_DOT_MODES:
        raise ValueError(f"fp32_dot must be one of {FP32_DOT_MODES}; got {fp32_dot!r}")
    if not cheri_infer_eligible(x, conv_weight, w1, w2):
        raise ValueError(
            "cheri_block_inference needs CUDA fp32/bf16/fp16 x (N, L, C) with 16 <= C <= 512, "
            "H % 16 == 0, matching weight shapes, Triton, and grad disabled"
        )
    if isinstance(dilation, bool) or int(dilation) < 1:
        raise ValueError(f"dilation must be a positive int; got {dilation!r}")
    return _infer_op(x, conv_weight, w1, w2, int(dilation), float(residual_scale), float(eps), fp32_dot)
