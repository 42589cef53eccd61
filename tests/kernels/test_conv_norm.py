import pytest
import torch

from strandwise.kernels import conv_norm as cn
from strandwise.kernels.conv_norm import (
    FusedDilatedConvNorm,
    FusedDilatedConvNormFunc,
    _cheri_conv_norm_cpu,
    fused_dilated_conv_norm,
)


def naive_conv_norm(x, w, d, eps=1e-3):
    """Per-tap loop written independently of the module, in float64."""
    x = x.double()
    w = w.double()
    N, L, C = x.shape
    y = torch.zeros_like(x)
    for i in range(L):
        for k, off in enumerate((-d, 0, d)):
            j = i + off
            if 0 <= j < L:
                y[:, i] += w[k] * x[:, j]
    out = torch.empty_like(y)
    for n in range(N):
        mu = y[n].sum() / (L * C)
        var = ((y[n] - mu) ** 2).sum() / (L * C)
        out[n] = (y[n] - mu) / torch.sqrt(var + eps)
    return out


@pytest.mark.parametrize("N,L,C,d", [(2, 37, 5, 1), (3, 16, 8, 4), (1, 10, 3, 9), (2, 7, 4, 32)])
def test_reference_matches_naive_loop(N, L, C, d):
    g = torch.Generator().manual_seed(N * 100 + L + d)
    x = torch.randn(N, L, C, generator=g)
    w = torch.randn(3, C, generator=g)
    got = _cheri_conv_norm_cpu(x, w, d)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), naive_conv_norm(x, w, d), atol=1e-4, rtol=0)


def test_statistics_per_example_and_biased_variance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, 16, generator=g)
    w = torch.randn(3, 16, generator=g)
    out = _cheri_conv_norm_cpu(x, w, 2).double()
    mean = out.mean(dim=(1, 2))
    var = out.var(dim=(1, 2), unbiased=False)
    assert torch.all(mean.abs() < 1e-4)
    # variance is σ²/(σ²+eps), with σ² the biased variance of the raw conv output
    ref_var = []
    for n in range(4):
        xp = torch.nn.functional.pad(x[n : n + 1].double(), (0, 0, 2, 2))
        conv = w[0].double() * xp[:, :64] + w[1].double() * xp[:, 2:66] + w[2].double() * xp[:, 4:]
        s2 = conv.var(unbiased=False)
        ref_var.append(s2 / (s2 + 1e-3))
    torch.testing.assert_close(var, torch.stack(ref_var), atol=2e-3, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_use_fp32_statistics(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, 8, generator=g) * 100  # large values would overflow fp16 sums
    w = torch.randn(3, 8, generator=g)
    out = _cheri_conv_norm_cpu(x.to(dtype), w.to(dtype), 3)
    assert out.dtype == dtype
    ref = _cheri_conv_norm_cpu(x.to(dtype).float(), w.to(dtype).float(), 3)
    tol = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=0)


def test_batch_independence():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 20, 6, generator=g)
    w = torch.randn(3, 6, generator=g)
    a = _cheri_conv_norm_cpu(x, w, 2)
    x2 = x.clone()
    x2[1] = torch.randn(20, 6, generator=g) * 5
    b = _cheri_conv_norm_cpu(x2, w, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert not torch.allclose(a[1], b[1])


def test_edges_see_zero_padding():
    g = torch.Generator().manual_seed(3)
    d = 5
    x = torch.randn(1, 30, 4, generator=g)
    w = torch.randn(3, 4, generator=g)
    padded = torch.nn.functional.pad(x, (0, 0, d, d))
    conv = torch.nn.functional.conv1d(
        padded.transpose(1, 2), w.T.unsqueeze(1), dilation=d, groups=4
    ).transpose(1, 2)
    mu = conv.mean()
    ref = (conv - mu) / torch.sqrt(conv.var(unbiased=False) + 1e-3)
    torch.testing.assert_close(_cheri_conv_norm_cpu(x, w, d), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("d", [1, 2, 5, 40])
def test_gradcheck_reference_and_formulas(d):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(2, 13, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _cheri_conv_norm_cpu(a, b, d), (x, w))
    # the hand-written §2.5 backward the Triton kernels implement
    assert torch.autograd.gradcheck(lambda a, b: FusedDilatedConvNormFunc.apply(a, b, d), (x, w))


def test_function_matches_reference_forward_and_grads():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 41, 12, generator=g, requires_grad=True)
    w = (torch.randn(3, 12, generator=g) * 0.1).requires_grad_()
    up = torch.randn(3, 41, 12, generator=g)
    out_ref = _cheri_conv_norm_cpu(x, w, 4)
    gx_ref, gw_ref = torch.autograd.grad((out_ref * up).sum(), (x, w))
    out = FusedDilatedConvNormFunc.apply(x, w, 4)
    gx, gw = torch.autograd.grad((out * up).sum(), (x, w))
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(gx, gx_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw, gw_ref, atol=1e-4, rtol=1e-4)


def test_dispatcher_on_cpu_is_bit_exact_reference():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 33, 7, generator=g)
    w = torch.randn(3, 7, generator=g)
    assert torch.equal(fused_dilated_conv_norm(x, w, 3), _cheri_conv_norm_cpu(x, w, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 3, 32, 40, 100])  # 40 = L (centre tap only), 100 > L
def test_cpu_training_function_matches_autograd_through_the_reference(dtype, d):
    # under autograd the CPU dispatcher runs _CPUConvNormFunc: same forward bits, §2.5 backward
    g = torch.Generator().manual_seed(6)
    x = torch.randn(3, 40, 6, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(3, 6, generator=g, dtype=dtype, requires_grad=True)
    gout = torch.randn(3, 40, 6, generator=g, dtype=dtype)
    out = fused_dilated_conv_norm(x, w, d)
    assert out.grad_fn is not None and "_CPUConvNormFunc" in type(out.grad_fn).__name__
    ref = _cheri_conv_norm_cpu(x, w, d)
    assert torch.equal(out, ref)
    got = torch.autograd.grad(out, (x, w), gout)
    want = torch.autograd.grad(ref, (x, w), gout)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("N,L,d", [(2, 17, 2), (1, 9, 1), (3, 12, 11), (2, 10, 40)])
def test_cpu_training_function_gradcheck_and_no_grad_path(N, L, d):
    # the per-example backward (cn._conv_norm_backward_cpu), including d >= L (centre tap only)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N, L, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fused_dilated_conv_norm(a, b, d), (x, w))
    with torch.no_grad():
        assert fused_dilated_conv_norm(x, w, d).grad_fn is None


@pytest.mark.parametrize("d", [1, 4, 64])
def test_cpu_per_example_backward_matches_the_reference_formulas(d):
    g = torch.Generator().manual_seed(d)
    x = torch.randn(5, 64, 24, generator=g)
    w = torch.randn(3, 24, generator=g)
    gout = torch.randn(5, 64, 24, generator=g)
    out, mean, rstd = cn.conv_norm_forward_reference(x, w, d)
    ref_dx, ref_dw = cn.conv_norm_backward_reference(gout, x, w, mean, rstd, d)
    dx, dw = cn._conv_norm_backward_cpu(gout, x, w, out, rstd, d)
    torch.testing.assert_close(dx, ref_dx.to(dx.dtype), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dw, ref_dw.to(dw.dtype), atol=1e-4, rtol=1e-4)


def test_non_contiguous_input():
    g = torch.Generator().manual_seed(5)
    base = torch.randn(2, 9, 25, generator=g)  # (N, C, L) viewed as (N, L, C)
    x = base.transpose(1, 2)
    assert not x.is_contiguous()
    w = torch.randn(3, 9, generator=g)
    torch.testing.assert_close(fused_dilated_conv_norm(x, w, 2), fused_dilated_conv_norm(x.contiguous(), w, 2))


def test_no_grad_equals_grad():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 30, 8, generator=g)
    w = torch.randn(3, 8, generator=g, requires_grad=True)
    with torch.no_grad():
        a = fused_dilated_conv_norm(x, w, 2)
    b = fused_dilated_conv_norm(x, w, 2)
    torch.testing.assert_close(a, b.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "x,w,d,exc,match",
    [
        (torch.zeros(2, 3), torch.zeros(3, 3), 1, ValueError, r"\(N, L, C\)"),
        (torch.zeros(1, 4, 3, dtype=torch.int64), torch.zeros(3, 3), 1, TypeError, "floating"),
        (torch.zeros(1, 4, 3), torch.zeros(3, 5), 1, ValueError, r"\(3, C=3\)"),
        (torch.zeros(1, 4, 3), torch.zeros(3, 3), 0, ValueError, "dilation"),
    ],
)
def test_bad_input_errors(x, w, d, exc, match):
    with pytest.raises(exc, match=match):
        fused_dilated_conv_norm(x, w, d)


def test_module_checks_channels():
    m = FusedDilatedConvNorm(8, 2)
    assert m.conv_weight.shape == (3, 8)
    with pytest.raises(ValueError, match="expects"):
        m(torch.zeros(1, 10, 4))


def test_dispatcher_never_selects_triton_on_cpu(monkeypatch):
    monkeypatch.setattr(cn, "_triton_backend", lambda: (_ for _ in ()).throw(AssertionError("triton used")))
    x = torch.randn(1, 8, 4)
    w = torch.randn(3, 4)
    fused_dilated_conv_norm(x, w, 1)
    FusedDilatedConvNormFunc.apply(x, w, 1)


@pytest.mark.parametrize("d", [1, 3, 64, 300])
def test_fast_reference_matches_padded_tap_form(d):
    from strandwise.kernels.conv_norm import conv_norm_forward_reference

    g = torch.Generator().manual_seed(d)
    x = torch.randn(3, 257, 16, generator=g)
    w = torch.randn(3, 16, generator=g)
    torch.testing.assert_close(_cheri_conv_norm_cpu(x, w, d), conv_norm_forward_reference(x, w, d)[0],
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("d", [1, 3, 50])
def test_cpu_per_example_forward_is_bit_exact(d, monkeypatch):
    # above PER_EXAMPLE_BYTES the CPU forward (no-grad path and the training Function) runs one
    # example at a time: the same operations per element, so the reference's bits
    monkeypatch.setattr(cn, "PER_EXAMPLE_BYTES", 1024)
    g = torch.Generator().manual_seed(d)
    x = torch.randn(4, 40, 16, generator=g)
    w = torch.randn(3, 16, generator=g)
    ref = _cheri_conv_norm_cpu(x, w, d)
    with torch.no_grad():
        assert torch.equal(fused_dilated_conv_norm(x, w, d), ref)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = fused_dilated_conv_norm(xg, wg, d)
    assert "_CPUConvNormFunc" in type(out.grad_fn).__name__
    assert torch.equal(out.detach(), ref)
    gout = torch.randn(4, 40, 16, generator=g)
    dx, dw = torch.autograd.grad(out, [xg, wg], gout)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    rdx, rdw = torch.autograd.grad(_cheri_conv_norm_cpu(xr, wr, d), [xr, wr], gout)
    torch.testing.assert_close(dx, rdx, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dw, rdw, atol=1e-4, rtol=1e-4)
