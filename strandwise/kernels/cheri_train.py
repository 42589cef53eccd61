"""Fused training path of a whole Cheri Block for bf16/fp16 activations on CUDA.

``out = x + gelu_tanh(x̂ · W1ᵀ) · (s·W2)ᵀ``, ``x̂ = norm(conv(x))``, on channels-last ``(N, L, C)``,
as one autograd Function (:class:`CheriBlockTrainFunc`):

Forward — the inference megakernel's two passes (:mod:`strandwise.kernels.cheri_infer`) with
``SAVE=1``: the stats prepass, then one kernel that recomputes the conv, normalises, runs both
products and the GELU on chip and writes ``out`` plus what the backward reads — ``x̂`` (N, L, C)
and the pre-activation ``z`` and ``h = gelu(z)`` (N, L, H), exactly the products' operands. The
unfused path writes the same three tensors and also the conv-norm output pass, the GELU pass, the
second product's output and the residual add.

Backward — three steps:

1. :func:`cheri_train_triton.mlp_bwd_kernel`: ``dz = (dout · (s·W2)) ⊙ gelu'(z)`` and
   ``dx̂ = dz · W1`` per row tile; ``dh`` never reaches memory;
2. ``dW1 = dzᵀ · x̂`` and ``dW2 = s · doutᵀ · h`` (cuBLAS, fp32 accumulation);
3. the conv-norm backward (:func:`conv_norm_triton.conv_norm_bwd`) on ``dx̂`` with the residual
   branch's ``dout`` added inside its last kernel (no separate add).

Precision: the two products take operands in the activations' dtype with fp32 accumulation (as
cuBLAS under autocast); conv, statistics, GELU and the residual add run in fp32 and each result is
rounded once to the activations' dtype (the unfused path rounds the second product's output and
the residual sum separately). GELU uses the hardware ``tanh.approx`` where it compiles.
Weight gradients come back in the weights' dtype (fp32 parameters under autocast).

When it runs: by default (``Cherimoya.set_fused_training(False)`` or ``block.fused_training =
False`` switches it off), as :func:`cheri_train_eligible` says (checked by
:class:`strandwise.models.CheriBlock`, which also skips it with module hooks and under
``torch.compile``): CUDA, Triton, grad enabled, bf16/fp16 activations (autocast's dtype, if autocast is on),
``16 ≤ C ≤ 256``, ``H % 16 == 0``. fp32 activations keep the cuBLAS path by default (exact fp32
products with TF32 off).

fp32, opt-in and slower than the default (:func:`set_fused_training_fp32`, or
``STRANDWISE_FUSED_FP32=1`` or a precision name in the environment before import; H100
forward+backward at N=512, L=1024, C=128: 9.45 ms with ``tf32x3`` against 6.89 for the cuBLAS
fp32 path, BENCHMARKS.md Round 11): fp32
activations (autocast off) take the fused path too. Its two products in each kernel run on tensor
cores through Triton's three-term TF32 split, ``"tf32x3"`` (default; fp32-level accuracy), or
run as exact fp32 FMAs, ``"ieee"`` (slow). Triton's ``"bf16x3"`` and ``"bf16x6"`` splits are not
offered: in these kernels they returned wrong products on an H100 (Triton 3.6; relative errors
0.27 and 5.5 against float64, BENCHMARKS.md Round 11). With ``torch.backends.cuda.matmul.allow_tf32 = True`` they take plain ``"tf32"``, as cuBLAS
would. The weight gradients stay cuBLAS fp32 products, which follow PyTorch's TF32 setting.
Activations saved for the backward are fp32: twice the bytes of the bf16 path.
"""

from __future__ import annotations

import os

import torch
from torch.autograd.function import once_differentiable

from strandwise.kernels._host import DIRECT, cdiv, next_pow2
from strandwise.kernels.cheri_infer import (
    _derived_weights, block_shapes_ok, fast_gelu_ok, heuristic_only, launch_block_kernel,
    launch_first_fitting, run_with_fast_gelu, smem_ladder,
)
from strandwise.kernels.conv_norm import CONV_NORM_EPS, triton_available

__all__ = ["CheriBlockTrainFunc", "cheri_block_train", "cheri_train_eligible", "set_fused_training_fp32",
           "fp32_train_precision", "FP32_TRAIN_PRECISIONS"]

_MAX_C = 256

#: Product precisions the fp32 fused path can use (Triton ``input_precision`` names).
FP32_TRAIN_PRECISIONS = ("tf32x3", "ieee")


def _fp32_from_env() -> dict:
    """``STRANDWISE_FUSED_FP32``: ``0`` (default) or ``1`` (on, ``tf32x3``) or a precision name."""
    v = os.environ.get("STRANDWISE_FUSED_FP32", "0").strip()
    if v in ("0", ""):
        return {"on": False, "precision": "tf32x3"}
    if v == "1":
        return {"on": True, "precision": "tf32x3"}
    if v in FP32_TRAIN_PRECISIONS:
        return {"on": True, "precision": v}
    raise ValueError(f"STRANDWISE_FUSED_FP32 must be 0, 1 or one of {FP32_TRAIN_PRECISIONS}; got {v!r}")


_FP32 = _fp32_from_env()


def set_fused_training_fp32(enabled: bool, precision: str = "tf32x3") -> None:
    """Let fp32 activations (autocast off) take the fused training path (module docstring), with
    ``precision`` for its products while TF32 matmuls are off."""
    if precision not in FP32_TRAIN_PRECISIONS:
        raise ValueError(f"precision must be one of {FP32_TRAIN_PRECISIONS}; got {precision!r}")
    _FP32["on"] = bool(enabled)
    _FP32["precision"] = precision


def fp32_train_precision() -> str:
    """The fp32 fused path's product precision now: ``"tf32"`` when PyTorch allows TF32 matmuls,
    else the one chosen with :func:`set_fused_training_fp32`."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else _FP32["precision"]


def cheri_train_eligible(x, conv_weight, w1, w2) -> bool:
    """True iff :func:`cheri_block_train` can run on these tensors (never raises)."""
    try:
        if not block_shapes_ok(x, conv_weight, w1, w2, _MAX_C):
            return False
        if x.dtype == torch.float32:
            if not _FP32["on"] or torch.is_autocast_enabled("cuda"):
                return False
        elif x.dtype not in (torch.bfloat16, torch.float16):
            return False
        elif torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") != x.dtype:
            return False
        if not all(t.is_floating_point() for t in (conv_weight, w1, w2)):
            return False
        return triton_available()
    except Exception:  # pragma: no cover - defensive: eligibility must never raise
        return False


def _kernels():
    from strandwise.kernels import cheri_train_triton

    return cheri_train_triton


def _mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with fp32 output from half operands (cuBLAS accumulates in fp32 either way)."""
    try:
        return torch.mm(a, b, out_dtype=torch.float32)
    # older PyTorch (no out_dtype) or a backend without it (CPU, under the interpreter); other
    # errors, e.g. out of memory, propagate
    except (TypeError, NotImplementedError):
        return torch.mm(a, b).float()


def _dot_mode(dt) -> tuple[int, str]:
    """``(DOT, PRECISION)`` of the block kernels for activations of dtype ``dt``."""
    return (1, fp32_train_precision()) if dt == torch.float32 else (0, "ieee")


def _mlp_backward(dout, z, w1b, w2sb, xn):
    """``(dz (N·L, H), dx̂ (N, L, C), sums (2, N) fp32)`` from the fused backward kernel;
    ``sums`` are the conv-norm backward's ``S1 = Σ dx̂`` and ``S2 = Σ dx̂·x̂`` per example."""
    k = _kernels()
    N, L, C = dout.shape
    H = w1b.shape[0]
    NL = N * L
    dz = torch.empty((NL, H), device=dout.device, dtype=dout.dtype)
    dxn = torch.empty_like(dout)
    bc = max(16, next_pow2(C))

    def grid(meta):
        return (cdiv(NL, meta["BLOCK_M"]),)

    rs = torch.empty((2, NL), device=dout.device, dtype=torch.float32)
    args = (dout, z, w1b, w2sb, dz, dxn, xn, rs, NL, C, H)
    dot, prec = _dot_mode(dout.dtype)

    def launch(fast):
        consts = dict(BLOCK_C=bc, FAST_GELU=fast, DOT=dot, PRECISION=prec)
        if k.cnt.autotune_enabled() and not heuristic_only(dot, prec):
            DIRECT.call(k.mlp_bwd_kernel_tuned, grid, args, consts)
        else:
            bh = k.cit._widest_chunk(H)
            bm = 64 if bc <= 128 else 32
            launch_first_fitting(
                lambda m, n: DIRECT.call(k.mlp_bwd_kernel, grid, args, dict(consts, num_warps=4, num_stages=n, **m)),
                smem_ladder({"BLOCK_H": bh, "BLOCK_M": bm}, 3 if H // bh >= 2 else 2, fp32_ops=dot == 1))

    # hardware tanh only under half-precision rounding (as the forward)
    run_with_fast_gelu(launch, dot == 0 and fast_gelu_ok())
    return dz, dxn, rs.view(2, N, L).sum(dim=2)


class CheriBlockTrainFunc(torch.autograd.Function):
    """``apply(x, conv_weight, w1, w2, dilation, residual_scale, eps) -> out`` (module docstring).

    Saves ``x``, the per-example statistics, ``x̂``, ``z`` and ``h`` (the unfused path saves the
    same activations: ``x`` for the conv-norm, ``x̂``, ``z``, ``h`` for the two linears and GELU).
    """

    @staticmethod
    def forward(ctx, x, conv_weight, w1, w2, dilation, residual_scale, eps):
        from strandwise.kernels import conv_norm_triton as cnt

        dt = x.dtype
        x = x.contiguous()
        N, L, C = x.shape
        H = w1.shape[0]
        cw = conv_weight.detach().contiguous()
        s = float(residual_scale)
        out = torch.empty_like(x)
        xn = torch.empty_like(x)
        z = torch.empty((N, L, H), device=x.device, dtype=dt)
        h = torch.empty_like(z)
        if x.numel():
            mean, rstd = cnt.conv_norm_stats(x, cw, dilation, eps)
            w1t, w2st = _derived_weights(w1, w2, s, dt)  # W1ᵀ (C, H), (s·W2)ᵀ (H, C)
            dot, prec = _dot_mode(dt)
            launch_block_kernel((x, cw, w1t, w2st, mean, rstd, out, xn, z, h, N * L, L, C, H, int(dilation)),
                                dot=dot, prec=prec, save=1)
        else:
            mean = rstd = torch.zeros((N,), device=x.device, dtype=torch.float32)
        ctx.save_for_backward(x, cw, mean, rstd, xn, z, h, w1, w2)
        ctx.dilation = int(dilation)
        ctx.scale = s
        ctx.cw_dtype = conv_weight.dtype
        return out

    @staticmethod
    @once_differentiable  # Triton kernels: a second derivative raises instead of coming out wrong
    def backward(ctx, dout):
        from strandwise.kernels import conv_norm_triton as cnt

        x, cw, mean, rstd, xn, z, h, w1, w2 = ctx.saved_tensors
        dt = x.dtype
        N, L, C = x.shape
        H = w1.shape[0]
        dout = dout.to(dt).contiguous()
        if x.numel() == 0:
            return (torch.zeros_like(x), torch.zeros(cw.shape, device=x.device, dtype=ctx.cw_dtype),
                    torch.zeros_like(w1), torch.zeros_like(w2), None, None, None)
        w1b = w1.detach().to(dt).contiguous()                                # (H, C)
        w2sb = (w2.detach().float() * ctx.scale).to(dt).contiguous()         # (C, H)
        dz, dxn, sums = _mlp_backward(dout, z, w1b, w2sb, xn)
        NL = N * L
        dw1 = dw2 = None
        with torch.autocast("cuda", enabled=False):  # a backward() called under autocast
            if ctx.needs_input_grad[2]:
                dw1 = _mm_f32(dz.t(), xn.view(NL, C)).to(w1.dtype)             # (H, C)
            if ctx.needs_input_grad[3]:
                dw2 = _mm_f32(dout.view(NL, C).t(), h.view(NL, H)).mul_(ctx.scale).to(w2.dtype)  # (C, H)
        dx, dcw = cnt.conv_norm_bwd(dxn, x, cw, mean, rstd, ctx.dilation, residual=dout, sums=sums)
        return dx, dcw.to(ctx.cw_dtype), dw1, dw2, None, None, None


def cheri_block_train(x, conv_weight, w1, w2, dilation: int, residual_scale: float = 0.15,
                      eps: float = CONV_NORM_EPS) -> torch.Tensor:
    """Whole Cheri Block forward with autograd, fused (module docstring).

    Parameters
    ----------
    x : torch.Tensor, shape (N, L, C), CUDA, bf16/fp16 (fp32 with :func:`set_fused_training_fp32`)
    conv_weight : torch.Tensor, shape (3, C)
    w1 : torch.Tensor, shape (H, C) — ``linear1.weight``
    w2 : torch.Tensor, shape (C, H) — ``linear2.weight``
    dilation : int
    residual_scale : float

    Returns
    -------
    torch.Tensor, shape (N, L, C), dtype of ``x``.

    Raises
    ------
    ValueError
        If the tensors are not eligible (:func:`cheri_train_eligible`); callers that want a
        silent fallback check eligibility first.
    """
    if not cheri_train_eligible(x, conv_weight, w1, w2):
        raise ValueError(
            "cheri_block_train needs CUDA bf16/fp16 x (or fp32 with set_fused_training_fp32(True) and "
            "autocast off), shape (N, L, C) with 16 <= C <= 256, H % 16 == 0, matching weight shapes "
            "on x's device, Triton, and autocast off or in x's dtype"
        )
    if isinstance(dilation, bool) or int(dilation) < 1:
        raise ValueError(f"dilation must be a positive int; got {dilation!r}")
    return CheriBlockTrainFunc.apply(x, conv_weight, w1, w2, int(dilation), float(residual_scale), float(eps))
