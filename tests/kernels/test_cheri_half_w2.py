"""The inference kernel's ``HALF_W2`` form (``2·GELU(z)`` times ``½·(s·W2)ᵀ``, one multiply fewer
per hidden element) is bit-identical to the plain form: both factors are exact power-of-two
rescalings, so every product and sum is the same. Compiled on the GPU with the hardware-tanh GELU
(bf16, the only dtype the production path folds), and under Triton's interpreter on CPU (fp16:
the interpreter has no bf16 arithmetic; weights kept clear of fp16's subnormal range). Also: the
production entry point really launches the folded form, and the training forward refuses it."""

import pytest
import torch

from interpreter_run import run_under_interpreter


def make_inputs(device, dtype, N=4, L=96, C=64, H=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, L, C, generator=g).to(device, dtype)
    cw = torch.randn(3, C, generator=g).to(device)

    def weight(*shape):  # |w| in [0.02, ~0.2]: halved and scaled by 0.15 still a normal fp16
        w = torch.randn(*shape, generator=g)
        return (w.sign() * (0.02 + 0.05 * w.abs())).to(device)

    w1, w2 = weight(H, C), weight(C, H)
    mean = torch.randn(N, generator=g).to(device)
    rstd = torch.rand(N, generator=g).add(0.5).to(device)
    return x, cw, w1, w2, mean, rstd


def run_mlp(inputs, dtype, half, d=8, bm=64, bh=32, num_warps=4, fast=False, even=1):
    """``mlp_kernel`` once with a fixed config, ``HALF_W2 = half`` (and its halved weights)."""
    import triton

    from strandwise.kernels import cheri_infer_triton as cit
    from strandwise.kernels.cheri_infer import _derived_weights

    x, cw, w1, w2, mean, rstd = inputs
    N, L, C = x.shape
    H = w1.shape[0]
    w1t, w2t = _derived_weights(w1, w2, 0.15 * (0.5 if half else 1.0), dtype)
    NL = N * L
    out = torch.empty_like(x)
    cit.mlp_kernel[(triton.cdiv(NL, bm),)](
        x, cw, w1t, w2t, mean, rstd, out, out, out, out, NL, L, C, H, d,
        BLOCK_M=bm, BLOCK_C=C, BLOCK_H=bh, DOT=0, PRECISION="ieee", FAST_GELU=fast,
        RELOAD_RES=1, SAVE=0, EVEN=even, HALF_W2=half, num_warps=num_warps, num_stages=2)
    return out


def assert_half_matches(device, dtype, **kw):
    inputs = make_inputs(device, dtype, **{k: kw.pop(k) for k in ("N", "L", "C", "H") if k in kw})
    plain = run_mlp(inputs, dtype, 0, **kw)
    folded = run_mlp(inputs, dtype, 1, **kw)
    assert torch.equal(plain, folded), float((plain.float() - folded.float()).abs().max())
    # not a vacuous comparison: the MLP branch moves the output away from the residual
    assert (plain.float() - inputs[0].float()).abs().max() > 1e-2


@pytest.mark.gpu
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("even", [1, 0])
def test_half_w2_bit_identical_gpu(fast, even):
    for d in (1, 8, 200):
        assert_half_matches("cuda", torch.bfloat16, d=d, fast=fast, even=even)


@pytest.mark.gpu
def test_inference_entry_point_uses_half_w2(monkeypatch):
    """``cheri_block_inference`` in bf16 launches ``HALF_W2=1`` and matches the unfolded launch
    (``STRANDWISE_HALF_W2=0``'s switch) bit for bit."""
    from strandwise.kernels import cheri_infer as ci

    x, cw, w1, w2, _, _ = make_inputs("cuda", torch.bfloat16, N=8, L=128, C=128, H=256)
    monkeypatch.setitem(ci._GLUON, "on", False)  # the Triton megakernel (bf16 defaults to Gluon on sm_90)
    seen = []
    orig = ci.launch_block_kernel
    monkeypatch.setattr(ci, "launch_block_kernel",
                        lambda *a, **k: (seen.append(k.get("half_w2", 0)), orig(*a, **k))[1])
    with torch.no_grad():
        folded = ci.cheri_block_inference(x, cw, w1, w2, 4)
        monkeypatch.setitem(ci._HALF_W2, "on", False)
        plain = ci.cheri_block_inference(x, cw, w1, w2, 4)
    assert seen == [1, 0]
    assert torch.equal(folded, plain)


def test_half_w2_only_for_bf16_operands():
    from strandwise.kernels.cheri_infer import half_w2_ok

    assert half_w2_ok(0, torch.bfloat16)
    assert not half_w2_ok(0, torch.float16)
    assert not half_w2_ok(1, torch.float32)  # fp32 operands (tf32 / ieee products)


_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
import pytest
import torch
from test_cheri_half_w2 import assert_half_matches, run_mlp, make_inputs
for d in (1, 8, 200):
    for even in (1, 0):
        assert_half_matches("cpu", torch.float16, N=2, L=64, C=32, H=64, d=d, bm=32, bh=32, even=even)
# the training forward stores the true GELU: the kernel refuses HALF_W2 with SAVE
import triton
from strandwise.kernels import cheri_infer_triton as cit
x, cw, w1, w2, mean, rstd = make_inputs("cpu", torch.float16, N=1, L=32, C=32, H=32)
w = w1.t().contiguous().half()
buf = torch.empty(32, 32, dtype=torch.float16)
def launch(half_w2):
    cit.mlp_kernel[(1,)](x, cw, w, w, mean, rstd, buf, buf, buf, buf, 32, 32, 32, 32, 1,
                         BLOCK_M=32, BLOCK_C=32, BLOCK_H=32, DOT=0, PRECISION="ieee",
                         FAST_GELU=False, RELOAD_RES=1, SAVE=1, EVEN=1, HALF_W2=half_w2)
launch(0)  # the same call without the fold runs, so the refusal below is the static_assert's
with pytest.raises(triton.errors.TritonError):
    launch(1)
print("INTERPRETER-OK")
"""


def test_half_w2_bit_identical_under_interpreter():
    run_under_interpreter(_SCRIPT, __file__)
