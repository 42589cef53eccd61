"""No-grad CUDA path of the Cherimoya stem: ``gelu_tanh(conv1d(X, W, b, padding=k//2))``.

``X (N, C_in, L)`` → ``h (N, L, F)`` channels-last, in one Triton pass (the kernel is in
:mod:`strandwise.kernels.stem_triton`). The training path (``Cherimoya._forward_channels_last``)
builds an unfolded copy of ``X`` (N, L, C_in·k), multiplies it by the weight with cuBLAS and runs
the GELU as a third pass; this kernel gathers each position's window from ``X`` directly, so the
only large memory traffic is the single write of ``h``.

Precision (fp32 accumulation always):

* bf16 / fp16 compute (autocast, or a half-precision model): operands in that dtype, one product —
  what cuBLAS does for the training path;
* fp32: each operand split into two bf16 terms and three products accumulated
  (``a_hi·w_hi + a_hi·w_lo + a_lo·w_hi``), about 2^-16 relative error per product — between TF32
  (2^-11) and exact fp32; one-hot input is exact in bf16, so only the weight's split rounds.
  ``Cherimoya.set_inference_fp32_dot("ieee")`` keeps the exact cuBLAS path instead.

GELU(tanh) is evaluated in fp32 on the fp32 accumulator plus bias, then rounded once to the output
dtype (the training path under autocast rounds the product to bf16 before the GELU).

Eligibility (:func:`stem_infer_eligible`): CUDA, Triton importable, grad disabled, ``C_in ≤ 8``,
odd kernel width ≤ 64, ``16 ≤ F ≤ 1024``, at most 65,535 examples per call, and the dtype rules
above (without autocast ``X`` must have the weight's dtype, as ``F.linear`` requires). Callers
fall back silently otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from strandwise.kernels._host import INTERPRETING, cdiv, next_pow2
from strandwise.kernels.cheri_infer import cached_derived
from strandwise.kernels.conv_norm import triton_available

__all__ = ["stem_inference", "stem_infer_eligible", "stem_reference", "stem_compute_dtype"]

_HALF = (torch.bfloat16, torch.float16)


def stem_reference(X, weight, bias):
    """``gelu_tanh(conv1d(X, weight, bias, padding=k//2))`` as ``(N, L, F)``, plain PyTorch."""
    k = weight.shape[-1]
    h = F.conv1d(X, weight.to(X.dtype), bias.to(X.dtype), padding=k // 2)
    return F.gelu(h, approximate="tanh").transpose(1, 2).contiguous()


def stem_compute_dtype(X, weight):
    """The dtype the stem computes and returns in, or None when this path does not apply."""
    if X.is_cuda and torch.is_autocast_enabled("cuda"):
        dt = torch.get_autocast_dtype("cuda")
        return dt if dt in _HALF else None
    if X.dtype != weight.dtype or X.dtype not in (torch.float32, *_HALF):
        return None
    return X.dtype


def _shapes_ok(X, weight, bias) -> bool:
    if not isinstance(X, torch.Tensor) or X.ndim != 3 or weight.ndim != 3 or bias is None:
        return False
    Fo, cin, kw = weight.shape
    if weight.shape[1] != X.shape[1] or not (1 <= cin <= 8) or not (1 <= kw <= 64) or kw % 2 == 0:
        return False
    if not (16 <= Fo <= 1024) or tuple(bias.shape) != (Fo,):
        return False
    if X.shape[0] > 65535:  # examples are the launch grid's second axis (CUDA limit 65,535)
        return False
    if weight.device != X.device or bias.device != X.device:
        return False
    return stem_compute_dtype(X, weight) is not None


def stem_infer_eligible(X, weight, bias) -> bool:
    """True iff :func:`stem_inference` can run on these tensors (never raises)."""
    try:
        if torch.is_grad_enabled() or not isinstance(X, torch.Tensor) or not X.is_cuda:
            return False
        return _shapes_ok(X, weight, bias) and triton_available()
    except Exception:  # pragma: no cover - defensive: eligibility must never raise
        return False


def _stacked_weights(weight, taps: int, cin_p: int, dtype, split: bool):
    """``(W_hi, W_lo or W_hi)`` of shape ``(cin_p·taps, F)``, row ``c·taps + t`` = ``W[:, c, t]``
    (zero rows for padding), in the megakernel's derived-weight cache (version-checked)."""

    def build():
        Fo, cin, kw = weight.shape
        w = torch.zeros((cin_p, taps, Fo), device=weight.device, dtype=torch.float32)
        w[:cin, :kw] = weight.detach().float().permute(1, 2, 0)
        w = w.reshape(cin_p * taps, Fo)
        wh = w.to(dtype).contiguous()
        return wh, ((w - wh.float()).to(dtype).contiguous() if split else wh)

    return cached_derived((weight,), ("stem", taps, cin_p, dtype, split), build)


_FAST_GELU = {"ok": True}


def _impl(X, weight, bias, split_dtype, out_dtype):
    from strandwise.kernels import stem_triton as k
    from strandwise.kernels.conv_norm_triton import autotune_enabled

    N, cin, L = X.shape
    Fo, _, kw = weight.shape
    split = out_dtype == torch.float32
    op_dtype = split_dtype if split else out_dtype
    # the A tile is C_IN·TAPS wide: a power of two, at least 16 for the tensor-core product
    cin_p = next_pow2(cin)
    taps = max(next_pow2(kw), cdiv(16, cin_p))
    wh, wl = _stacked_weights(weight, taps, cin_p, op_dtype, split)
    b = bias.detach().float().contiguous()
    out = torch.empty((N, L, Fo), device=X.device, dtype=out_dtype)
    if out.numel() == 0:
        return out
    if cin_p != cin:  # padded input channels read as zeros: give the kernel a zero-padded copy
        Xp = X.new_zeros((N, cin_p, L))
        Xp[:, :cin] = X
        X = Xp
    bf = min(128, max(16, next_pow2(Fo)))
    args = (X, wh, wl, b, out, L, Fo, X.stride(0), X.stride(1), X.stride(2))
    fast = out_dtype in _HALF and _FAST_GELU["ok"] and not INTERPRETING

    def launch(fast_gelu):
        meta = dict(KW=kw, TAPS=taps, C_IN=cin_p, BLOCK_F=bf, SPLIT=split, FAST_GELU=fast_gelu)
        if autotune_enabled() and not INTERPRETING:
            grid = lambda m: (cdiv(L, m["BLOCK_L"]), N, cdiv(Fo, bf))  # noqa: E731
            k.stem_kernel_tuned[grid](*args, **meta)
        else:
            grid = (cdiv(L, 64), N, cdiv(Fo, bf))
            k.stem_kernel[grid](*args, **meta, BLOCK_L=64, num_warps=4)

    try:
        launch(fast)
    except Exception:
        if not fast:
            raise
        _FAST_GELU["ok"] = False  # inline PTX unavailable: the exp form
        launch(False)
    return out


@torch.library.custom_op("strandwise::cherimoya_stem_infer", mutates_args=())
def _stem_op(X: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, split_dtype: torch.dtype,
             out_dtype: torch.dtype) -> torch.Tensor:
    # out_dtype is resolved by the caller, where the autocast state is the user's
    return _impl(X, weight, bias, split_dtype, out_dtype)


@_stem_op.register_fake
def _(X, weight, bias, split_dtype, out_dtype):
    return torch.empty((X.shape[0], X.shape[2], weight.shape[0]), dtype=out_dtype, device=X.device)


def stem_inference(X, weight, bias, split_dtype: torch.dtype = torch.bfloat16):
    """The stem ``gelu_tanh(conv1d(X, weight, bias, padding=k//2))`` as ``(N, L, F)``, no grad.

    Parameters
    ----------
    X : torch.Tensor, shape (N, C_in, L), CUDA
    weight : torch.Tensor, shape (F, C_in, k), k odd
    bias : torch.Tensor, shape (F,)
    split_dtype : torch.dtype
        Half-precision type of the two-term split used for fp32 (bf16; fp16 only for tests under
        Triton's interpreter, which has no bf16 arithmetic).

    Returns
    -------
    torch.Tensor, shape (N, L, F), in the autocast dtype under CUDA autocast, else ``X``'s dtype.

    Raises
    ------
    ValueError
        If the tensors are not eligible (see :func:`stem_infer_eligible`).
    """
    interp_ok = INTERPRETING and not torch.is_grad_enabled() and _shapes_ok(X, weight, bias)
    if not (interp_ok or stem_infer_eligible(X, weight, bias)):
        raise ValueError(
            "stem_inference needs grad disabled, CUDA X (N, C_in <= 8, L), weight (F, C_in, k) with "
            "odd k <= 64 and 16 <= F <= 1024, a bias, and X in the weight's dtype (or autocast)"
        )
    return _stem_op(X, weight, bias, split_dtype, stem_compute_dtype(X, weight))
