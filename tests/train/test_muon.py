"""BatchedMuon vs torch.optim.Muon (spec §4.3): same step semantics, batched Newton–Schulz."""

import copy
import math

import pytest
import torch

from strandwise.train.muon import BatchedMuon, newton_schulz_batched

# Cherimoya-like mix: tall (2C, C), wide (C, 2C), square, and a lone odd shape
SHAPES = [(32, 16)] * 3 + [(16, 32)] * 3 + [(24, 24), (8, 40)]
# bf16 Newton–Schulz: a batched product may sum in another order than the per-matrix one, so the
# two may differ by bf16 rounding (~2^-8 relative per element, ~1e-3 relative on the whole update).
# On CPU they have agreed bit for bit; the bound is what the docstring promises.
UPDATE_RTOL = 1e-3


def _pair(shapes, seed=0, **kw):
    torch.manual_seed(seed)
    ref = [torch.nn.Parameter(torch.randn(s) * 0.02) for s in shapes]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    return ref, ours, torch.optim.Muon(ref, **kw), BatchedMuon(ours, **kw)


def _run(ref, ours, o_ref, o_ours, steps, seed=1, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(steps):
        for p, q in zip(ref, ours):
            g = torch.randn(p.shape, generator=gen).to(device)
            p.grad, q.grad = g.clone(), g.clone()
        before = [p.detach().clone() for p in ref]
        o_ref.step()
        o_ours.step()
        for p, q, b in zip(ref, ours, before):
            d_ref, d_ours = p.detach() - b, q.detach() - b
            worst = max(worst, ((d_ref - d_ours).norm() / d_ref.norm()).item())
    return worst


@pytest.mark.parametrize(
    "kw",
    [dict(lr=0.025, weight_decay=0.03),  # Cherimoya's Muon settings
     dict(lr=0.01, weight_decay=0.0, nesterov=False),
     dict(lr=0.02, weight_decay=0.1, momentum=0.9, adjust_lr_fn="match_rms_adamw", ns_steps=3)],
)
def test_matches_torch_muon_over_steps(kw):
    ref, ours, o_ref, o_ours = _pair(SHAPES, **kw)
    worst = _run(ref, ours, o_ref, o_ours, steps=6)
    assert worst <= UPDATE_RTOL
    for p, q in zip(ref, ours):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(o_ours.state[q]["momentum_buffer"], o_ref.state[p]["momentum_buffer"],
                                   rtol=1e-6, atol=1e-7)  # fp32 lerp: identical arithmetic


def test_first_step_formula():
    # step 1 from zero momentum: buffer = (1-μ)g, Nesterov update = (1-μ)g + μ(1-μ)g ∝ g, and the
    # NS output is scale-invariant, so θ1 = θ0(1 - lr·wd) - lr·√(max(1, r/c))·NS(g)
    torch.manual_seed(3)
    p = torch.nn.Parameter(torch.randn(32, 16))
    g = torch.randn(32, 16)
    theta0 = p.detach().clone()
    p.grad = g.clone()
    BatchedMuon([p], lr=0.1, weight_decay=0.5).step()
    O = newton_schulz_batched(g[None] * (1 - 0.95) * (1 + 0.95))[0].float()
    expect = theta0 * (1 - 0.1 * 0.5) - 0.1 * math.sqrt(2.0) * O
    torch.testing.assert_close(p.detach(), expect, rtol=1e-5, atol=1e-6)


def test_newton_schulz_orthogonalises():
    # 5 quintic steps push singular values into roughly [0.5, 1.5] (not exactly 1, by design)
    G = torch.randn(4, 16, 48, generator=torch.Generator().manual_seed(0))
    O = newton_schulz_batched(G).float()
    s = torch.linalg.svdvals(O)
    assert s.min() > 0.4 and s.max() < 1.6
    # tall input is handled through the transpose: same result as orthogonalising Gᵀ
    Ot = newton_schulz_batched(G.transpose(1, 2).contiguous()).float()
    torch.testing.assert_close(Ot, O.transpose(1, 2), rtol=0, atol=0)


def test_state_dict_interchangeable_with_torch_muon():
    ref, ours, o_ref, o_ours = _pair(SHAPES, lr=0.025, weight_decay=0.03)
    _run(ref, ours, o_ref, o_ours, steps=2)
    # torch's state loads into BatchedMuon and the next steps still agree
    o_new = BatchedMuon(ours, lr=0.025, weight_decay=0.03)
    o_new.load_state_dict(copy.deepcopy(o_ref.state_dict()))  # own buffers, not torch's
    for p, q in zip(ref, ours):
        q.data.copy_(p.data)
    assert _run(ref, ours, o_ref, o_new, steps=2, seed=5) <= UPDATE_RTOL


def test_skips_params_without_grad_and_validates():
    a = torch.nn.Parameter(torch.ones(4, 4))
    b = torch.nn.Parameter(torch.ones(4, 4))
    opt = BatchedMuon([a, b], lr=0.1)
    a.grad = torch.randn(4, 4)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(4, 4)) and b not in opt.state
    assert not torch.equal(a.detach(), torch.ones(4, 4))
    with pytest.raises(ValueError, match="2D"):
        BatchedMuon([torch.nn.Parameter(torch.ones(3))])
    with pytest.raises(ValueError, match="not supported"):
        BatchedMuon([a], adjust_lr_fn="nope")
    with pytest.raises(ValueError, match="Learning rate"):
        BatchedMuon([a], lr=-1.0)
    with pytest.raises(ValueError, match="B, rows, cols"):
        newton_schulz_batched(torch.ones(3, 3))


@pytest.mark.gpu
def test_matches_torch_muon_cuda():
    shapes = [(256, 128)] * 9 + [(128, 256)] * 9  # the upstream preset's 18 block matrices
    ref, ours, o_ref, o_ours = _pair(shapes, lr=0.025, weight_decay=0.03)
    for p in ref + ours:
        p.data = p.data.cuda()
    worst = _run(ref, ours, o_ref, o_ours, steps=4, device="cuda")
    # cuBLAS batched vs single bf16 GEMMs may pick other kernels (other summation orders)
    assert worst <= 2e-2, worst


def test_build_optimizers_muon_impl():
    from strandwise.models.cherimoya import Cherimoya
    from strandwise.train.optim import OptimizerConfig, build_optimizers

    m = Cherimoya(n_filters=8, n_layers=2)
    assert type(build_optimizers(m, OptimizerConfig())["muon"]) is BatchedMuon
    assert type(build_optimizers(m, OptimizerConfig(muon_impl="torch"))["muon"]) is torch.optim.Muon
    assert not build_optimizers(m, OptimizerConfig())["adamw"].defaults.get("fused")  # CPU: unfused
    with pytest.raises(ValueError, match="muon_impl"):
        OptimizerConfig(muon_impl="fast").validate()
