"""The Cheri MLP kernel's ``EVEN`` variant (no row/column masks, for NL % BLOCK_M == 0 and
C == BLOCK_C) computes exactly what the masked kernel computes: inference outputs and the
training forward's saved x̂, z, h, bit for bit; compiled on the GPU, and under Triton's
interpreter on CPU. Dilations that reach past the sequence edges keep the edge masks exercised."""

import pytest
import torch

from interpreter_run import run_under_interpreter


def run_mlp(device, dtype, even, save, N=4, L=96, C=64, H=128, d=8, bm=64, bh=32, num_warps=4, maxnreg=None):
    """Launch ``mlp_kernel`` once with a fixed config; returns ``(out, xn, z, h)``."""
    import triton

    from strandwise.kernels import cheri_infer_triton as cit
    from strandwise.kernels.cheri_infer import _derived_weights

    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, L, C, generator=g).to(device, dtype)
    cw = torch.randn(3, C, generator=g).to(device)
    w1 = (torch.randn(H, C, generator=g) * 0.05).to(device)
    w2 = (torch.randn(C, H, generator=g) * 0.05).to(device)
    mean = torch.randn(N, generator=g).to(device)
    rstd = torch.rand(N, generator=g).add(0.5).to(device)
    w1t, w2t = _derived_weights(w1, w2, 0.15, dtype)
    NL = N * L
    assert NL % bm == 0
    out, xn = torch.empty_like(x), torch.empty_like(x)
    z, h = torch.empty(NL, H, device=device, dtype=dtype), torch.empty(NL, H, device=device, dtype=dtype)
    opts = dict(num_warps=num_warps, num_stages=2)
    if maxnreg:
        opts["maxnreg"] = maxnreg
    cit.mlp_kernel[(triton.cdiv(NL, bm),)](
        x, cw, w1t, w2t, mean, rstd, out, xn, z, h, NL, L, C, H, d,
        BLOCK_M=bm, BLOCK_C=C, BLOCK_H=bh, DOT=0, PRECISION="ieee", FAST_GELU=False,
        RELOAD_RES=1, SAVE=save, EVEN=int(even), **opts)
    return out, xn, z, h


def assert_even_matches(device, dtype, **kw):
    for save in (0, 1):
        masked = run_mlp(device, dtype, False, save, **kw)
        even = run_mlp(device, dtype, True, save, **kw)
        for name, a, b in zip(("out", "xn", "z", "h"), masked, even):
            if save or name == "out":
                assert torch.equal(a, b), (save, name, float((a.float() - b.float()).abs().max()))


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16"])
@pytest.mark.parametrize("num_warps,maxnreg", [(4, None), (8, 128)])
def test_even_tiles_match_masked_gpu(dt, num_warps, maxnreg):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    for d in (1, 8, 200):  # 200 > L: both edge taps masked everywhere
        assert_even_matches("cuda", dtype, d=d, num_warps=num_warps, maxnreg=maxnreg)


_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
import torch
from test_cheri_even_tiles import assert_even_matches
for d in (1, 8, 200):
    # fp16: the interpreter has no bf16 arithmetic
    assert_even_matches("cpu", torch.float16, N=2, L=64, C=32, H=64, d=d, bm=32, bh=32)
print("INTERPRETER-OK")
"""


def test_even_tiles_match_masked_under_interpreter():
    run_under_interpreter(_SCRIPT, __file__)
