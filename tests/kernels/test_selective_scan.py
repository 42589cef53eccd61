"""Selective scan: chunked reference vs the naive sequential loop (spec §5.2, §9.2).

Input distributions follow upstream Mamba's test: A = -0.5·U(0,1), Δ = 0.5·U(0,1),
b_dt = 0.5·U(0,1), u, z, B, C, D ~ N(0, 1).
"""

import sys

import pytest
import torch

import strandwise.kernels.selective_scan as ss
from strandwise.kernels import selective_scan_fn
from strandwise.kernels.selective_scan import selective_scan_chunked, selective_scan_naive

TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}


def make(b, di, n, L, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def u01(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64)

    t = dict(
        u=r(b, di, L).to(dtype), delta=(0.5 * u01(b, di, L)).to(dtype), A=-0.5 * u01(di, n),
        B=r(b, n, L).to(dtype), C=r(b, n, L).to(dtype), D=r(di), z=r(b, di, L).to(dtype),
        delta_bias=0.5 * u01(di), initial_state=r(b, di, n),
    )
    if dtype != torch.float64:
        for k in ("A", "D", "delta_bias", "initial_state"):
            t[k] = t[k].float()
    if grad:
        for v in t.values():
            v.requires_grad_(True)
    return t


def call(fn, t, use, **kw):
    args = {k: (t[k] if k in use else None) for k in ("D", "z", "delta_bias", "initial_state")}
    return fn(t["u"], t["delta"], t["A"], t["B"], t["C"], delta_softplus=True, return_last_state=True, **args, **kw)


FULL = ("D", "z", "delta_bias", "initial_state")


@pytest.mark.parametrize("shape", [(1, 4, 4, 1), (2, 4, 4, 3), (2, 8, 16, 37), (1, 64, 4, 130)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("use", [FULL, (), ("z",), ("D", "delta_bias")])
def test_chunked_matches_naive_forward_and_all_grads(shape, reverse, use):
    t = make(*shape)
    out1, last1 = call(selective_scan_naive, t, use, reverse=reverse)
    out2, last2 = call(selective_scan_chunked, t, use, reverse=reverse, chunk_size=16)
    torch.testing.assert_close(out2, out1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last2, last1, rtol=1e-10, atol=1e-10)
    g = torch.Generator().manual_seed(5)
    go, gl = torch.randn(out1.shape, generator=g, dtype=out1.dtype), torch.randn(last1.shape, generator=g, dtype=last1.dtype)
    names = ["u", "delta", "A", "B", "C"] + [k for k in use]
    inputs = [t[k] for k in names]
    g1 = torch.autograd.grad((out1 * go).sum() + (last1 * gl).sum(), inputs)
    g2 = torch.autograd.grad((out2 * go).sum() + (last2 * gl).sum(), inputs)
    for name, a, b in zip(names, g1, g2):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_chunked_fp64(reverse):
    t = make(2, 3, 4, 7)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state"]

    def f(*xs):
        d = dict(zip(names, xs))
        return selective_scan_chunked(
            d["u"], d["delta"], d["A"], d["B"], d["C"], D=d["D"], z=d["z"], delta_bias=d["delta_bias"],
            delta_softplus=True, return_last_state=True, reverse=reverse, initial_state=d["initial_state"], chunk_size=3,
        )

    assert torch.autograd.gradcheck(f, tuple(t[k] for k in names))


def test_gradcheck_without_softplus_and_large_delta():
    # Above the softplus threshold (20) softplus is the identity; check both branches.
    t = make(1, 2, 3, 5)
    with torch.no_grad():
        t["delta"][0, 0, :2] += 25.0

    def f(u, delta, A):
        return selective_scan_chunked(u, delta, A, t["B"], t["C"], delta_softplus=True, chunk_size=2)

    assert torch.autograd.gradcheck(f, (t["u"], t["delta"], t["A"] * 0.01))
    out_n = selective_scan_naive(t["u"], t["delta"], t["A"], t["B"], t["C"], delta_softplus=False)
    out_c = selective_scan_chunked(t["u"], t["delta"], t["A"], t["B"], t["C"], delta_softplus=False, chunk_size=2)
    torch.testing.assert_close(out_c, out_n, rtol=1e-10, atol=1e-10)


def test_naive_matches_formula_on_one_step():
    # L = 1, no initial state: h = Δ·B·u, y = C·h + D·u, out = y·silu(z).
    t = make(1, 2, 3, 1, grad=False)
    out = selective_scan_naive(t["u"], t["delta"], t["A"], t["B"], t["C"], D=t["D"], z=t["z"], delta_bias=t["delta_bias"], delta_softplus=True)
    dt = torch.nn.functional.softplus(t["delta"][0, :, 0] + t["delta_bias"])
    h = dt[:, None] * t["B"][0, :, 0][None, :] * t["u"][0, :, 0][:, None]
    y = (h * t["C"][0, :, 0]).sum(-1) + t["D"] * t["u"][0, :, 0]
    expect = y * torch.nn.functional.silu(t["z"][0, :, 0])
    torch.testing.assert_close(out[0, :, 0], expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [selective_scan_naive, selective_scan_chunked])
def test_reverse_equals_flipped_inputs(fn):
    t = make(2, 8, 4, 29, grad=False)
    kw = dict(D=t["D"], z=t["z"], delta_bias=t["delta_bias"], delta_softplus=True)
    rev = fn(t["u"], t["delta"], t["A"], t["B"], t["C"], reverse=True, **kw)
    flipped = dict(kw, z=t["z"].flip(-1))
    fwd = selective_scan_naive(t["u"].flip(-1), t["delta"].flip(-1), t["A"], t["B"].flip(-1), t["C"].flip(-1), **flipped)
    torch.testing.assert_close(rev, fwd.flip(-1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 5, 256])
def test_state_chaining_across_calls(reverse, chunk_size):
    t = make(2, 6, 4, 41, grad=False)
    kw = dict(D=t["D"], delta_bias=t["delta_bias"], delta_softplus=True, chunk_size=chunk_size, return_last_state=True, reverse=reverse)
    full, last = selective_scan_chunked(t["u"], t["delta"], t["A"], t["B"], t["C"], z=t["z"], **kw)
    cut = 17
    a = slice(0, cut) if not reverse else slice(cut, None)
    b = slice(cut, None) if not reverse else slice(0, cut)

    def part(sl, h0):
        return selective_scan_chunked(t["u"][..., sl], t["delta"][..., sl], t["A"], t["B"][..., sl], t["C"][..., sl], z=t["z"][..., sl], initial_state=h0, **kw)

    o1, h1 = part(a, None)
    o2, h2 = part(b, h1)
    joined = torch.cat([o1, o2], -1) if not reverse else torch.cat([o2, o1], -1)
    torch.testing.assert_close(joined, full, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h2, last, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_match_fp64_reference(dtype):
    t = make(2, 16, 16, 300, dtype=dtype, grad=False)
    t64 = {k: v.double() for k, v in t.items()}
    out = call(selective_scan_fn, t, FULL)[0]
    ref = call(selective_scan_naive, t64, FULL)[0]
    assert out.dtype == dtype
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double(), ref.to(dtype).double(), rtol=rtol, atol=atol)


def test_dispatcher_on_cpu_is_the_chunked_reference():
    t = make(2, 8, 4, 50, dtype=torch.float32, grad=False)
    a = call(selective_scan_fn, t, FULL)
    b = call(selective_scan_chunked, t, FULL)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_missing_triton_module_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "strandwise.kernels.selective_scan_triton", None)
    monkeypatch.setattr(ss, "_warned_no_triton_module", False)
    with pytest.warns(RuntimeWarning, match="selective_scan_triton is unavailable"):
        assert ss._triton_scan() is None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ss._triton_scan() is None  # second time: silent


def test_backward_saves_no_L_by_N_tensor():
    # The chunked Function must never keep a (B, d_inner, L, N)-sized tensor for backward.
    b, di, n, L = 1, 8, 16, 2048
    t = make(b, di, n, L, dtype=torch.float32)
    sizes = []

    def pack(x):
        sizes.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = call(selective_scan_chunked, t, FULL)[0]
    out.sum().backward()
    # Only inputs ((b, di, L) or (b, N, L)) and chunk-start states are saved.
    assert max(sizes) <= max(b * di * L, b * n * L), max(sizes)
    assert t["u"].grad is not None and torch.isfinite(t["u"].grad).all()


def test_bad_shapes_raise_clear_errors():
    t = make(2, 4, 3, 5, grad=False)
    with pytest.raises(ValueError, match=r"u must have shape \(batch, d_inner, L\)"):
        selective_scan_fn(t["u"][0], t["delta"], t["A"], t["B"], t["C"])
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan_fn(t["u"], t["delta"], t["A"], t["B"][..., :4], t["C"])
    with pytest.raises(ValueError, match="A must have shape"):
        selective_scan_fn(t["u"], t["delta"], t["A"].T, t["B"], t["C"])
    with pytest.raises(ValueError, match="initial_state must have shape"):
        selective_scan_fn(t["u"], t["delta"], t["A"], t["B"], t["C"], initial_state=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan_chunked(t["u"], t["delta"], t["A"], t["B"], t["C"], chunk_size=0)


def test_default_chunk_size_follows_autograd(monkeypatch):
    """Training calls use the smaller chunk, no-grad calls the larger; both give the same result."""
    import strandwise.kernels.selective_scan as S

    seen = []
    real = S.SelectiveScanChunkedFn.apply
    monkeypatch.setattr(S.SelectiveScanChunkedFn, "apply", lambda *a: seen.append(a[-1]) or real(*a))
    g = torch.Generator().manual_seed(0)
    u, delta = torch.randn(1, 4, 300, generator=g), torch.randn(1, 4, 300, generator=g)
    A = -torch.rand(4, 3, generator=g) - 0.5
    B, C = torch.randn(1, 3, 300, generator=g), torch.randn(1, 3, 300, generator=g)
    with torch.no_grad():
        ref = S.selective_scan_chunked(u, delta, A, B, C, delta_softplus=True)
    out = S.selective_scan_chunked(u.requires_grad_(True), delta, A, B, C, delta_softplus=True)
    assert seen == [S.DEFAULT_CHUNK_SIZE, S.DEFAULT_TRAIN_CHUNK_SIZE]
    torch.testing.assert_close(out.detach(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [4, 7, 64])
def test_reused_chunk_buffers_match_fresh_tensors(monkeypatch, chunk_size):
    # The chunk loop writes dA and the states into per-call scratch tensors (the last, shorter
    # chunk into their first positions); the result must be the fresh-tensor computation's bit for
    # bit, with and without an initial state, in both directions.
    t = make(3, 5, 4, 30, dtype=torch.float32, grad=False)
    kw = dict(D=t["D"], z=t["z"], delta_bias=t["delta_bias"], delta_softplus=True,
              return_last_state=True, chunk_size=chunk_size)
    for h0 in (None, t["initial_state"]):
        for reverse in (False, True):
            args = (t["u"], t["delta"], t["A"], t["B"], t["C"])
            got = selective_scan_chunked(*args, initial_state=h0, reverse=reverse, **kw)
            with monkeypatch.context() as m:
                m.setattr(ss, "_chunk_buffers", lambda *a: None)
                want = selective_scan_chunked(*args, initial_state=h0, reverse=reverse, **kw)
            assert all(torch.equal(a, b) for a, b in zip(got, want))
