"""Small ``@triton.jit`` device functions shared by several kernels (imported only with Triton)."""

import triton
import triton.language as tl

__all__ = ["gelu_tanh"]


@triton.jit
def gelu_tanh(z, FAST: tl.constexpr):
    """GELU(tanh) of an fp32 tile. ``FAST``: one hardware ``tanh.approx.f32`` (relative error
    ~2^-11, below a bf16/fp16 rounding that follows); else the exact, overflow-safe form
    ``z·sigmoid(2·√(2/π)·(z + 0.044715 z³))``."""
    if FAST:
        u = 0.7978845608028654 * z * (1.0 + 0.044715 * z * z)
        th = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [u], dtype=tl.float32,
                                       is_pure=True, pack=1)
        g = 0.5 * z * (1.0 + th)
    else:
        t = 1.5957691216057308 * z * (1.0 + 0.044715 * z * z)
        g = z / (1.0 + tl.exp(-t))
    return g
