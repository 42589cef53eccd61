"""Mamba-1 block and RMSNorm (spec §5.1, §5.3, §5.9)."""

import math

import pytest
import torch
import torch.nn.functional as F

from strandwise.kernels.selective_scan import selective_scan_naive
from strandwise.models.mamba import Mamba, RMSNorm, causal_conv1d


def test_causal_and_anticausal_conv_match_conv1d():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 5, 17, generator=g), torch.randn(5, 1, 4, generator=g), torch.randn(5, generator=g)
    ref = F.conv1d(x, w, b, padding=3, groups=5)[..., :17]
    torch.testing.assert_close(causal_conv1d(x, w, b), ref, rtol=0, atol=1e-6)
    flipped = F.conv1d(x.flip(-1), w, b, padding=3, groups=5)[..., :17].flip(-1)
    torch.testing.assert_close(causal_conv1d(x, w, b, reverse=True), flipped, rtol=0, atol=1e-6)
    # w[3] multiplies the current token: an impulse at t=0 gives w[3] at t=0, w[2] at t=1, ...
    imp = torch.zeros(1, 1, 6)
    imp[..., 0] = 1
    wk = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    assert causal_conv1d(imp, wk, None).flatten().tolist() == [4.0, 3.0, 2.0, 1.0, 0.0, 0.0]


def reference_mamba(m: Mamba, u: torch.Tensor) -> torch.Tensor:
    """Independent §5.1 forward in fp64 with the naive scan."""
    di, r, N = m.d_inner, m.dt_rank, m.d_state
    xz = u @ m.in_proj.weight.T
    x, z = xz[..., :di], xz[..., di:]
    L = u.shape[1]
    xp = F.pad(x, (0, 0, 3, 0))  # (B, L+3, di)
    w = m.conv1d.weight[:, 0, :]  # (di, 4)
    c = sum(w[:, k] * xp[:, k : k + L] for k in range(4)) + m.conv1d.bias
    x = F.silu(c)
    dbl = x @ m.x_proj.weight.T
    dt_low, Bm, Cm = dbl[..., :r], dbl[..., r : r + N], dbl[..., r + N :]
    delta = dt_low @ m.dt_proj.weight.T
    y = selective_scan_naive(
        x.transpose(1, 2), delta.transpose(1, 2), -torch.exp(m.A_log), Bm.transpose(1, 2), Cm.transpose(1, 2),
        D=m.D, z=z.transpose(1, 2), delta_bias=m.dt_proj.bias, delta_softplus=True,
    )
    return y.transpose(1, 2) @ m.out_proj.weight.T


def test_mamba_forward_matches_independent_reference():
    torch.manual_seed(0)
    m = Mamba(d_model=12, d_state=4).double()
    u = torch.randn(2, 23, 12, dtype=torch.float64)
    torch.testing.assert_close(m(u), reference_mamba(m, u), rtol=1e-10, atol=1e-10)


def test_mamba_reverse_equals_flip_and_grads():
    torch.manual_seed(1)
    m = Mamba(d_model=8, d_state=4).double()
    u = torch.randn(2, 19, 8, dtype=torch.float64, requires_grad=True)
    a = m(u, reverse=True)
    b = m(u.flip(1)).flip(1)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    go = torch.randn_like(a)
    ga = torch.autograd.grad((a * go).sum(), [u, *m.parameters()])
    gb = torch.autograd.grad((b * go).sum(), [u, *m.parameters()])
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)


def test_mamba_initialisation_and_shapes():
    torch.manual_seed(0)
    m = Mamba(d_model=256)
    assert m.dt_rank == 16 and m.d_inner == 512
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert list(shapes)[:2] == ["A_log", "D"]
    assert shapes == {
        "A_log": (512, 16), "D": (512,), "in_proj.weight": (1024, 256), "conv1d.weight": (512, 1, 4),
        "conv1d.bias": (512,), "x_proj.weight": (48, 512), "dt_proj.weight": (512, 16),
        "dt_proj.bias": (512,), "out_proj.weight": (256, 512),
    }
    assert torch.equal(m.A_log.detach(), torch.log(torch.arange(1, 17.0)).expand(512, 16))
    torch.testing.assert_close(-torch.exp(m.A_log.detach()), -torch.arange(1, 17.0).expand(512, 16))
    assert torch.equal(m.D, torch.ones(512))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert m.dt_proj.weight.abs().max() <= 16 ** -0.5
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_proj.bias._no_reinit
    assert Mamba(d_model=118).dt_rank == 8
    with pytest.raises(ValueError, match=r"expects \(B, L, 256\)"):
        m(torch.zeros(1, 4, 255))


def test_rmsnorm_formula_and_fused_add_dtypes():
    torch.manual_seed(0)
    n = RMSNorm(6)
    with torch.no_grad():
        n.weight.uniform_(0.5, 1.5)
    x, r = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    s = x + r
    expect = s * (s.pow(2).mean(-1, keepdim=True) + 1e-5).rsqrt() * n.weight
    out, res = n(x, r, prenorm=True)
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(res, s)
    # bf16 hidden with an fp32 residual: output in bf16, residual stream stays fp32.
    out, res = n(x.bfloat16(), r, prenorm=True)
    assert out.dtype == torch.bfloat16 and res.dtype == torch.float32
    _, res0 = n(x.bfloat16(), None, prenorm=True, residual_in_fp32=True)
    assert res0.dtype == torch.float32
    _, res1 = n(x.bfloat16(), None, prenorm=True, residual_in_fp32=False)
    assert res1.dtype == torch.bfloat16
    assert math.isclose(n.eps, 1e-5)
