"""The GELU(tanh) helpers of the Triton kernels (``strandwise.kernels._triton_ops``) against
PyTorch's ``gelu(approximate="tanh")`` and its gradient, both forms.

The fast form calls the hardware ``tanh.approx.f32`` through inline PTX, which Triton's interpreter
cannot run; here that one instruction is evaluated as an exact ``tanh``, so the test checks the
fast form's arithmetic around it as written in the kernels (its constants and fused-multiply-add
arrangement) on the CPU. The instruction itself (relative error ~2^-11) is covered by the GPU
parity tests of the kernels that use it."""

from tests.kernels.interpreter_run import run_under_interpreter

_SCRIPT = r'''
import numpy as np
import torch
import triton
import triton.language as tl
from triton.runtime import interpreter

from strandwise.kernels._triton_ops import gelu_tanh, gelu_tanh_grad

class _Call:  # what Triton's language layer reads back from the builder: get_result(i)
    def __init__(self, *results):
        self.results = results

    def get_result(self, i):
        return self.results[i]

def inline_asm(self, asm, constraints, values, types, is_pure, pack):
    assert asm == "tanh.approx.f32 $0, $1;" and len(values) == 1, asm
    v = values[0]
    return _Call(interpreter.TensorHandle(np.tanh(v.data).astype(np.float32), v.dtype.scalar))

interpreter.InterpreterBuilder.create_inline_asm = inline_asm

@triton.jit
def k(z_ptr, g_ptr, d_ptr, n, FAST: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    z = tl.load(z_ptr + offs, mask=m, other=0.0)
    tl.store(g_ptr + offs, gelu_tanh(z, FAST), mask=m)
    tl.store(d_ptr + offs, gelu_tanh_grad(z, FAST), mask=m)

z = torch.linspace(-12.0, 12.0, 40001, dtype=torch.float32)
z64 = z.double().requires_grad_()
g_ref = torch.nn.functional.gelu(z64, approximate="tanh")
d_ref, = torch.autograd.grad(g_ref.sum(), z64)
for fast in (1, 0):
    g = torch.empty_like(z)
    d = torch.empty_like(z)
    k[(triton.cdiv(z.numel(), 1024),)](z, g, d, z.numel(), FAST=fast, BLOCK=1024)
    eg = (g.double() - g_ref.detach()).abs().max().item()
    ed = (d.double() - d_ref).abs().max().item()
    # fp32 rounding of a handful of operations on |z| <= 12: a few ulps of the largest value
    assert eg < 4e-6 and ed < 4e-6, (fast, eg, ed)
    print("form", fast, "max abs error", eg, ed)
print("INTERPRETER-OK")
'''


def test_gelu_forms_match_pytorch_under_interpreter():
    run_under_interpreter(_SCRIPT, __file__)
