"""Code the selective-scan kernels compile to, checked by an offline sm_90 compile to PTX (Triton's
own compiler; no GPU needed).

Masked sums in the kernels (the carry ``h`` taken from the last position of a scanned tile, and the
per-state picks of the backward's lane reduce-scatter) use ``_neg_zero()`` as the masked-out value:
``x + (-0.0)`` is ``x`` exactly, so the compiler drops the adds, while ``x + 0.0`` has to stay (it
turns -0.0 into +0.0). A literal ``-0.0`` reached the IR as +0.0, so this guards the bit-pattern
constant against a rewrite back to a literal."""

import os
import re
import sys

import pytest

pytest.importorskip("triton")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))


def test_neg_zero_is_negative_zero_under_interpreter():
    from tests.kernels.interpreter_run import run_under_interpreter

    run_under_interpreter(r'''
import torch
import triton
import triton.language as tl
from strandwise.kernels.selective_scan_triton import _neg_zero

@triton.jit
def k(x_ptr, out_ptr, pick_ptr):
    offs = tl.arange(0, 4)
    x = tl.load(x_ptr + offs)
    tl.store(out_ptr + offs, tl.where(offs >= 0, _neg_zero(), x))
    tl.store(pick_ptr, tl.sum(tl.where(offs == 3, x, _neg_zero()), axis=0))

x = torch.tensor([1.0, 2.0, 3.0, 4.5])
out = torch.empty(4)
pick = torch.empty(1)
k[(1,)](x, out, pick)
assert out.view(torch.int32).tolist() == [-2147483648] * 4, out
assert pick.item() == 4.5, pick
print("INTERPRETER-OK")
''', __file__)


@pytest.mark.parametrize("kernel", ["fwd", "fwd_summary", "bwd", "bwd_summary"])
def test_scan_kernels_add_no_positive_zero(kernel):
    import sass_scan as ss

    fn, consts, half = ss._kernel_spec(kernel, 4 if kernel.startswith("fwd") else 2, 32)
    ck = ss.compile_sm90(fn, consts, half, num_warps=1)
    adds = re.findall(r"add\.f32\s+%r\d+, %r\d+, 0f00000000;", ck.asm["ptx"])
    assert not adds, f"{len(adds)} adds of +0.0 in the {kernel} kernel"


def test_inference_forward_compiles_without_state_stores():
    # STORE_STATES=False (a forward no backward follows) must remove the chunk-start state stores
    # from the compiled loop, not merely skip them at run time
    import sass_scan as ss

    fn, consts, half = ss._kernel_spec("fwd", 4, 32)
    counts = {}
    for store in (True, False):
        ck = ss.compile_sm90(fn, dict(consts, STORE_STATES=store), half, num_warps=1)
        counts[store] = len(re.findall(r"st\.global(?:\.\w+)*\.v4\.b32", ck.asm["ptx"]))
    assert counts[True] > 0 and counts[False] == 0, counts
