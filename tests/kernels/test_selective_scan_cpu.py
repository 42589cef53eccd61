"""The compiled CPU selective scan (``strandwise.kernels.selective_scan_cpu``): outputs and
gradients against the chunked reference, the dispatch rules, the ``auto`` rule, and the fallback
when compiling fails.

The suite's conftest sets ``STRANDWISE_CPU_SCAN_COMPILE=0`` for every other test; these tests set
the switch themselves. The first compiles cost ~20–40 s (inference) and ~60 s (the backward) on a
2-core machine with an empty TorchInductor cache; one compiled chunk serves every shape (its sizes
are compiled as free symbols).
"""

import warnings

import pytest
import torch

from strandwise.kernels import selective_scan_cpu as cpu_scan
from strandwise.kernels.selective_scan import selective_scan_chunked, selective_scan_fn
from strandwise.models.caduceus import CaduceusConfig, CaduceusForMaskedLM


def _inputs(b, d, L, N, *, z=True, D=True, bias=True, init=False, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    return dict(
        u=r(b, d, L).to(dtype), delta=r(b, d, L).to(dtype), A=-torch.rand(d, N, generator=g) * 4,
        B=r(b, N, L).to(dtype), C=r(b, N, L).to(dtype),
        D=r(d) if D else None, z=r(b, d, L).to(dtype) if z else None,
        delta_bias=r(d) if bias else None,
        initial_state=r(b, d, N) if init else None,
    )


# (b, d, L, N, reverse, softplus, options): odd lengths (padded last chunk), a batch, width and
# state of one, L shorter than a chunk and several chunks, both directions, every optional input.
CASES = [
    (2, 40, 70, 16, False, True, {}),
    (2, 40, 70, 16, True, True, {"init": True}),
    (1, 1, 1, 1, True, True, {"init": True, "z": False}),
    (3, 24, 96, 4, False, False, {"D": False, "bias": False}),
    (1, 8, 33, 2, True, True, {"z": False, "D": False}),
]


@pytest.mark.parametrize("b,d,L,N,reverse,softplus,opts", CASES)
def test_compiled_scan_matches_the_chunked_reference(b, d, L, N, reverse, softplus, opts):
    x = _inputs(b, d, L, N, **opts)
    with torch.no_grad():
        ref, ref_last = selective_scan_chunked(**x, delta_softplus=softplus, reverse=reverse,
                                               return_last_state=True)
        res = cpu_scan.selective_scan_compiled(**x, delta_softplus=softplus, reverse=reverse,
                                               return_last_state=True)
    assert res is not None, "compiling the CPU scan failed on this machine"
    out, last = res
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert last.shape == ref_last.shape and last.dtype == torch.float32
    scale = ref.abs().max().clamp_min(1.0)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * scale.item())
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5 * ref_last.abs().max().clamp_min(1.0).item())
    # and the reference differs from a clearly wrong answer: the check can fail
    assert not torch.allclose(out, torch.zeros_like(out))


GRAD_CASES = [
    (2, 24, 50, 16, False, {"init": True}),  # the last chunk padded; every input
    (2, 24, 50, 16, True, {"init": True}),
    (1, 8, 17, 4, True, {"z": False}),
    (3, 16, 64, 8, False, {"D": False, "bias": False}),
]


@pytest.mark.parametrize("b,d,L,N,reverse,opts", GRAD_CASES)
def test_compiled_scan_gradients_match_the_chunked_reference(b, d, L, N, reverse, opts):
    """Every input's gradient, through both outputs (``out`` and the last state), against the
    chunked reference's hand-written backward."""
    x = {k: (v.requires_grad_(True) if v is not None else None) for k, v in _inputs(b, d, L, N, **opts).items()}
    g = torch.Generator().manual_seed(7)
    w_out, w_last = torch.randn(b, d, L, generator=g), torch.randn(b, d, N, generator=g)

    def grads(fn):
        for v in x.values():
            if v is not None:
                v.grad = None
        out, last = fn(**x, delta_softplus=True, reverse=reverse, return_last_state=True)
        ((out * w_out).sum() + (last * w_last).sum()).backward()
        return {"out": out.detach(), "last": last.detach(),
                **{k: v.grad.clone() for k, v in x.items() if v is not None}}

    got, ref = grads(cpu_scan.selective_scan_compiled), grads(selective_scan_chunked)
    assert set(got) == set(ref)
    for k in ref:
        scale = ref[k].abs().max().clamp_min(1e-3).item()
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=2e-6 * scale, msg=k)
    assert ref["u"].abs().max() > 0  # the weights reach every gradient: the check can fail


def test_compiled_scan_bf16_inputs_return_bf16():
    x = _inputs(2, 16, 45, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = selective_scan_chunked(**x, delta_softplus=True)
        out = cpu_scan.selective_scan_compiled(**x, delta_softplus=True)
    assert out is not None and out.dtype == torch.bfloat16
    # both compute in fp32 and round once to bf16: at most one bf16 step apart
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


def _spy(monkeypatch):
    calls = []
    real = cpu_scan.selective_scan_compiled

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(cpu_scan, "selective_scan_compiled", spy)
    return calls


def test_dispatcher_takes_the_compiled_scan_only_for_fp32_cpu_inference(monkeypatch):
    calls = _spy(monkeypatch)
    x = _inputs(2, 16, 40, 4)
    monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", "1")
    with torch.no_grad():
        out = selective_scan_fn(**x, delta_softplus=True)
        ref = selective_scan_chunked(**x, delta_softplus=True)
    assert len(calls) == 1
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)

    # autograd records the call: the compiled scan with its compiled backward
    xg = {k: (v.clone().requires_grad_(True) if k == "u" else v) for k, v in x.items()}
    y = selective_scan_fn(**xg, delta_softplus=True)
    y.sum().backward()
    assert len(calls) == 2 and xg["u"].grad is not None

    # fp64 computes in fp64: the reference
    x64 = {k: (v.double() if v is not None and k != "A" else v) for k, v in x.items()}
    with torch.no_grad():
        selective_scan_fn(**x64, delta_softplus=True)
    assert len(calls) == 2

    monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", "0")
    with torch.no_grad():
        selective_scan_fn(**x, delta_softplus=True)
    assert len(calls) == 2


def test_auto_compiles_after_the_eager_time_budget(monkeypatch):
    calls = _spy(monkeypatch)
    monkeypatch.delenv("STRANDWISE_CPU_SCAN_COMPILE", raising=False)
    monkeypatch.setitem(cpu_scan._state, "eager_s", 0.0)
    monkeypatch.setitem(cpu_scan._state, "failed", False)
    assert cpu_scan.mode() == "auto" and not cpu_scan.wanted()
    x = _inputs(1, 8, 20, 4)
    with torch.no_grad():
        selective_scan_fn(**x, delta_softplus=True)
    assert calls == [] and cpu_scan._state["eager_s"] > 0.0  # eager, and timed
    cpu_scan.note_eager(cpu_scan.AUTO_AFTER_S)
    assert cpu_scan.wanted()
    with torch.no_grad():
        selective_scan_fn(**x, delta_softplus=True)
    assert calls == [1]


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("", "auto"), (" 1 ", "on"), ("0", "off")])
def test_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", value)
    assert cpu_scan.mode() == expected


def test_mode_rejects_typos(monkeypatch):
    monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", "yes")
    with pytest.raises(ValueError, match="STRANDWISE_CPU_SCAN_COMPILE"):
        cpu_scan.mode()


def test_a_failed_compile_warns_once_and_keeps_the_reference(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setitem(cpu_scan._state, "fn", {"chunk": broken, "prologue": broken, "epilogue": broken})
    monkeypatch.setitem(cpu_scan._state, "failed", False)
    monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", "1")
    x = _inputs(2, 8, 20, 4)
    with torch.no_grad():
        ref = selective_scan_chunked(**x, delta_softplus=True)
        # the call under way completes with the same functions run eagerly
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            out = selective_scan_fn(**x, delta_softplus=True)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert not cpu_scan.wanted()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out2 = selective_scan_fn(**x, delta_softplus=True)
    torch.testing.assert_close(out2, ref, rtol=0, atol=0)


def _small_caduceus():
    """A small bidirectional RC-equivariant Caduceus (eval mode) and a batch of ids for it."""
    cfg = CaduceusConfig(d_model=32, n_layer=2, vocab_size=12, rcps=True,
                         complement_map={7: 10, 8: 9, 9: 8, 10: 7}, ssm_cfg={"d_state": 8})
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(cfg).eval()
    return model, torch.randint(7, 11, (3, 75), generator=torch.Generator().manual_seed(1))


def test_caduceus_training_gradients_are_the_same_with_the_compiled_scan(monkeypatch):
    """One masked-LM loss of a small bidirectional RC-equivariant Caduceus in training mode:
    every parameter's gradient with the compiled scan and backward equals the reference's."""
    model, ids = _small_caduceus()
    model.train()
    calls = _spy(monkeypatch)

    def grads(flag):
        monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", flag)
        model.zero_grad(set_to_none=True)
        logits = model(ids).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref = grads("0")
    got = grads("1")
    assert len(calls) >= 2 * model.config.n_layer
    assert set(got) == set(ref) and any("A_log" in n for n in ref)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-6 + 1e-4 * ref[n].abs().max().item(), msg=n)


def test_caduceus_inference_is_the_same_with_the_compiled_scan(monkeypatch):
    """A bidirectional RC-equivariant Caduceus (forward and reverse scans, both strands): no-grad
    logits with the compiled scan equal the chunked reference's up to fp32 rounding."""
    model, ids = _small_caduceus()
    calls = _spy(monkeypatch)
    with torch.no_grad():
        monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", "0")
        ref = model(ids).logits
        monkeypatch.setenv("STRANDWISE_CPU_SCAN_COMPILE", "1")
        out = model(ids).logits
    assert len(calls) >= 2 * model.config.n_layer  # both directions of every layer
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
