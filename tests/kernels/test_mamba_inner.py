"""The fused Mamba inner function (recompute in backward) against plain autograd of the same ops.

CPU: the generic path (reference re-run under autograd in backward). Under ``TRITON_INTERPRET=1``
(where Triton is installed): the Triton path, whose backward recomputes only the conv and the
projections and gets ``y`` back from the scan's backward kernel. ``gpu``: the compiled Triton path.
"""

from __future__ import annotations

import pytest
import torch

from strandwise.kernels.mamba_inner import mamba_inner_fn, mamba_inner_reference
from strandwise.models.mamba import Mamba
from interpreter_run import assert_first_order_only, run_under_interpreter

NAMES = ("xz", "conv_weight", "conv_bias", "x_proj_weight", "dt_proj_weight", "A", "D",
         "delta_bias", "out_proj_weight", "out_proj_bias")


def make_inputs(batch=2, d_model=8, L=37, d_state=4, dtype=torch.float32, device="cpu",
                conv_bias=True, out_bias=False, seed=0):
    """Parameters of a real (randomly initialised) Mamba mixer plus an ``xz`` input."""
    torch.manual_seed(seed)
    m = Mamba(d_model=d_model, d_state=d_state, bias=out_bias, conv_bias=conv_bias).to(device)
    di = m.d_inner
    xz = torch.randn(batch, 2 * di, L, device=device, dtype=dtype)
    t = dict(
        xz=xz,
        conv_weight=m.conv1d.weight.detach().to(dtype),
        conv_bias=None if m.conv1d.bias is None else m.conv1d.bias.detach().to(dtype),
        x_proj_weight=m.x_proj.weight.detach().to(dtype),
        dt_proj_weight=m.dt_proj.weight.detach().to(dtype),
        A=-torch.exp(m.A_log.detach().float()),
        D=m.D.detach().float(),
        delta_bias=m.dt_proj.bias.detach().float(),
        out_proj_weight=m.out_proj.weight.detach().to(dtype),
        out_proj_bias=None if m.out_proj.bias is None else m.out_proj.bias.detach().to(dtype),
    )
    return {k: (None if v is None else v.clone().requires_grad_(True)) for k, v in t.items()}, d_state


def run(fn, t, d_state, reverse, dout=None):
    out = fn(*(t[n] for n in NAMES), d_state=d_state, reverse=reverse)
    if dout is None:
        torch.manual_seed(1)
        dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, [t[n] for n in NAMES if t[n] is not None], dout)
    names = [n for n in NAMES if t[n] is not None]
    return out, dict(zip(names, grads)), dout


def compare(t, d_state, reverse, rtol, atol):
    ref_t = {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in t.items()}
    out_r, g_r, dout = run(mamba_inner_reference, ref_t, d_state, reverse)
    out_f, g_f, _ = run(mamba_inner_fn, t, d_state, reverse, dout)
    torch.testing.assert_close(out_f, out_r, rtol=rtol, atol=atol)
    assert set(g_f) == set(g_r)
    for n in g_r:
        scale = g_r[n].abs().max().clamp_min(1e-6)
        err = ((g_f[n].float() - g_r[n].float()).abs().max() / scale).item()
        assert err < rtol, f"{n}: relative error {err:.2e}"


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("conv_bias,out_bias", [(True, False), (False, True)])
def test_fused_matches_reference_cpu(reverse, conv_bias, out_bias):
    t, N = make_inputs(conv_bias=conv_bias, out_bias=out_bias, dtype=torch.float64)
    compare(t, N, reverse, rtol=1e-10, atol=1e-12)


def test_fused_cpu_bf16_autocast():
    # the backward re-runs the ops under the forward's autocast state: same values as the forward
    t, N = make_inputs(L=50)
    ref_t = {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in t.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_r = mamba_inner_reference(*(ref_t[n] for n in NAMES), d_state=N)
        out_f = mamba_inner_fn(*(t[n] for n in NAMES), d_state=N)
    assert out_f.dtype == out_r.dtype == torch.bfloat16
    torch.testing.assert_close(out_f, out_r, rtol=0, atol=0)
    dout = torch.randn_like(out_r)
    g_r = torch.autograd.grad(out_r, [ref_t[n] for n in NAMES if t[n] is not None], dout)
    g_f = torch.autograd.grad(out_f, [t[n] for n in NAMES if t[n] is not None], dout)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_second_derivative_raises():
    """The backward recomputes and differentiates without recording: a gradient of its gradients
    raises instead of silently leaving this layer out."""
    t, N = make_inputs(dtype=torch.float64)
    assert_first_order_only(mamba_inner_fn(*(t[n] for n in NAMES), d_state=N), t["xz"])


def test_only_some_inputs_need_grad():
    t, N = make_inputs(dtype=torch.float64)
    for n in ("xz", "conv_weight", "A"):
        t[n] = t[n].detach()
    ref_t = {k: (None if v is None else v.detach().clone().requires_grad_(v.requires_grad))
             for k, v in t.items()}
    out_f = mamba_inner_fn(*(t[n] for n in NAMES), d_state=N)
    out_r = mamba_inner_reference(*(ref_t[n] for n in NAMES), d_state=N)
    dout = torch.randn_like(out_r)
    want = [n for n in NAMES if t[n] is not None and t[n].requires_grad]
    g_f = torch.autograd.grad(out_f, [t[n] for n in want], dout)
    g_r = torch.autograd.grad(out_r, [ref_t[n] for n in want], dout)
    for n, a, b in zip(want, g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=n)


def saved_bytes(fn, t, N):
    """Bytes autograd keeps for the backward of ``fn`` (distinct storages, inputs excluded)."""
    inputs = {v.untyped_storage().data_ptr() for v in t.values() if v is not None}
    seen = {}

    def pack(x):
        p = x.untyped_storage().data_ptr()
        if p not in inputs:
            seen[p] = x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn(*(t[n] for n in NAMES), d_state=N)
    return sum(seen.values())


def test_fused_saves_no_intermediates():
    # plain autograd keeps the conv output, delta, the scan output and the projections' outputs;
    # the fused node keeps only its inputs (xz and the weights)
    t, N = make_inputs(batch=2, d_model=16, L=256)
    assert saved_bytes(mamba_inner_fn, t, N) == 0
    di = t["xz"].shape[1] // 2
    assert saved_bytes(mamba_inner_reference, t, N) >= 3 * 2 * di * 256 * 4


def test_input_errors():
    t, N = make_inputs()
    args = [t[n] for n in NAMES]
    with pytest.raises(ValueError, match="xz must have shape"):
        mamba_inner_fn(t["xz"][:, :-1], *args[1:], d_state=N)
    with pytest.raises(ValueError, match="A must have shape"):
        mamba_inner_fn(*args, d_state=N + 1)


# ---------------------------------------------------------------------------------------------
# The Triton path on CPU tensors under the interpreter (skipped where Triton is not installed)
# ---------------------------------------------------------------------------------------------

_INTERP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {testdir!r})
import test_mamba_inner as T
from strandwise.kernels import mamba_inner as mi
assert mi._triton_ok(torch.zeros(1))
for kw in (dict(reverse=False), dict(reverse=True, out_bias=True, conv_bias=False)):
    reverse = kw.pop("reverse")
    t, N = T.make_inputs(batch=2, d_model=4, L=45, d_state=3, **kw)
    T.compare(t, N, reverse, rtol=2e-4, atol=1e-5)
    print("ok", reverse)
    # inference (no_grad): no autograd node, no chunk states, the training call's output exactly
    y = mi.mamba_inner_fn(*t.values(), d_state=N, reverse=reverse)
    with torch.no_grad():
        y0 = mi.mamba_inner_fn(*t.values(), d_state=N, reverse=reverse)
    assert y.grad_fn is not None and y0.grad_fn is None and torch.equal(y0, y.detach())
print("INTERPRETER-OK")
"""


def test_triton_path_under_interpreter():
    run_under_interpreter(_INTERP_SCRIPT, __file__)


# ---------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("L", [1, 300, 5000])
def test_fused_matches_reference_gpu_fp32(reverse, L):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    t, N = make_inputs(batch=2, d_model=64, L=L, d_state=16, device="cuda", out_bias=reverse)
    compare(t, N, reverse, rtol=2e-3, atol=1e-4)


@pytest.mark.gpu
def test_fused_gpu_bf16_autocast_and_memory():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    t, N = make_inputs(batch=2, d_model=128, L=4096, d_state=16, device="cuda")
    ref_t = {k: (None if v is None else v.detach().clone().requires_grad_(True)) for k, v in t.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out_r = mamba_inner_reference(*(ref_t[n] for n in NAMES), d_state=N)
        out_f = mamba_inner_fn(*(t[n] for n in NAMES), d_state=N)
    torch.testing.assert_close(out_f, out_r, rtol=0, atol=0)  # same ops, same order
    dout = torch.randn_like(out_r)
    names = [n for n in NAMES if t[n] is not None]
    g_r = torch.autograd.grad(out_r, [ref_t[n] for n in names], dout)
    g_f = torch.autograd.grad(out_f, [t[n] for n in names], dout)
    for n, a, b in zip(names, g_f, g_r):
        err = ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)).item()
        assert err < 2e-2, f"{n}: relative error {err:.2e}"
    # what the fused node keeps: only the chunk-start states beyond its inputs (N/64 fp32 per
    # position and channel at this L: far below one bf16 (B, d_inner, L) tensor)
    di = t["xz"].shape[1] // 2
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = saved_bytes(mamba_inner_fn, t, N)
        plain = saved_bytes(mamba_inner_reference, t, N)
    assert fused <= 2 * di * 4096 * 16 // 32 * 4
    assert plain >= 3 * 2 * di * 4096 * 2


@pytest.mark.gpu
def test_mamba_module_uses_fused_path_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    m = Mamba(d_model=64).cuda()
    h = torch.randn(2, 500, 64, device="cuda", requires_grad=True)
    calls = []
    from strandwise.kernels import mamba_inner as mi

    real = mi.MambaInnerFn.apply

    def spy(*a):
        calls.append(1)
        return real(*a)

    mi.MambaInnerFn.apply = spy
    try:
        out_fused = m(h, reverse=True)
    finally:
        mi.MambaInnerFn.apply = real
    assert calls
    m.use_fast_path = False
    out_plain = m(h, reverse=True)
    torch.testing.assert_close(out_fused, out_plain, rtol=0, atol=0)
    g = torch.randn_like(out_plain)
    ga = torch.autograd.grad(out_fused, [h, m.in_proj.weight, m.A_log], g)
    gb = torch.autograd.grad(out_plain, [h, m.in_proj.weight, m.A_log], g)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=1e-5)
