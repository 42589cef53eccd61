"""Small ``@triton.jit`` device functions shared by several kernels (imported only with Triton)."""

import triton
import triton.language as tl

__all__ = ["gelu_tanh", "gelu_tanh_grad"]


@triton.jit
def gelu_tanh(z, FAST: tl.constexpr, TWICE: tl.constexpr = 0):
    """GELU(tanh) of an fp32 tile. ``FAST``: one hardware ``tanh.approx.f32`` (relative error
    ~2^-11, below a bf16/fp16 rounding that follows); else the exact, overflow-safe form
    ``z·sigmoid(2·√(2/π)·(z + 0.044715 z³))``. ``TWICE``: return ``2·GELU(z)`` (bit for bit twice
    the value of ``TWICE=0``: a power-of-two scale commutes with rounding), one multiply fewer per
    element for a caller that folds the ½ into the weights the result is multiplied by."""
    if FAST:
        # written for fused multiply-adds: u = z·(√(2/π)·0.044715·z² + √(2/π)), g = ½(z·t + z):
        # five ALU instructions per element instead of seven (offline sm_90, the autotuner's
        # inference tile: 258 -> 227 instructions per hidden chunk of the products' loop)
        u = z * (0.035677408136300125 * (z * z) + 0.7978845608028654)
        th = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [u], dtype=tl.float32,
                                       is_pure=True, pack=1)
        if TWICE:
            g = z * th + z
        else:
            g = 0.5 * (z * th + z)
    else:
        t = 1.5957691216057308 * z * (1.0 + 0.044715 * z * z)
        if TWICE:
            g = (z + z) / (1.0 + tl.exp(-t))
        else:
            g = z / (1.0 + tl.exp(-t))
    return g


@triton.jit
def gelu_tanh_grad(z, FAST: tl.constexpr):
    """d GELU(tanh) / dz of an fp32 tile, in the same two forms as :func:`gelu_tanh`. With
    ``u = √(2/π)·(z + 0.044715 z³)`` and ``t = tanh(u)``:
    ``0.5·(1 + t) + 0.5·z·(1 − t²)·√(2/π)·(1 + 3·0.044715 z²)``; the exact form writes
    ``(1 + t)/2 = σ(2u) = s`` and ``1 − t² = 4·s·(1 − s)`` (no overflow for any z)."""
    z2 = z * z
    du = 0.10703222440890038 * z2 + 0.7978845608028654
    if FAST:
        # fused multiply-adds as in gelu_tanh: (½z·du)·(1 − t²) + (½t + ½) (offline sm_90, the
        # backward's 64-row, 8-warp tile: 786 -> 660 instructions per hidden chunk)
        u = z * (0.035677408136300125 * z2 + 0.7978845608028654)
        th = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [u], dtype=tl.float32,
                                       is_pure=True, pack=1)
        d = ((0.5 * z) * du) * (1.0 - th * th) + (0.5 * th + 0.5)
    else:
        t = 1.5957691216057308 * z * (1.0 + 0.044715 * z * z)
        s = 1.0 / (1.0 + tl.exp(-t))
        d = s + 2.0 * z * s * (1.0 - s) * du
    return d
