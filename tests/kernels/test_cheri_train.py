"""Fused Cheri Block training path (bf16/fp16 on CUDA) vs the float64 CPU block: forward and every
gradient, the unfused GPU path, first call after autotuning, and dispatch from ``CheriBlock``."""

import pytest
import torch
import torch.nn.functional as F

from interpreter_run import run_under_interpreter
from strandwise.kernels.cheri_train import cheri_block_train, cheri_train_eligible
from strandwise.kernels.conv_norm import _cheri_conv_norm_cpu
from strandwise.models.cherimoya import CheriBlock

DT = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: relative precision of one rounding in each dtype
EPS = {"bf16": 2.0**-8, "fp16": 2.0**-11}


def ref_block(x, cw, w1, w2, d, s=0.15):
    """The CPU block's arithmetic (differentiable), in the inputs' dtype."""
    h = _cheri_conv_norm_cpu(x, cw, d)
    return x + s * F.linear(F.gelu(F.linear(h, w1), approximate="tanh"), w2)


def block_inputs(N, L, C, H, seed=0, wscale=0.2):
    """x, conv taps, W1, W2 and an upstream gradient; weights ~10x the init scale so the MLP
    branch is not negligible next to the residual."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, L, C, generator=g), torch.randn(3, C, generator=g),
            torch.randn(H, C, generator=g) * wscale, torch.randn(C, H, generator=g) * wscale,
            torch.randn(N, L, C, generator=g))


def reference_grads(x, cw, w1, w2, gout, d):
    """float64 output and gradients of (x, cw, w1, w2)."""
    ts = [t.double().requires_grad_() for t in (x, cw, w1, w2)]
    out = ref_block(*ts, d)
    return out.detach(), torch.autograd.grad(out, ts, gout.double())


def rel_err(a, b):
    return ((a.double().cpu() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


_INTERP_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
import torch
from test_cheri_train import block_inputs, reference_grads, rel_err
from interpreter_run import assert_first_order_only
from strandwise.kernels import conv_norm_triton
from strandwise.kernels.cheri_infer import _infer_impl
from strandwise.kernels.cheri_train import CheriBlockTrainFunc

conv_norm_triton.set_autotune(False)  # the autotuner needs a GPU driver
from strandwise.kernels import _host
_host.CAPPED_CONFIGS = True  # the host then launches the unmasked EVEN variant for full tiles
# (N, L, C, H, dilation): C < BLOCK_C tile and not a power of two, L shorter than one row tile,
# dilation beyond L, H with a partial last hidden chunk; and full tiles (N·L % 128 == 0, C a power
# of two: EVEN)
for N, L, C, H, d in [(2, 70, 32, 64, 4), (1, 19, 48, 96, 16), (2, 40, 16, 32, 1), (1, 9, 24, 48, 64),
                      (2, 64, 32, 64, 8)]:
    x, cw, w1, w2, g = block_inputs(N, L, C, H, seed=L)
    ref, ref_grads = reference_grads(x, cw, w1, w2, g, d)
    xh = x.half().requires_grad_()  # fp16: the interpreter has no bf16 arithmetic
    ps = [t.clone().requires_grad_() for t in (cw, w1, w2)]
    out = CheriBlockTrainFunc.apply(xh, *ps, d, 0.15, 1e-3)
    grads = torch.autograd.grad(out, [xh] + ps, g.half())
    assert out.dtype == torch.float16 and grads[0].dtype == torch.float16
    assert all(t.dtype == torch.float32 for t in grads[1:])
    assert rel_err(out, ref) < 2e-3, (N, L, C, H, d, rel_err(out, ref))
    for name, a, b in zip(("x", "cw", "w1", "w2"), grads, ref_grads):
        assert rel_err(a, b) < 3e-3, (N, L, C, H, d, name, rel_err(a, b))
    # the same kernel's inference variant (SAVE=0), through the megakernel's host code
    with torch.no_grad():
        inf = _infer_impl(x.half(), cw, w1, w2, d, 0.15, 1e-3, "bf16")
    assert inf.dtype == torch.float16 and rel_err(inf, ref) < 2e-3, (N, L, C, H, d, rel_err(inf, ref))
# a second derivative through the Triton backward raises instead of silently dropping the block
assert_first_order_only(CheriBlockTrainFunc.apply(xh, *ps, d, 0.15, 1e-3), xh)
print("INTERPRETER-OK")
"""


def test_fused_block_and_megakernel_under_interpreter():
    run_under_interpreter(_INTERP_SCRIPT, __file__)


def run_mlp_bwd_configs(configs, device, dtype, N=2, L=50, C=32, H=64, seed=0):
    """Launch the backward MLP kernel once per config (``triton.Config``) on the same inputs;
    returns ``[(dz, dx̂, row sums)]``."""
    from strandwise.kernels import cheri_train_triton as ctt

    gen = torch.Generator().manual_seed(seed)
    mk = lambda *shape, s=1.0: (torch.randn(*shape, generator=gen) * s).to(device, dtype)  # noqa: E731
    dout, z, xn = mk(N * L, C), mk(N * L, H), mk(N * L, C)
    w1, w2s = mk(H, C, s=0.2), mk(C, H, s=0.2)
    res = []
    for cfg in configs:
        dz = torch.empty(N * L, H, device=device, dtype=dtype)
        dxn = torch.empty(N * L, C, device=device, dtype=dtype)
        rs = torch.empty(2, N * L, device=device, dtype=torch.float32)
        grid = (-(-N * L // cfg.kwargs["BLOCK_M"]),)
        ctt.mlp_bwd_kernel[grid](dout, z, w1, w2s, dz, dxn, xn, rs, N * L, C, H, BLOCK_C=max(16, C),
                                 FAST_GELU=False, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
                                 **cfg.kwargs)
        res.append((dz, dxn, rs))
    return res


_PREFETCH_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
import torch
import triton
from test_cheri_train import run_mlp_bwd_configs

# x̂ loaded before or after the hidden loop: the same values (fp16: the interpreter has no bf16)
cfgs = [triton.Config(dict(BLOCK_M=32, BLOCK_H=32, PREFETCH_XN=pf), num_warps=4, num_stages=2)
        for pf in (0, 1)]
(dz0, dxn0, rs0), (dz1, dxn1, rs1) = run_mlp_bwd_configs(cfgs, "cpu", torch.float16)
assert torch.equal(dz0, dz1) and torch.equal(dxn0, dxn1) and torch.equal(rs0, rs1)
assert torch.allclose(rs0[0], dxn0.float().sum(1), rtol=1e-5, atol=1e-4)  # S1 per row
print("INTERPRETER-OK")
"""


def test_mlp_bwd_prefetch_variant_under_interpreter():
    run_under_interpreter(_PREFETCH_SCRIPT, __file__)


@pytest.mark.gpu
def test_every_mlp_bwd_config_gives_the_same_values():
    # each config the tuner may pick (tile shapes, stages, early or late x̂ load) on one input:
    # dz and dx̂ agree to fp32 summation order, the row sums likewise
    from strandwise.kernels import cheri_train_triton as ctt

    cfgs = ctt._prune(ctt.bwd_configs(), {"H": 256, "C": 128}, BLOCK_C=128)
    assert {c.kwargs["PREFETCH_XN"] for c in cfgs} == {0, 1}
    runs = run_mlp_bwd_configs(cfgs, "cuda", torch.bfloat16, N=3, L=333, C=128, H=256)
    for cfg, (dz, dxn, rs) in zip(cfgs, runs):
        for a, b in zip((dz, dxn, rs), runs[0]):
            assert rel_err(a, b.double().cpu()) < 2 * EPS["bf16"], cfg


_FP32_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
import torch
from test_cheri_train import block_inputs, reference_grads, rel_err
from strandwise.kernels import conv_norm_triton
from strandwise.kernels.cheri_train import CheriBlockTrainFunc, fp32_train_precision, set_fused_training_fp32

conv_norm_triton.set_autotune(False)
set_fused_training_fp32(True)
assert fp32_train_precision() == "tf32x3"
for N, L, C, H, d in [(2, 70, 32, 64, 4), (1, 19, 48, 96, 16)]:
    x, cw, w1, w2, g = block_inputs(N, L, C, H, seed=L)
    ref, ref_grads = reference_grads(x, cw, w1, w2, g, d)
    xf = x.clone().requires_grad_()
    ps = [t.clone().requires_grad_() for t in (cw, w1, w2)]
    out = CheriBlockTrainFunc.apply(xf, *ps, d, 0.15, 1e-3)
    grads = torch.autograd.grad(out, [xf] + ps, g)
    assert out.dtype == torch.float32 and all(t.dtype == torch.float32 for t in grads)
    # fp32 end to end: only fp32 rounding (the interpreter's products are fp32 numpy products)
    assert rel_err(out, ref) < 1e-5, (N, L, C, H, d, rel_err(out, ref))
    for name, a, b in zip(("x", "cw", "w1", "w2"), grads, ref_grads):
        assert rel_err(a, b) < 1e-4, (N, L, C, H, d, name, rel_err(a, b))
print("INTERPRETER-OK")
"""


def test_fp32_fused_block_under_interpreter():
    run_under_interpreter(_FP32_SCRIPT, __file__)


def test_fp32_fused_path_is_opt_in():
    from strandwise.kernels import cheri_train as ct

    assert ct._FP32["on"] is False or __import__("os").environ.get("STRANDWISE_FUSED_FP32") == "1"
    for bad in ("fp8", "bf16x3", "bf16x6"):  # Triton's bf16 splits gave wrong products (H100)
        with pytest.raises(ValueError, match="precision"):
            ct.set_fused_training_fp32(True, precision=bad)
    prev = dict(ct._FP32)
    try:
        ct.set_fused_training_fp32(True, precision="ieee")
        tf32 = torch.backends.cuda.matmul.allow_tf32
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            assert ct.fp32_train_precision() == "ieee"
            torch.backends.cuda.matmul.allow_tf32 = True
            assert ct.fp32_train_precision() == "tf32"  # PyTorch's TF32 switch wins
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        x, cw, w1, w2, _ = block_inputs(1, 8, 16, 32)
        assert not cheri_train_eligible(x, cw, w1, w2)  # still CPU
    finally:
        ct._FP32.update(prev)


def test_not_eligible_on_cpu_or_fp32():
    x, cw, w1, w2, _ = block_inputs(1, 8, 16, 32)
    assert not cheri_train_eligible(x, cw, w1, w2)
    assert not cheri_train_eligible(x.half(), cw, w1, w2)  # CPU
    with pytest.raises(ValueError, match="cheri_block_train needs"):
        cheri_block_train(x, cw, w1, w2, 2)


# ------------------------------------------------------------------------------------- GPU


def _fused(x, cw, w1, w2, gout, d, dt):
    xg = x.cuda().to(DT[dt]).requires_grad_()
    ps = [t.cuda().requires_grad_() for t in (cw, w1, w2)]
    out = cheri_block_train(xg, *ps, d)
    return out, torch.autograd.grad(out, [xg] + ps, gout.cuda().to(DT[dt]))


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16"])
@pytest.mark.parametrize(
    "N,L,C,H,d",
    [(1, 1, 32, 64, 1), (3, 37, 32, 64, 2), (2, 1000, 96, 192, 4), (4, 513, 128, 256, 16),
     (2, 300, 256, 512, 256), (1, 4096, 64, 128, 64), (8, 211, 48, 96, 8), (2, 128, 128, 64, 1)],
)
def test_fused_block_vs_float64(cnt, N, L, C, H, d, dt):
    x, cw, w1, w2, g = block_inputs(N, L, C, H, seed=C + L)
    ref, ref_grads = reference_grads(x, cw, w1, w2, g, d)
    out, grads = _fused(x, cw, w1, w2, g, d, dt)
    assert out.dtype == DT[dt] and grads[0].dtype == DT[dt]
    # one rounding of |out| plus the half-precision operands of the two products
    assert rel_err(out, ref) < 4 * EPS[dt], rel_err(out, ref)
    for name, a, b in zip(("x", "cw", "w1", "w2"), grads, ref_grads):
        assert rel_err(a, b) < 8 * EPS[dt], (name, rel_err(a, b))


@pytest.mark.gpu
@pytest.mark.parametrize("prec,tol", [("tf32x3", 3e-5), ("ieee", 3e-6)])
@pytest.mark.parametrize("N,L,C,H,d", [(3, 37, 32, 64, 2), (4, 513, 128, 256, 16), (2, 300, 256, 512, 256)])
def test_fp32_fused_block_vs_float64(cnt, N, L, C, H, d, prec, tol, monkeypatch):
    from strandwise.kernels import cheri_train as ct

    monkeypatch.setitem(ct._FP32, "on", True)
    monkeypatch.setitem(ct._FP32, "precision", prec)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    x, cw, w1, w2, g = block_inputs(N, L, C, H, seed=C + L)
    ref, ref_grads = reference_grads(x, cw, w1, w2, g, d)
    xg = x.cuda().requires_grad_()
    ps = [t.cuda().requires_grad_() for t in (cw, w1, w2)]
    assert cheri_train_eligible(xg, *ps)
    out = cheri_block_train(xg, *ps, d)
    grads = torch.autograd.grad(out, [xg] + ps, g.cuda())
    assert out.dtype == torch.float32
    assert rel_err(out, ref) < tol, rel_err(out, ref)
    for name, a, b in zip(("x", "cw", "w1", "w2"), grads, ref_grads):
        assert rel_err(a, b) < 4 * tol, (name, rel_err(a, b))


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp16"])
def test_fused_block_matches_unfused_gpu_path(cnt, dt):
    """Fused vs the unfused CUDA path of the same block (Triton conv-norm + cuBLAS), both in dt."""
    torch.manual_seed(0)
    blk = CheriBlock(128, 4).cuda()
    for lin in (blk.linear1, blk.linear2):
        torch.nn.init.trunc_normal_(lin.weight, std=0.2)
    x = torch.randn(4, 700, 128, device="cuda", dtype=DT[dt])
    g = torch.randn_like(x)

    def run(fused):
        blk.fused_training = fused
        blk.zero_grad()
        xg = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=DT[dt]):
            out = blk(xg)
        out.backward(g)
        return out.detach().float(), [xg.grad.float()] + [p.grad.float() for p in blk.parameters()]

    out_f, grads_f = run(True)
    out_u, grads_u = run(False)
    assert rel_err(out_f, out_u.double().cpu()) < 4 * EPS[dt]
    for a, b in zip(grads_f, grads_u):
        assert rel_err(a, b.double().cpu()) < 8 * EPS[dt]


@pytest.mark.gpu
def test_fused_block_first_call_after_autotuning():
    """Autotuning on, a shape no other test uses, no warm-up: the first result is the later one
    (every trial only reads its inputs) and agrees with float64."""
    from strandwise.kernels import conv_norm_triton

    assert conv_norm_triton.autotune_enabled()
    x, cw, w1, w2, g = block_inputs(3, 777, 80, 160, seed=7)
    ref, ref_grads = reference_grads(x, cw, w1, w2, g, 8)
    out1, grads1 = _fused(x, cw, w1, w2, g, 8, "bf16")
    out2, grads2 = _fused(x, cw, w1, w2, g, 8, "bf16")
    assert torch.equal(out1, out2)
    assert rel_err(out1, ref) < 4 * EPS["bf16"]
    # dx, dx̂-derived W1 grads and the deterministic conv-norm sums are run-to-run identical;
    # cuBLAS split-K weight gradients may pick other kernels but not other values beyond rounding
    assert torch.equal(grads1[0], grads2[0]) and torch.equal(grads1[1], grads2[1])
    for name, a, b, c in zip(("x", "cw", "w1", "w2"), grads1, ref_grads, grads2):
        assert rel_err(a, b) < 8 * EPS["bf16"], name
        assert rel_err(a, c.double().cpu()) < 1e-6, name


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["bf16", "fp32"])
def test_conv_norm_bwd_residual_is_added(cnt, dt):
    d = {"bf16": torch.bfloat16, "fp32": torch.float32}[dt]
    x = torch.randn(3, 301, 96, device="cuda", dtype=d)
    w = torch.randn(3, 96, device="cuda")
    g = torch.randn_like(x)
    r = torch.randn_like(x)
    _, mean, rstd = cnt.conv_norm_fwd(x, w, 4, 1e-3)
    dx0, dw0 = cnt.conv_norm_bwd(g, x, w, mean, rstd, 4)
    dx1, dw1 = cnt.conv_norm_bwd(g, x, w, mean, rstd, 4, residual=r)
    assert torch.equal(dw0, dw1)
    # fp32: both are fl(dx + r); bf16: dx0 is rounded before the add (half an ulp of dx) and
    # dx1 only after it (half an ulp of dx + r): |dx1 - (dx0 + r)| <= 2^-8·(|dx| + |dx + r|)
    tol = 0.0 if dt == "fp32" else 2.0**-7
    err = (dx1.float() - (dx0.float() + r.float())).abs()
    assert bool((err <= 1e-6 + tol * (dx0.float().abs() + r.float().abs())).all())


@pytest.mark.gpu
def test_mlp_backward_row_sums_are_the_conv_norm_statistics(cnt):
    """The backward MLP kernel's S1 = Σ dx̂, S2 = Σ dx̂·x̂ (from the saved bf16 x̂) agree with the
    conv-norm's own statistics pass (fp32 x̂ recomputed from x) to x̂'s rounding."""
    from strandwise.kernels.cheri_train import _mlp_backward

    N, L, C, H, d = 4, 777, 96, 192, 8
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(N, L, C, generator=gen).cuda().bfloat16()
    cw = torch.randn(3, C, generator=gen).cuda()
    xn, mean, rstd = cnt.conv_norm_fwd(x, cw, d, 1e-3)
    z = torch.randn(N * L, H, generator=gen).cuda().bfloat16()
    w1 = (torch.randn(H, C, generator=gen) * 0.1).cuda().bfloat16()
    w2 = (torch.randn(C, H, generator=gen) * 0.1).cuda().bfloat16()
    dout = torch.randn(N, L, C, generator=gen).cuda().bfloat16()
    _, dxn, sums = _mlp_backward(dout, z, w1, w2, xn)
    want = cnt._bwd_sums(dxn, x, cw, mean, rstd, d)
    scale = torch.stack([dxn.float().abs().sum((1, 2)), (dxn.float() * xn.float()).abs().sum((1, 2))])
    assert sums.shape == (2, N) and sums.dtype == torch.float32
    assert bool(((sums - want).abs() <= 2.0**-8 * scale).all()), (sums, want)


@pytest.mark.gpu
def test_cheriblock_dispatch(monkeypatch):
    """With ``fused_training`` on (the default), autocast bf16 training takes the fused block;
    fp32, a block with a hook, or ``fused_training`` off take the unfused path."""
    import strandwise.models.cherimoya as cm

    calls = []
    real = cm.cheri_block_train
    monkeypatch.setattr(cm, "cheri_block_train", lambda *a, **k: calls.append(1) or real(*a, **k))
    blk = CheriBlock(64, 2).cuda()
    x = torch.randn(2, 100, 64, device="cuda", requires_grad=True)
    assert blk.fused_training  # on by default
    with torch.autocast("cuda", dtype=torch.bfloat16):
        blk(x.bfloat16())
    assert calls == [1]
    blk(x)  # fp32
    with torch.autocast("cuda", dtype=torch.float16):
        blk(x.bfloat16())  # activations not in autocast's dtype
    blk.fused_training = False
    with torch.autocast("cuda", dtype=torch.bfloat16):
        blk(x.bfloat16())
    blk.fused_training = True
    handle = blk.linear1.register_forward_hook(lambda *a: None)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        blk(x.bfloat16())
    handle.remove()
    assert calls == [1]


@pytest.mark.gpu
def test_model_bf16_training_fused_vs_unfused():
    """A whole Cherimoya under bf16 autocast: loss gradients of every parameter with the fused
    blocks vs the unfused CUDA path (both bf16; they differ by where the roundings fall)."""
    from strandwise.models.cherimoya import Cherimoya

    m = Cherimoya(n_filters=64, n_layers=4, trimming=40, random_state=0).cuda()
    idx = torch.randint(0, 4, (4, 500), generator=torch.Generator().manual_seed(0))
    X = F.one_hot(idx, 4).transpose(1, 2).float().cuda()
    w = torch.randn(4, 1, 420, generator=torch.Generator().manual_seed(1)).cuda()

    def grads(fused):
        m.set_fused_training(fused)
        m.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yp, yc = m(X)
        ((yp.float() * w).sum() + yc.float().sum()).backward()
        return {k: p.grad.detach().double().cpu() for k, p in m.named_parameters() if p.grad is not None}

    gf, gu = grads(True), grads(False)
    assert gf.keys() == gu.keys() and len(gf) > 10
    for k in gf:
        assert rel_err(gf[k], gu[k]) < 4e-2, (k, rel_err(gf[k], gu[k]))


def test_fused_training_default_from_the_environment(monkeypatch):
    from strandwise.models.cherimoya import Cherimoya

    monkeypatch.delenv("STRANDWISE_FUSED_TRAINING", raising=False)
    assert all(b.fused_training for b in Cherimoya(n_filters=16, n_layers=2, trimming=10).blocks)
    monkeypatch.setenv("STRANDWISE_FUSED_TRAINING", "0")
    assert not any(b.fused_training for b in Cherimoya(n_filters=16, n_layers=2, trimming=10).blocks)
    monkeypatch.setenv("STRANDWISE_FUSED_TRAINING", "off")
    with pytest.raises(ValueError, match="STRANDWISE_FUSED_TRAINING must be 0 or 1"):
        CheriBlock(16, 2)


def test_set_fused_training_leaves_the_cpu_path_alone():
    from strandwise.models.cherimoya import Cherimoya

    m = Cherimoya(n_filters=16, n_layers=2, trimming=10, random_state=0)
    X = F.one_hot(torch.randint(0, 4, (2, 60), generator=torch.Generator().manual_seed(0)), 4)
    X = X.transpose(1, 2).float()

    def run():
        m.zero_grad()
        yp, yc = m(X)
        (yp.sum() + yc.sum()).backward()
        return [yp.detach(), yc.detach()] + [p.grad.clone() for p in m.parameters() if p.grad is not None]

    assert all(b.fused_training for b in m.blocks)  # the default
    before = run()
    assert m.set_fused_training(False) is m and not any(b.fused_training for b in m.blocks)
    after = run()
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    m.set_fused_training(True)
    assert all(b.fused_training for b in m.blocks)


@pytest.mark.gpu
def test_direct_launches_match_dispatch_across_batch_sizes():
    """The Cheri kernels launch directly after the first call per specialisation
    (``_host.DIRECT``). Over batch sizes that share every other size (the launcher's key leaves
    the batch out; each call brings its own grid), the fused block's output and gradients, the
    inference megakernel and the conv-norm Function equal the ordinary dispatch's."""
    from strandwise.kernels._host import DIRECT
    from strandwise.kernels.cheri_infer import cheri_block_inference
    from strandwise.kernels.conv_norm import fused_dilated_conv_norm

    def run(N):
        x, cw, w1, w2, g = block_inputs(N, 300, 64, 128, seed=N)
        xg = x.cuda().bfloat16().requires_grad_()
        ps = [t.cuda().requires_grad_() for t in (cw, w1, w2)]
        out = cheri_block_train(xg, *ps, 4)
        grads = torch.autograd.grad(out, [xg] + ps, g.cuda().bfloat16())
        xf = x.cuda().requires_grad_()
        cn = fused_dilated_conv_norm(xf, ps[0], 8)
        gcn = torch.autograd.grad(cn, [xf, ps[0]], g.cuda())
        with torch.no_grad():
            inf = cheri_block_inference(x.cuda().bfloat16(), *ps, 2)
        return (out, inf, cn) + tuple(grads) + tuple(gcn)

    for i, N in enumerate((3, 1, 4, 3)):
        hits = DIRECT.hits
        direct = run(N)
        if i == 3:  # N = 3 again: its 13 Triton launches (5 fused block, 5 conv-norm, 3 megakernel) go direct
            assert DIRECT.hits - hits >= 13
        elif i:  # batch-free keys (e.g. the statistics pass) are hits already at another N
            assert DIRECT.hits > hits
        DIRECT.enabled = False
        try:
            plain = run(N)
        finally:
            DIRECT.enabled = True
        for i, (a, b) in enumerate(zip(direct, plain)):
            if i in (4, 5):  # dW1, dW2: cuBLAS, equal to rounding
                assert rel_err(a, b.double().cpu()) < 1e-6, (N, i)
            else:
                assert torch.equal(a, b), (N, i)


@pytest.mark.gpu
def test_graph_replay_follows_weight_updates():
    """The fused block's derived bf16 weights are cached between eager calls; under CUDA-graph
    capture they must be derived inside the graph, or a replay after an optimizer step would use
    the weights of capture time."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from strandwise import Cherimoya

    torch.manual_seed(0)
    model = Cherimoya(n_filters=32, n_layers=2, trimming=40, random_state=0).cuda().train()
    X = torch.nn.functional.one_hot(torch.randint(0, 4, (8, 240)), 4).permute(0, 2, 1).float().cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        torch.cuda.make_graphed_callables(model, (X.clone(),), num_warmup_iters=2, allow_unused_input=True)
    graphed = model.__dict__.pop("forward")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        eager = model(X)[0].float()
        replay = graphed(X)[0].float()
    torch.testing.assert_close(replay, eager, atol=0, rtol=0)
