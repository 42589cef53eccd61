"""Triton causal depthwise conv + SiLU (Mamba's conv1d) vs the PyTorch reference: forward and all
gradients, causal and anti-causal, with and without bias and activation, fp32/bf16, strided views
and lengths shorter than the kernel. All tests need CUDA + Triton (``gpu`` marker)."""

import pytest
import torch
import torch.nn.functional as F

from strandwise.kernels.causal_conv import causal_conv1d, causal_conv1d_silu

pytestmark = pytest.mark.gpu

REL_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def _ref(x, w, b, reverse, silu, g):
    xr = x.detach().double().requires_grad_(True)
    wr = w.detach().double().requires_grad_(True)
    br = b.detach().double().requires_grad_(True) if b is not None else None
    y = causal_conv1d(xr, wr, br, reverse=reverse)
    y = F.silu(y) if silu else y
    grads = torch.autograd.grad(y, [xr, wr] + ([br] if br is not None else []), g.double())
    return y, grads


def _rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("shape", [(2, 24, 1000), (1, 16, 3), (3, 40, 257), (1, 512, 4096)])
def test_matches_reference(dtype, reverse, bias, silu, shape):
    from strandwise.kernels.causal_conv_triton import causal_conv1d_silu_triton

    B, D, L = shape
    gen = torch.Generator().manual_seed(B * D + L)
    # x as a channel slice of a wider (B, 2D, L) tensor, like Mamba's in_proj output
    xz = torch.randn(B, 2 * D, L, generator=gen).to(dtype).cuda()
    x = xz[:, :D]
    w = (torch.randn(D, 1, 4, generator=gen) * 0.5).cuda().requires_grad_(True)
    b = (torch.randn(D, generator=gen) * 0.1).cuda().requires_grad_(True) if bias else None
    g = torch.randn(B, D, L, generator=gen).to(dtype).cuda()
    xzg = xz.detach().clone().requires_grad_(True)
    y = causal_conv1d_silu_triton(xzg[:, :D], w, b, reverse=reverse, silu=silu)
    got = list(torch.autograd.grad(y, [xzg, w] + ([b] if bias else []), g))
    assert not got[0][:, D:].any()
    got[0] = got[0][:, :D]
    y_ref, ref = _ref(x.float(), w, b, reverse, silu, g.float())
    assert y.dtype == dtype and y.shape == (B, D, L)
    tol = REL_TOL[dtype]
    assert _rel(y, y_ref) < tol
    for a, r in zip(got, ref):
        assert a.shape == r.shape
        assert _rel(a, r) < tol * 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_repeat_call_is_direct_and_bit_identical(dtype):
    # from the second call on, the compiled kernels are launched directly (_host.DIRECT)
    from strandwise.kernels._host import DIRECT
    from strandwise.kernels.causal_conv_triton import causal_conv1d_silu_triton

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 64, 333, generator=gen).to(dtype).cuda().requires_grad_(True)
    w = (torch.randn(64, 1, 4, generator=gen) * 0.5).cuda().requires_grad_(True)
    b = (torch.randn(64, generator=gen) * 0.1).cuda().requires_grad_(True)
    g = torch.randn(2, 64, 333, generator=gen).to(dtype).cuda()

    def run():
        y = causal_conv1d_silu_triton(x, w, b, reverse=True, silu=True)
        return (y,) + torch.autograd.grad(y, [x, w, b], g)

    first = run()
    hits = DIRECT.hits
    second = run()
    assert DIRECT.hits - hits == 3  # forward, backward g, backward dx
    for a, c in zip(first, second):
        assert torch.equal(a, c)


def test_mamba_dispatch_and_autocast():
    x = torch.randn(2, 32, 300, device="cuda")
    w = torch.randn(32, 1, 4, device="cuda")
    b = torch.randn(32, device="cuda")
    for reverse in (False, True):
        got = causal_conv1d_silu(x, w, b, reverse=reverse)
        ref = F.silu(causal_conv1d(x, w, b, reverse=reverse))
        assert _rel(got, ref) < 1e-5
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = causal_conv1d_silu(x.bfloat16(), w, b, reverse=reverse)
        assert got.dtype == torch.bfloat16 and _rel(got, ref) < 2e-2


def test_batch_beyond_the_grid_limit_takes_the_reference():
    # the kernels' grid has the batch on axis 2 (at most 65,535): a larger batch must not fail
    x = torch.randn(65536, 2, 5, device="cuda")
    w = torch.randn(2, 1, 4, device="cuda")
    got = causal_conv1d_silu(x, w, None)
    assert _rel(got, F.silu(causal_conv1d(x, w, None))) < 1e-6


def test_direct_launch_follows_the_batch_size():
    # direct launches (after the first per specialisation) use each call's own grid: another
    # batch at the same (D, L) gets its own programs, forward and backward
    for B in (3, 1, 5):
        x = torch.randn(B, 32, 200, device="cuda", requires_grad=True)
        w = torch.randn(32, 1, 4, device="cuda", requires_grad=True)
        got = causal_conv1d_silu(x, w, None)
        gx, gw = torch.autograd.grad(got.square().sum(), [x, w])
        ref = F.silu(causal_conv1d(x, w, None))
        rx, rw = torch.autograd.grad(ref.square().sum(), [x, w])
        assert _rel(got, ref) < 1e-5 and _rel(gx, rx) < 1e-5 and _rel(gw, rw) < 1e-5, B
