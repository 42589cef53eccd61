"""Parity of the Triton selective scan with an independent sequential reference.

The reference below is a plain loop over positions in float64 (written here on purpose, separate
from the package's chunked reference). GPU tests compare forward output, last state and every
gradient by relative Frobenius error ``‖got − ref‖ / ‖ref‖``, with tolerances per input dtype:

* fp32 inputs: 1e-4 (fp32 state; exp2 and the scan's reassociation cost ~1e-6)
* fp16 inputs: 5e-3 (outputs and gradients are rounded to 11-bit mantissas)
* bf16 inputs: 2e-2 (8-bit mantissas; the reference sees the same rounded inputs)

The CPU test runs the same kernels under ``TRITON_INTERPRET=1`` on tiny shapes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interpreter_run import run_under_interpreter

TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
               return_last_state=False, reverse=False, initial_state=None):
    """Sequential Mamba-1 scan in float64, one position at a time."""
    f = torch.float64
    u_, d_, A_, B_, C_ = (t.to(f) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        d_ = d_ + delta_bias.to(f)[:, None]
    if delta_softplus:
        d_ = torch.where(d_ > 20, d_, torch.log1p(torch.exp(d_)))
    batch, di, L = u.shape
    h = (initial_state.to(f) if initial_state is not None
         else torch.zeros(batch, di, A.shape[1], dtype=f, device=u.device))
    ys = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        a = torch.exp(d_[:, :, t, None] * A_)
        h = a * h + (d_[:, :, t] * u_[:, :, t])[:, :, None] * B_[:, None, :, t]
        ys[t] = (h * C_[:, None, :, t]).sum(-1)
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + D.to(f)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(f))
    return (y, h) if return_last_state else y


def make_inputs(batch, di, N, L, dtype, device, *, seed=0, softplus=True, z=True, D=True,
                bias=True, h0=False):
    g = torch.Generator(device="cpu").manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g)

    if softplus:
        delta = 0.5 * r(batch, di, L) - 1.0
    else:  # positive steps keep exp(Δ·A) ≤ 1 without softplus
        delta = 0.5 * torch.rand(batch, di, L, generator=g)
    ins = dict(
        u=r(batch, di, L).to(dtype),
        delta=delta.to(dtype),
        A=-torch.exp(0.5 * r(di, N)),  # negative, like −exp(A_log)
        B=r(batch, N, L).to(dtype),
        C=r(batch, N, L).to(dtype),
        D=r(di) if D else None,
        z=r(batch, di, L).to(dtype) if z else None,
        delta_bias=(0.3 * r(di) if softplus else 0.3 * torch.rand(di, generator=g)) if bias else None,
        initial_state=r(batch, di, N) if h0 else None,
    )
    return {k: (v.to(device).requires_grad_() if v is not None else None) for k, v in ins.items()}


def rel(got, ref):
    """Relative Frobenius error; absolute when the reference is exactly zero (e.g. dA at L = 1
    with a zero initial state, where fp32 rounding leaves ~1e-8 in the kernel's result)."""
    got, ref = got.double(), ref.double()
    den = ref.norm()
    if den == 0:
        return (got - ref).norm().item()
    return ((got - ref).norm() / den).item()


def check_parity(batch, di, N, L, dtype, device, *, reverse=False, h0=False, last=True,
                 softplus=True, z=True, D=True, bias=True, seed=0, ref_device="cpu"):
    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    ins = make_inputs(batch, di, N, L, dtype, device, seed=seed, softplus=softplus, z=z, D=D,
                      bias=bias, h0=h0)
    names = [k for k, v in ins.items() if v is not None]
    kw = dict(delta_softplus=softplus, return_last_state=last, reverse=reverse)
    res = selective_scan_triton(**ins, **kw)
    res = res if last else (res,)
    assert res[0].dtype == dtype and res[0].shape == (batch, di, L)
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    cot = [torch.randn(x.shape, generator=g) for x in res]
    loss = sum((x.float() * c.to(device)).sum() for x, c in zip(res, cot))
    grads = torch.autograd.grad(loss, [ins[k] for k in names])

    ref_ins = {k: (v.detach().to(ref_device).requires_grad_() if v is not None else None)
               for k, v in ins.items()}
    ref = naive_scan(**ref_ins, **kw)
    ref = ref if last else (ref,)
    loss_r = sum((x * c.to(ref_device, torch.float64)).sum() for x, c in zip(ref, cot))
    grads_r = torch.autograd.grad(loss_r, [ref_ins[k] for k in names])

    tol = TOL[dtype]
    errs = {}
    errs["out"] = rel(res[0].cpu(), ref[0].cpu())
    if last:
        errs["last_state"] = rel(res[1].cpu(), ref[1].cpu())
    for k, a, b in zip(names, grads, grads_r):
        assert a.shape == ins[k].shape and a.dtype == ins[k].dtype, k
        assert torch.isfinite(a).all(), k
        errs["d" + k] = rel(a.cpu(), b.cpu())
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"errors over {tol}: {bad} (all: {errs})"
    return errs


# ---------------------------------------------------------------------------------------------
# CPU: the kernels under the Triton interpreter (skipped where Triton is not installed)
# ---------------------------------------------------------------------------------------------

_INTERP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {testdir!r})
import test_selective_scan_triton as T
from interpreter_run import assert_first_order_only
from strandwise.kernels import selective_scan_triton as st
st._SEG_MIN_CHUNKS = 1  # force sequence splits on these short inputs
cases = [
    dict(batch=1, di=3, N=4, L=5),
    dict(batch=2, di=5, N=3, L=70, h0=True),
    dict(batch=1, di=4, N=2, L=150, reverse=True, h0=True),
    dict(batch=1, di=2, N=1, L=1, softplus=False, z=False, D=False, bias=False, last=False),
    dict(batch=1, di=3, N=2, L=40, dtype=torch.bfloat16),
]
for c in cases:
    dtype = c.pop("dtype", torch.float32)
    print(c, T.check_parity(device="cpu", dtype=dtype, **c))
# without a backward to follow (no grad mode, or no input requiring grad) the call takes no
# autograd node and writes no chunk states; its output and last state are the grad path's, bit
# for bit (the same kernel minus the state stores)
ins = T.make_inputs(2, 5, 3, 70, torch.float32, "cpu", seed=1, h0=True)
kw = dict(delta_softplus=True, return_last_state=True)
y, h = st.selective_scan_triton(**ins, **kw)
assert y.grad_fn is not None
with torch.no_grad():
    y0, h0 = st.selective_scan_triton(**ins, **kw)
plain = dict((k, v.detach() if v is not None else None) for k, v in ins.items())
y1, h1 = st.selective_scan_triton(**plain, **kw)
for a, b in ((y0, y), (h0, h), (y1, y), (h1, h)):
    assert a.grad_fn is None and torch.equal(a, b.detach())
_, _, states, _ = st.selective_scan_triton_fwd(*(plain[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")),
                                               True, False, plain["initial_state"], True, store_states=False)
assert states is None
# a second derivative through the Triton backward raises instead of coming out wrong
ins = T.make_inputs(1, 3, 2, 9, torch.float32, "cpu", seed=0, softplus=True, z=True, D=True, bias=True, h0=False)
assert_first_order_only(st.selective_scan_triton(**ins, delta_softplus=True), ins["u"])
print("INTERPRETER-OK")
"""


def test_kernels_under_triton_interpreter():
    run_under_interpreter(_INTERP_SCRIPT, __file__)


def test_plan_overrides_from_the_environment(monkeypatch):
    pytest.importorskip("triton")
    from strandwise.kernels import selective_scan_triton as st

    monkeypatch.delenv("STRANDWISE_SCAN_CHUNK", raising=False)
    assert (st._chunk_len(131072), st._chunk_len(4096), st._chunk_len(20)) == (64, 32, 32)
    monkeypatch.setenv("STRANDWISE_SCAN_CHUNK", "16")
    assert st._chunk_len(131072) == 16
    monkeypatch.setenv("STRANDWISE_SCAN_CHUNK", "48")
    with pytest.raises(ValueError, match="16, 32 or 64"):
        st._chunk_len(1024)
    monkeypatch.delenv("STRANDWISE_SCAN_CHUNK")
    for bad in ("x", "0", "-3"):
        monkeypatch.setenv("STRANDWISE_SCAN_PROGRAMS_PER_SM", bad)
        with pytest.raises(ValueError, match="STRANDWISE_SCAN_PROGRAMS_PER_SM must be a positive"):
            st._plan_segments(1, 64, 8, torch.device("cpu"), 32)
    monkeypatch.setenv("STRANDWISE_SCAN_PROGRAMS_PER_SM", "4")
    assert st._plan_segments(1, 64, 8, torch.device("cpu"), 32) == (4, 2)  # 8 SMs x 4 / 2 blocks


def test_naive_reference_matches_closed_form():
    # One channel, one state, constant Δ: h_t = Σ_s a^{t-s}·Δ·B_s·u_s with a = exp(Δ·A).
    L = 6
    u = torch.arange(1.0, L + 1).view(1, 1, L)
    delta = torch.full((1, 1, L), 0.5)
    A = torch.tensor([[-0.7]])
    B = torch.linspace(-1, 1, L).view(1, 1, L)
    C = torch.ones(1, 1, L)
    y = naive_scan(u, delta, A, B, C)
    a = torch.exp(0.5 * A[0, 0].double())
    want = [sum(a ** (t - s) * 0.5 * B[0, 0, s].double() * u[0, 0, s] for s in range(t + 1))
            for t in range(L)]
    torch.testing.assert_close(y[0, 0], torch.stack(want), rtol=1e-12, atol=1e-12)
    yr = naive_scan(u, delta, A, B, C, reverse=True)
    ref_flip = naive_scan(u.flip(-1), delta, A, B.flip(-1), C).flip(-1)
    torch.testing.assert_close(yr, ref_flip)


# ---------------------------------------------------------------------------------------------
# GPU parity
# ---------------------------------------------------------------------------------------------

SMALL_SHAPES = [  # (batch, d_inner, d_state, L)
    (1, 64, 16, 1),
    (2, 64, 1, 7),
    (3, 96, 4, 63),
    (1, 128, 16, 64),
    (2, 64, 16, 65),
    (4, 100, 8, 200),
    (16, 64, 2, 129),
    (1, 64, 5, 1000),
    (2, 192, 16, 1030),
]


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16],
                         ids=["fp32", "bf16", "fp16"])
def test_gpu_parity_small(shape, dtype):
    batch, di, N, L = shape
    check_parity(batch, di, N, L, dtype, "cuda", seed=sum(shape), ref_device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("h0", [False, True], ids=["zero_h0", "h0"])
@pytest.mark.parametrize("opts", [dict(), dict(softplus=False, z=False, D=False, bias=False),
                                  dict(last=False)], ids=["all", "bare", "nolast"])
def test_gpu_options(reverse, h0, opts):
    check_parity(2, 80, 16, 333, torch.float32, "cuda", reverse=reverse, h0=h0, ref_device="cuda",
                 seed=7, **opts)


@pytest.mark.gpu
def test_gpu_sequence_split_forced():
    from strandwise.kernels import selective_scan_triton as st

    old = st._SEG_MIN_CHUNKS
    st._SEG_MIN_CHUNKS = 1
    try:
        for reverse in (False, True):
            check_parity(1, 64, 16, 2000, torch.float32, "cuda", reverse=reverse, h0=True,
                         ref_device="cuda", seed=3)
    finally:
        st._SEG_MIN_CHUNKS = old


def _chunked_ref(u, delta, A, B, C, D, z, delta_bias, reverse=False, chunk=512):
    """fp32 recurrence over chunks of positions (for long L, where the fp64 loop is too slow)."""
    f = torch.float32
    d_ = F.softplus(delta.to(f) + delta_bias[:, None])
    u_, B_, C_ = u.to(f), B.to(f), C.to(f)
    if reverse:
        d_, u_, B_, C_ = (t.flip(-1) for t in (d_, u_, B_, C_))
    batch, di, L = u.shape
    h = torch.zeros(batch, di, A.shape[1], device=u.device, dtype=torch.float64)
    ys = []
    for s in range(0, L, chunk):
        dA = d_[:, :, s:s + chunk, None] * A[:, None, :]  # (b, di, l, N)
        cum = torch.cumsum(dA.double(), dim=2)
        bu = (d_ * u_)[:, :, s:s + chunk, None].double() * B_[:, None, :, s:s + chunk].transpose(-1, -2).double()
        # h_t = e^{cum_t}·(h0 + Σ_{s≤t} e^{−cum_s}·bu_s), stable in fp64 for these chunk sizes
        hs = torch.exp(cum) * (h[:, :, None] + torch.cumsum(torch.exp(-cum) * bu, dim=2))
        ys.append((hs * C_[:, None, :, s:s + chunk].transpose(-1, -2).double()).sum(-1))
        h = hs[:, :, -1]
    y = torch.cat(ys, -1)
    if reverse:
        y = y.flip(-1)
    y = (y + D[:, None].double() * u.double()) * F.silu(z.double())
    return y, h


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 2048, 16, 4096), (2, 512, 16, 131072)],
                         ids=lambda s: "x".join(map(str, s)))
def test_gpu_long_forward_and_last_state(shape):
    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    batch, di, N, L = shape
    ins = make_inputs(batch, di, N, L, torch.bfloat16, "cuda", seed=11)
    ins = {k: (v.detach() if v is not None else None) for k, v in ins.items()}
    ins["A"] = -torch.linspace(0.05, 1.0, N, device="cuda").repeat(di, 1)  # keeps e^{−cum} in range
    for reverse in (False, True):
        out, last = selective_scan_triton(**ins, delta_softplus=True, return_last_state=True,
                                          reverse=reverse)
        with torch.no_grad():
            y, h = _chunked_ref(ins["u"][:, :64], ins["delta"][:, :64], ins["A"][:64],
                                ins["B"], ins["C"], ins["D"][:64], ins["z"][:, :64],
                                ins["delta_bias"][:64], reverse=reverse, chunk=64)
        assert rel(out[:, :64].float(), y) < TOL[torch.bfloat16]
        assert rel(last[:, :64], h) < 1e-3


@pytest.mark.gpu
def test_gpu_long_gradients_bf16():
    # d_inner 2048 and L 16,384 with every gradient, against the fp64 loop on 32 channels
    # (the scan is independent per channel, so a channel slice is an exact sub-problem for all
    # gradients except dB/dC, which the second, full-channel run checks).
    check_parity(1, 32, 16, 16384, torch.bfloat16, "cuda", seed=5, ref_device="cuda")
    check_parity(2, 2048, 16, 256, torch.bfloat16, "cuda", seed=6, ref_device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("autotune", ["0", "1"])
def test_gpu_dbc_atomic_sum_vs_deterministic_partials(monkeypatch, autotune):
    # d_state 16: dB/dC are added atomically over the channel blocks by default, and written as
    # partials summed in a fixed order under torch.use_deterministic_algorithms(True). Both must
    # give the same gradients to fp32 rounding; the deterministic path bit for bit on repeats
    # (the first, autotuning call included).
    monkeypatch.setenv("STRANDWISE_SCAN_AUTOTUNE", autotune)
    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    ins = make_inputs(2, 160 + int(autotune), 16, 3001, torch.float32, "cuda", seed=31)
    wrt = [ins[k] for k in ("B", "C", "u", "A")]
    prev = torch.are_deterministic_algorithms_enabled()
    grads = {}
    try:
        for det in (True, True, False, False):
            torch.use_deterministic_algorithms(det, warn_only=True)
            out = selective_scan_triton(**ins, delta_softplus=True)
            grads.setdefault(det, []).append(torch.autograd.grad(out.square().sum(), wrt))
    finally:
        torch.use_deterministic_algorithms(prev)
    for a, b in zip(*grads[True]):
        assert torch.equal(a, b)
    for g_atomic in grads[False]:
        for a, b in zip(g_atomic, grads[True][0]):
            assert rel(a, b) < 1e-6
    ref = naive_scan(**{k: (v.detach() if v is not None else None) for k, v in ins.items()},
                     delta_softplus=True)
    assert rel(out, ref) < TOL[torch.float32]


@pytest.mark.gpu
def test_gpu_first_call_after_autotune_is_correct(monkeypatch):
    monkeypatch.setenv("STRANDWISE_SCAN_AUTOTUNE", "1")
    # A shape no other test uses: the first call autotunes forward and backward, and its result
    # must equal the second (tuned, cached) call bit for bit and match the reference.
    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    ins = make_inputs(3, 136, 12, 777, torch.bfloat16, "cuda", seed=21)
    outs, grads = [], []
    for _ in range(2):
        out = selective_scan_triton(**ins, delta_softplus=True)
        g = torch.autograd.grad(out.float().square().sum(), [ins["u"], ins["B"], ins["A"]])
        outs.append(out)
        grads.append(g)
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(grads[0], grads[1]):
        assert torch.equal(a, b)
    ref = naive_scan(**{k: (v.detach() if v is not None else None) for k, v in ins.items()},
                     delta_softplus=True)
    assert rel(outs[0].float(), ref) < TOL[torch.bfloat16]


@pytest.mark.gpu
@pytest.mark.parametrize("autotune", ["0", "1"])
def test_gpu_direct_launch_matches_dispatch_and_skips_unaligned(monkeypatch, autotune):
    # After the first call of a specialisation the compiled kernels are launched directly
    # (_host.DirectLauncher). Its results must equal the ordinary dispatch bit for bit, and an
    # input whose data pointer is not 16-byte aligned (a view one element in) must not reuse a
    # kernel compiled for aligned pointers. Deterministic mode: the default dB/dC are fp32 atomic
    # adds, whose order (and so last bit) may differ from run to run whichever way is launched.
    monkeypatch.setenv("STRANDWISE_SCAN_AUTOTUNE", autotune)
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _direct_launch_case(autotune)
    finally:
        torch.use_deterministic_algorithms(was_det)


def _direct_launch_case(autotune):
    from strandwise.kernels import selective_scan_triton as sst
    from strandwise.kernels._host import DIRECT

    ins = make_inputs(2, 96, 16, 1000 + int(autotune), torch.bfloat16, "cuda", seed=41)
    wrt = [ins[k] for k in ("u", "delta", "B", "C", "A", "D", "z", "delta_bias")]

    def run():
        out = sst.selective_scan_triton(**ins, delta_softplus=True)
        return (out,) + torch.autograd.grad(out.float().square().sum(), wrt)

    DIRECT.clear()
    first = run()
    n_cached = len(DIRECT._cache)
    assert n_cached >= 2  # forward and backward kernels (plus segment summaries where split)
    hits = DIRECT.hits
    second = run()  # direct launches
    assert len(DIRECT._cache) == n_cached
    assert DIRECT.hits - hits == n_cached  # every launch of the second call went direct
    DIRECT.enabled = False
    try:
        plain = run()
    finally:
        DIRECT.enabled = True
    for a, b, c in zip(first, second, plain):
        assert torch.equal(a, b) and torch.equal(a, c)
    # same shapes and strides, unaligned u: a view 1 element into a larger buffer
    buf = torch.empty(ins["u"].numel() + 1, device="cuda", dtype=ins["u"].dtype)
    u_odd = buf[1:].view_as(ins["u"]).copy_(ins["u"].detach())
    assert u_odd.data_ptr() % 16 != 0 and u_odd.stride() == ins["u"].stride()
    out_odd = sst.selective_scan_triton(**dict(ins, u=u_odd), delta_softplus=True)
    assert torch.equal(out_odd, first[0])


@pytest.mark.gpu
def test_gpu_rejects_bad_input():
    from strandwise.kernels.selective_scan_triton import selective_scan_triton

    ins = make_inputs(1, 8, 4, 10, torch.float32, "cuda")
    ins = {k: (v.detach() if v is not None else None) for k, v in ins.items()}
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_triton(**{**ins, "B": ins["B"][:, :3]})
    with pytest.raises(TypeError, match="A must have dtype"):
        selective_scan_triton(**{**ins, "A": ins["A"].half()})
    with pytest.raises(ValueError, match="CUDA"):
        selective_scan_triton(**{k: (v.cpu() if v is not None else None) for k, v in ins.items()})


@pytest.mark.gpu
def test_gpu_direct_launch_follows_the_batch_size():
    # The direct launcher keys on widths, lengths and strides, not on the batch: a later call
    # with another batch at the same (d_inner, L) must launch its own grid (a cached grid ran
    # the old batch's programs: too few, or past the end of the tensors), forward and backward.
    from strandwise.kernels import selective_scan_triton as sst

    for batch in (3, 1, 4):
        ins = make_inputs(batch, 64, 16, 777, torch.float32, "cuda", seed=batch)
        wrt = [ins[k] for k in ("u", "delta", "B", "C")]
        out = sst.selective_scan_triton(**ins, delta_softplus=True)
        grads = torch.autograd.grad(out.square().sum(), wrt)
        ref_ins = {k: (v.detach().clone().requires_grad_(v.requires_grad) if v is not None else None)
                   for k, v in ins.items()}
        ref = naive_scan(**ref_ins, delta_softplus=True)
        ref_grads = torch.autograd.grad(ref.square().sum(), [ref_ins[k] for k in ("u", "delta", "B", "C")])
        assert rel(out, ref) < TOL[torch.float32], batch
        for g, r in zip(grads, ref_grads):
            assert rel(g, r) < TOL[torch.float32], batch


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4, 512, 16, 1024), (1, 64, 16, 2000), (2, 80, 5, 333)],
                         ids=lambda s: "x".join(map(str, s)))
def test_gpu_inference_call_matches_the_training_call(shape):
    # no_grad / inputs without grad: no autograd node, no chunk states written; the output and
    # last state are the training call's bit for bit (same kernel, the state stores compiled out)
    from strandwise.kernels import selective_scan_triton as sst

    batch, di, N, L = shape
    for reverse in (False, True):
        ins = make_inputs(batch, di, N, L, torch.bfloat16, "cuda", seed=L, h0=True)
        kw = dict(delta_softplus=True, return_last_state=True, reverse=reverse)
        y, h = sst.selective_scan_triton(**ins, **kw)
        assert y.grad_fn is not None
        with torch.no_grad():
            y0, h0 = sst.selective_scan_triton(**ins, **kw)
        assert y0.grad_fn is None and h0.grad_fn is None
        assert torch.equal(y0, y.detach()) and torch.equal(h0, h.detach())
        ref = naive_scan(**{k: (v.detach() if v is not None else None) for k, v in ins.items()}, **kw)
        assert rel(y0, ref[0]) < TOL[torch.bfloat16] and rel(h0, ref[1]) < TOL[torch.bfloat16]


def test_plan_is_cached_per_shape_and_follows_the_overrides(monkeypatch):
    pytest.importorskip("triton")
    from strandwise.kernels import selective_scan_triton as st

    cpu = torch.device("cpu")
    monkeypatch.delenv("STRANDWISE_SCAN_CHUNK", raising=False)
    monkeypatch.delenv("STRANDWISE_SCAN_PROGRAMS_PER_SM", raising=False)
    st._PLANS.clear()
    base = st._plan(1, 64, 256, cpu)
    assert base == (32, 8, *st._plan_segments(1, 64, 8, cpu, 32)) and len(st._PLANS) == 1
    assert st._plan(1, 64, 256, cpu) is base  # cached
    monkeypatch.setenv("STRANDWISE_SCAN_CHUNK", "16")
    assert st._plan(1, 64, 256, cpu)[:2] == (16, 16)  # an override is part of the key
    monkeypatch.setenv("STRANDWISE_SCAN_PROGRAMS_PER_SM", "4")
    assert st._plan(1, 64, 256, cpu)[2:] == st._plan_segments(1, 64, 16, cpu, 16)
    monkeypatch.setenv("STRANDWISE_SCAN_CHUNK", "48")
    with pytest.raises(ValueError, match="16, 32 or 64"):
        st._plan(1, 64, 256, cpu)
    monkeypatch.delenv("STRANDWISE_SCAN_CHUNK")
    monkeypatch.delenv("STRANDWISE_SCAN_PROGRAMS_PER_SM")
    assert st._plan(1, 64, 256, cpu) == base
    monkeypatch.setattr(st, "_SEG_MIN_CHUNKS", 1)  # the tests' forced split is seen too
    assert st._plan(1, 64, 256, cpu)[2:] == st._plan_segments(1, 64, 8, cpu, 32)


def test_scan_switches_reject_typos(monkeypatch):
    # STRANDWISE_SCAN_AUTOTUNE / STRANDWISE_SCAN_LANE_RS take 0 or 1; anything else is an error,
    # not a silent "on" (they used to treat every value but "0" as on)
    pytest.importorskip("triton")
    from strandwise.kernels import selective_scan_triton as sst

    monkeypatch.setattr(sst, "_interpreting", lambda: False)
    monkeypatch.setenv("STRANDWISE_SCAN_AUTOTUNE", "0")
    assert not sst._autotuning()
    monkeypatch.setenv("STRANDWISE_SCAN_AUTOTUNE", "1")
    assert sst._autotuning()
    monkeypatch.setenv("STRANDWISE_SCAN_AUTOTUNE", "off")
    with pytest.raises(ValueError, match="STRANDWISE_SCAN_AUTOTUNE must be 0 or 1"):
        sst._autotuning()
