"""Cache-chunked GELU(tanh) of the CPU path vs PyTorch's: values, gradients, fallbacks, and the
Cheri Block still calling its ``nn.GELU`` module when hooks are registered."""

import pytest
import torch
import torch.nn.functional as F

from strandwise.models import cpu_gelu
from strandwise.models.cherimoya import CheriBlock, Cherimoya
from strandwise.models.cpu_gelu import gelu_tanh_cpu


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_values_match_pytorch_across_chunks_and_extremes(dtype, tol, monkeypatch):
    monkeypatch.setattr(cpu_gelu, "CHUNK_ROWS", 7)  # several chunks and a partial last one
    z = torch.randn(3, 17, 24, dtype=dtype) * 4
    z[0, 0, :6] = torch.tensor([-1e4, -30.0, -8.0, 0.0, 30.0, 1e4], dtype=dtype)
    ref = F.gelu(z, approximate="tanh")
    torch.testing.assert_close(gelu_tanh_cpu(z), ref, atol=tol, rtol=tol)
    zz = z.clone()
    out = gelu_tanh_cpu(zz, inplace=True)
    assert out.data_ptr() == zz.data_ptr()
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    assert torch.isnan(gelu_tanh_cpu(torch.tensor([float("nan")], dtype=dtype))).all()
    assert gelu_tanh_cpu(torch.tensor([float("inf")], dtype=dtype)).item() == float("inf")


def test_gradient_is_pytorchs_and_inplace_never_touches_a_grad_input():
    z = torch.randn(5, 40, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu_tanh_cpu, (z,))
    before = z.detach().clone()
    out = gelu_tanh_cpu(z, inplace=True)  # needs a gradient: out of place
    out.sum().backward()
    assert torch.equal(z.detach(), before)
    z2 = before.clone().requires_grad_()
    F.gelu(z2, approximate="tanh").sum().backward()
    torch.testing.assert_close(z.grad, z2.grad, atol=0, rtol=0)


def test_non_contiguous_and_other_dtypes_fall_back():
    z = torch.randn(6, 8).t()
    torch.testing.assert_close(gelu_tanh_cpu(z), F.gelu(z, approximate="tanh"))
    h = torch.randn(4, 8).half()
    torch.testing.assert_close(gelu_tanh_cpu(h), F.gelu(h, approximate="tanh"))


def test_block_uses_the_gelu_module_when_hooked():
    blk = CheriBlock(16, 2).eval()
    x = torch.randn(2, 30, 16)
    with torch.no_grad():
        fast = blk(x)
    calls = []
    handle = blk.activation.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        with torch.no_grad():
            hooked = blk(x)
    finally:
        handle.remove()
    assert calls == [1]
    torch.testing.assert_close(fast, hooked, atol=1e-6, rtol=1e-6)


def test_model_outputs_unchanged_within_float_rounding(monkeypatch):
    import strandwise.models.cherimoya as cm

    m = Cherimoya(n_filters=24, n_layers=3, trimming=40, random_state=0).eval()
    X = F.one_hot(torch.randint(0, 4, (3, 240), generator=torch.Generator().manual_seed(0)), 4)
    X = X.transpose(1, 2).float()
    with torch.no_grad():
        a = m(X)
        monkeypatch.setattr(cm, "_cpu_gelu_applies", lambda mod, z: False)
        b = m(X)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)
