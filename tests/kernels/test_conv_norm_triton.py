"""Triton conv+norm (forward and backward) against the CPU reference (spec §2.8, §9 ideas 6, 7, 9-11).

All tests need CUDA + Triton (``gpu`` marker). Shape sweeps use one heuristic config per kernel
(``set_autotune(False)``) so the run is not dominated by compiling every config; the autotuner
itself is exercised by the first-call and every-config tests.
"""

import pytest
import torch

from strandwise.kernels.conv_norm import _cheri_conv_norm_cpu, fused_dilated_conv_norm

pytestmark = pytest.mark.gpu

DT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# max |triton − ref| / max |ref| per dtype (half outputs are rounded to 8 / 11 significant bits)
REL_TOL = {"fp32": 1e-4, "bf16": 1e-2, "fp16": 2e-3}


def _inputs(N, L, C, dtype, wscale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, L, C, generator=gen).to(dtype)
    w = torch.randn(3, C, generator=gen) * wscale
    g = torch.randn(N, L, C, generator=gen).to(dtype)
    return x, w, g


def _reference(x, w, g, d):
    """CPU fp32 forward and autograd grads of the reference, from the same (rounded) inputs."""
    xr = x.float().clone().requires_grad_(True)
    wr = w.float().clone().requires_grad_(True)
    out = _cheri_conv_norm_cpu(xr, wr, d)
    out.backward(g.float())
    return out.detach(), xr.grad, wr.grad


def _rel(a, b):
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    assert torch.isfinite(a).all()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def _run_triton(x, w, g, d):
    from strandwise.kernels.conv_norm import FusedDilatedConvNormFunc

    xc = x.cuda().requires_grad_(True)
    wc = w.cuda().requires_grad_(True)
    out = FusedDilatedConvNormFunc.apply(xc, wc, d)
    out.backward(g.cuda())
    return out.detach(), xc.grad, wc.grad


def test_spec_case_fp32_abs_1e3(cnt):
    # spec §2.8: N=2, L=128, C=16, d=4, weights scaled by 0.1 — max-abs 1e-3 (fwd), 1e-3 (grads)
    x, w, g = _inputs(2, 128, 16, torch.float32, wscale=0.1)
    ro, rdx, rdw = _reference(x, w, g, 4)
    out, dx, dw = _run_triton(x, w, g, 4)
    assert (out.cpu() - ro).abs().max() <= 1e-4
    torch.testing.assert_close(dx.cpu(), rdx, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(dw.cpu(), rdw, atol=1e-3, rtol=1e-3)


SHAPES = [
    # N, L, C, d, dtype
    (1, 1, 32, 1, "fp32"),
    (3, 1000, 96, 7, "fp32"),
    (2, 4096, 32, 256, "fp32"),
    (4, 333, 512, 16, "fp32"),
    (512, 64, 128, 4, "fp32"),
    (2, 2114, 128, 256, "bf16"),
    (5, 777, 24, 3, "bf16"),
    (64, 257, 128, 64, "bf16"),
    (2, 1025, 64, 1, "fp16"),
    (3, 100, 320, 128, "fp16"),
]


@pytest.mark.parametrize("N,L,C,d,dt", SHAPES)
def test_forward_and_grads_match_reference(cnt, N, L, C, d, dt):
    x, w, g = _inputs(N, L, C, DT[dt], seed=N + L + C + d)
    ro, rdx, rdw = _reference(x, w, g, d)
    out, dx, dw = _run_triton(x, w, g, d)
    assert out.dtype == DT[dt] and dx.dtype == DT[dt] and dw.dtype == torch.float32
    tol = REL_TOL[dt]
    assert _rel(out, ro) <= tol
    assert _rel(dx, rdx) <= tol * 3  # dx sums three δ terms, each rounded once
    assert _rel(dw, rdw) <= (1e-4 if dt == "fp32" else tol)


def test_statistics_are_fp32_and_match(cnt):
    x, w, _ = _inputs(3, 500, 64, torch.bfloat16)
    out, mean, rstd = cnt.conv_norm_fwd(x.cuda(), w.cuda(), 5, 1e-3)
    assert mean.dtype == torch.float32 and rstd.dtype == torch.float32
    from strandwise.kernels.conv_norm import conv_norm_forward_reference

    _, rm, rr = conv_norm_forward_reference(x, w, 5)
    torch.testing.assert_close(mean.cpu(), rm, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rstd.cpu(), rr, atol=1e-6, rtol=1e-5)


def test_scratch_plan_equals_recompute_plan(cnt):
    x, w, g = _inputs(4, 700, 128, torch.float32)
    xc, wc, gc = x.cuda(), w.cuda(), g.cuda()
    _, mean, rstd = cnt.conv_norm_fwd(xc, wc, 8, 1e-3)
    dx1, dw1 = cnt.conv_norm_bwd(gc, xc, wc, mean, rstd, 8)
    dx2, dw2 = cnt.conv_norm_bwd_scratch(gc, xc, wc, mean, rstd, 8)
    torch.testing.assert_close(dx1, dx2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dw1, dw2, atol=1e-5, rtol=1e-6)


def test_first_call_after_autotune_is_correct_and_deterministic(cnt):
    # fresh (C, L) never seen in this process: the very first call autotunes all four kernels
    cnt.set_autotune(True)
    x, w, g = _inputs(6, 999, 64, torch.float32, seed=11)
    ro, rdx, rdw = _reference(x, w, g, 9)
    out1, dx1, dw1 = _run_triton(x, w, g, 9)
    assert _rel(out1, ro) <= 1e-4 and _rel(dx1, rdx) <= 3e-4 and _rel(dw1, rdw) <= 1e-4
    out2, dx2, dw2 = _run_triton(x, w, g, 9)
    # no atomics anywhere: bit-identical on repeat
    assert torch.equal(out1, out2) and torch.equal(dx1, dx2) and torch.equal(dw1, dw2)
    # the tuner really compared distinct launch configurations
    timed = cnt._bwd_comb_tuned.configs_timings
    assert len(timed) >= 2
    assert len({(c.kwargs["BLOCK_L"], c.kwargs["K"], c.num_warps) for c in timed}) == len(timed)


def test_every_pruned_config_is_correct(cnt):
    # each config the tuner may pick gives the right answer (not only the winner)
    x, w, g = _inputs(3, 555, 64, torch.float32, seed=5)
    ro, rdx, rdw = _reference(x, w, g, 3)
    xc, wc, gc = x.cuda(), w.cuda(), g.cuda()
    configs = cnt._prune(cnt.conv_norm_configs(), {"L": 555}, BLOCK_C=64)
    assert len({c.num_warps for c in configs}) >= 2 and len({c.kwargs["BLOCK_L"] for c in configs}) >= 2
    orig = cnt._heuristic
    try:
        for cfg in configs:
            cnt._heuristic = lambda L, bc, cfg=cfg: (dict(cfg.kwargs), cfg.num_warps)
            out, mean, rstd = cnt.conv_norm_fwd(xc, wc, 3, 1e-3)
            dx, dw = cnt.conv_norm_bwd(gc, xc, wc, mean, rstd, 3)
            assert _rel(out, ro) <= 1e-4, cfg
            assert _rel(dx, rdx) <= 3e-4, cfg
            assert _rel(dw, rdw) <= 1e-4, cfg
    finally:
        cnt._heuristic = orig
    # and every config of the comb backward (the default main pass), with and without a residual
    _, mean, rstd = cnt.conv_norm_fwd(xc, wc, 3, 1e-3)
    combs = cnt._comb_prune(cnt.comb_configs(), {"L": 555, "D": 3}, BLOCK_C=64)
    assert len({(c.kwargs["BLOCK_L"], c.kwargs["K"]) for c in combs}) >= 3
    r = torch.randn_like(xc)
    orig = cnt._comb_heuristic
    try:
        for cfg in combs:
            cnt._comb_heuristic = lambda L, D, bc, cfg=cfg: (dict(cfg.kwargs), cfg.num_warps)
            dx, dw = cnt.conv_norm_bwd(gc, xc, wc, mean, rstd, 3)
            assert _rel(dx, rdx) <= 3e-4 and _rel(dw, rdw) <= 1e-4, cfg
            dxr, dwr = cnt.conv_norm_bwd(gc, xc, wc, mean, rstd, 3, residual=r)
            assert torch.equal(dwr, dw), cfg
            torch.testing.assert_close(dxr, dx + r, atol=1e-5, rtol=1e-6)
    finally:
        cnt._comb_heuristic = orig


def test_comb_and_tile_backward_agree(cnt):
    # the comb main pass against the per-tile one it replaced, over dilations both below and
    # above the tile's row count (the two lane layouts) and one that divides neither
    for L, d in ((1000, 1), (1000, 4), (777, 48), (1024, 256), (300, 100)):
        x, w, g = _inputs(3, L, 96, torch.float32, seed=L + d)
        xc, wc, gc = x.cuda(), w.cuda(), g.cuda()
        _, mean, rstd = cnt.conv_norm_fwd(xc, wc, d, 1e-3)
        dx1, dw1 = cnt.conv_norm_bwd(gc, xc, wc, mean, rstd, d)
        dx2, dw2 = cnt.conv_norm_bwd_tile(gc, xc, wc, mean, rstd, d)
        torch.testing.assert_close(dx1, dx2, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(dw1, dw2, atol=1e-4, rtol=1e-5)


def test_non_contiguous_input_same_as_contiguous(cnt):
    x, w, g = _inputs(2, 300, 64, torch.float32)
    xt = x.cuda().transpose(1, 2).contiguous().transpose(1, 2)  # (N, L, C) view, stride(C) != 1
    assert not xt.is_contiguous()
    a = fused_dilated_conv_norm(xt, w.cuda(), 4)
    b = fused_dilated_conv_norm(x.cuda(), w.cuda(), 4)
    assert torch.equal(a, b)


@pytest.mark.parametrize("grad", [True, False])
def test_dispatcher_uses_triton_on_cuda(cnt, monkeypatch, grad):
    calls = []
    real = cnt.conv_norm_fwd

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(cnt, "conv_norm_fwd", spy)
    x, w, _ = _inputs(2, 64, 32, torch.float32)
    with torch.set_grad_enabled(grad):
        out = fused_dilated_conv_norm(x.cuda().requires_grad_(grad), w.cuda(), 2)
    assert calls == [1]
    assert _rel(out, _cheri_conv_norm_cpu(x, w, 2)) <= 1e-4
