"""Fused residual add + RMSNorm / NormRC: the reference's exact formulas on CPU, and the Triton
kernels against it on CUDA (``gpu`` marker): outputs, the returned residual and every gradient
(x, residual, weight; with and without a gradient reaching the residual), over rows that are not
multiples of the block, channel counts that are not powers of two, strided inputs and dtypes."""

import pytest
import torch

from strandwise.kernels.add_rms_norm import add_rms_norm, add_rms_norm_reference


def _rms(v, w, eps):
    return v * (v.pow(2).mean(-1, keepdim=True) + eps).rsqrt() * w


def test_reference_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    r = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    w = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    y, s = add_rms_norm(x, r, w, 1e-5, rc=True, swap=True)
    S = torch.cat([(x + r)[..., 4:], (x + r)[..., :4]], -1)
    torch.testing.assert_close(s, S, rtol=0, atol=0)
    ref = torch.cat([_rms(S[..., :4], w, 1e-5), _rms(S[..., 4:], w.flip(0), 1e-5)], -1)
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-14)
    w8 = torch.rand(8, generator=g, dtype=torch.float64)
    y, s = add_rms_norm(x, None, w8, 1e-5)
    torch.testing.assert_close(y, _rms(x, w8, 1e-5))
    assert s.dtype == torch.float64
    y, s = add_rms_norm(x.float(), r.float(), w8.float(), 1e-5)
    assert y.dtype == torch.float32 and s.dtype == torch.float32


def test_reference_gradcheck_and_bad_shapes():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: add_rms_norm(a, b, c, 1e-5, rc=True, swap=True), (x, r, w))
    with pytest.raises(ValueError, match="weight must have shape"):
        add_rms_norm(x, r, torch.ones(6), 1e-5, rc=True)
    with pytest.raises(ValueError, match="even channel count"):
        add_rms_norm(torch.randn(2, 5), None, torch.ones(2), 1e-5, rc=True)
    with pytest.raises(ValueError, match="does not match"):
        add_rms_norm(x, r[:2], torch.ones(6), 1e-5)


REL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rc,swap", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("has_res", [True, False])
@pytest.mark.parametrize("shape", [(2, 37, 512), (1, 5, 236), (3, 1000, 118), (1, 3, 5120), (2, 4096, 64)])
def test_triton_matches_reference(dtype, rc, swap, has_res, shape):
    from strandwise.kernels.add_rms_norm_triton import add_rms_norm_triton

    B, L, C = shape
    if rc and C % 2:
        pytest.skip("odd C")
    gen = torch.Generator().manual_seed(B * L + C)
    # x as a transposed view of a channel-major tensor, like the Mamba mixer's output
    x = torch.randn(B, C, L, generator=gen).to(dtype).cuda().transpose(1, 2).requires_grad_(True)
    r = torch.randn(B, L, C, generator=gen).cuda().requires_grad_(True) if has_res else None
    w = (torch.rand(C // 2 if rc else C, generator=gen) + 0.5).cuda().requires_grad_(True)
    gy = torch.randn(B, L, C, generator=gen).to(dtype).cuda()
    gs = torch.randn(B, L, C, generator=gen).cuda()
    inputs = [x, w] + ([r] if has_res else [])
    for with_gs in (False, True):
        y, s = add_rms_norm_triton(x, r, w, 1e-5, rc=rc, swap=swap)
        loss_grads = [gy, gs] if with_gs else [gy]
        got = torch.autograd.grad([y, s] if with_gs else [y], inputs, loss_grads)
        xd = x.detach().double().requires_grad_(True)
        rd = r.detach().double().requires_grad_(True) if has_res else None
        wd = w.detach().double().requires_grad_(True)
        yr, sr = add_rms_norm_reference(xd, rd, wd, 1e-5, rc=rc, swap=swap)
        ref = torch.autograd.grad([yr, sr] if with_gs else [yr], [xd, wd] + ([rd] if has_res else []),
                                  [g.double() for g in loss_grads])
        assert y.dtype == dtype and s.dtype == torch.float32 and y.shape == (B, L, C)
        assert _rel(y, yr) < REL[dtype] and _rel(s, sr) < 1e-6
        for name, a, b in zip(["dx", "dw", "dr"], got, ref):
            assert a.shape == b.shape and torch.isfinite(a).all()
            assert _rel(a, b) < REL[dtype] * 2, name


@pytest.mark.gpu
def test_repeat_call_is_direct_and_bit_identical():
    # from the second call on, the compiled kernels are launched directly (_host.DIRECT)
    from strandwise.kernels._host import DIRECT
    from strandwise.kernels.add_rms_norm_triton import add_rms_norm_triton

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 300, 256, generator=gen).to(torch.bfloat16).cuda().requires_grad_(True)
    r = torch.randn(2, 300, 256, generator=gen).cuda().requires_grad_(True)
    w = (torch.rand(128, generator=gen) + 0.5).cuda().requires_grad_(True)
    gy = torch.randn(2, 300, 256, generator=gen).to(torch.bfloat16).cuda()

    def run():
        y, s = add_rms_norm_triton(x, r, w, 1e-5, rc=True, swap=True)
        return (y, s) + torch.autograd.grad(y, [x, r, w], gy)

    first = run()
    hits = DIRECT.hits
    second = run()
    assert DIRECT.hits - hits == 2  # forward and backward
    for a, c in zip(first, second):
        assert torch.equal(a, c)


@pytest.mark.gpu
def test_dispatch_and_caduceus_block_use_it():
    """On CUDA the dispatcher runs the Triton function (visible in the autograd graph)."""
    x = torch.randn(2, 9, 16, device="cuda", requires_grad=True)
    y, s = add_rms_norm(x, None, torch.ones(8, device="cuda"), 1e-5, rc=True)
    assert "AddRMSNormFunc" in type(y.grad_fn).__name__
