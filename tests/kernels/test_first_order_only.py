"""Every Triton autograd Function is first-order only: a gradient taken with ``create_graph=True``
and differentiated again raises (``once_differentiable``) instead of silently leaving the layer
out of the second derivative. The CPU and interpreter variants of this check live beside each
kernel's tests (test_mamba_inner, test_cheri_train, test_selective_scan_triton)."""

import pytest
import torch

from interpreter_run import assert_first_order_only


def _conv_norm():
    from strandwise.kernels.conv_norm import fused_dilated_conv_norm

    x = torch.randn(2, 50, 32, device="cuda", requires_grad=True)
    w = torch.randn(3, 32, device="cuda", requires_grad=True)
    return fused_dilated_conv_norm(x, w, 2), x


def _fused_block():
    from strandwise.kernels.cheri_train import cheri_block_train

    x = torch.randn(2, 50, 32, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    ps = [torch.randn(*s, device="cuda", requires_grad=True) * 0.2 for s in ((3, 32), (64, 32), (32, 64))]
    return cheri_block_train(x, *ps, 2), x


def _add_rms_norm():
    from strandwise.kernels.add_rms_norm_triton import add_rms_norm_triton

    x = torch.randn(2, 40, 64, device="cuda", requires_grad=True)
    r = torch.randn(2, 40, 64, device="cuda", requires_grad=True)
    w = torch.ones(64, device="cuda", requires_grad=True)
    y, _ = add_rms_norm_triton(x, r, w, 1e-5)
    return y, x


def _causal_conv():
    from strandwise.kernels.causal_conv_triton import causal_conv1d_silu_triton

    x = torch.randn(2, 16, 100, device="cuda", requires_grad=True)
    w = torch.randn(16, 1, 4, device="cuda", requires_grad=True)
    return causal_conv1d_silu_triton(x, w, None), x


def _scan():
    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    b, d, n, L = 2, 16, 4, 64
    u = torch.randn(b, d, L, device="cuda", requires_grad=True)
    delta = (0.5 * torch.randn(b, d, L, device="cuda") - 1).requires_grad_()
    A = -torch.rand(d, n, device="cuda").add(0.5).requires_grad_()
    B = torch.randn(b, n, L, device="cuda", requires_grad=True)
    C = torch.randn(b, n, L, device="cuda", requires_grad=True)
    return selective_scan_triton(u, delta, A, B, C, delta_softplus=True), u


@pytest.mark.gpu
@pytest.mark.parametrize("make", [_conv_norm, _fused_block, _add_rms_norm, _causal_conv, _scan],
                         ids=["conv_norm", "fused_block", "add_rms_norm", "causal_conv", "scan"])
def test_second_derivative_raises(make):
    assert_first_order_only(*make())
    # first-order gradients are unaffected
    out, x = make()
    gx, = torch.autograd.grad(out, [x], torch.ones_like(out))
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0
