"""ISM exactness, DeepLIFT/SHAP completeness through the fused conv + norm, the attribute() window."""

import warnings

import pytest
import torch

from strandwise import Cherimoya
from strandwise.models import cpu_chunks
from strandwise.interpret import (
    LogCountWrapper,
    ProfileWrapper,
    attribute,
    attribution_window,
    deep_lift_shap,
    dinucleotide_shuffle,
    saturation_mutagenesis,
)

pytest.importorskip("tangermeme")


def _model(groups=(2,), K=0, seed=1, scale=20.0):
    m = Cherimoya(n_filters=8, n_layers=3, trimming=10, signal_groups=list(groups),
                  n_control_tracks=K, random_state=seed)
    # init-scale weights (std 0.02) keep every unit near-linear; scale up so GELU and the norm bend.
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim > 0:
                p.mul_(scale)
    return m.eval()


def _x(n=3, L=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.zeros(n, 4, L)
    X.scatter_(1, torch.randint(0, 4, (n, 1, L), generator=g), 1.0)
    return X


def test_attribution_window_is_centred():
    assert attribution_window(2114, 400) == (857, 1257)
    assert attribution_window(64, None) == (0, 64)
    assert attribution_window(65, 10) == (27, 37)
    with pytest.raises(ValueError, match="wider"):
        attribution_window(100, 200)


def test_ism_equals_brute_force_loop():
    m = _model((1, 2))
    w = LogCountWrapper(m, group=1)
    X = _x(2, 48)
    X[1, :, 20] = 0  # an N position: every base is a mutation there
    start, end = 15, 27
    got = saturation_mutagenesis(w, X, start=start, end=end, batch_size=7, center=False)
    want = torch.zeros(2, 4, end - start)
    with torch.no_grad():
        for n in range(2):
            base = w(X[n : n + 1])[0, 0]
            for p in range(start, end):
                for b in range(4):
                    if X[n, b, p] == 1:
                        continue
                    xm = X[n : n + 1].clone()
                    xm[0, :, p] = 0
                    xm[0, b, p] = 1
                    want[n, b, p - start] = w(xm)[0, 0] - base
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert (got[0] * X[0, :, start:end]).abs().sum() == 0  # observed base scores 0
    centred = saturation_mutagenesis(w, X, start=start, end=end, batch_size=64)
    torch.testing.assert_close(centred, want - want.mean(dim=1, keepdim=True), atol=1e-6, rtol=0)


def _completeness_gap(wrapper, X, n_shuffles=4, X_ctl=None):
    attr, refs = deep_lift_shap(wrapper, X, X_ctl, n_shuffles=n_shuffles, random_state=3,
                                return_references=True, batch_size=8)
    n, L = X.shape[0], X.shape[-1]
    with torch.no_grad():
        fx = wrapper(X, X_ctl)[:, 0]
        ctl_r = None if X_ctl is None else X_ctl.repeat_interleave(n_shuffles, 0)
        fr = wrapper(refs.reshape(-1, 4, L).to(X.dtype), ctl_r)[:, 0].reshape(n, n_shuffles).mean(1)
    got = (attr * X).sum(dim=(1, 2))
    return (got - (fx - fr)).abs().max().item(), (fx - fr).abs().max().item(), attr


@pytest.mark.parametrize("kind", ["logcounts", "profile"])
def test_deep_lift_shap_completeness_through_conv_norm(kind):
    m = _model((1, 2))
    w = LogCountWrapper(m, group=1) if kind == "logcounts" else ProfileWrapper(m, group=1)
    X = _x(3, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no convergence warnings
        gap, scale, attr = _completeness_gap(w, X)
    assert scale > 0.02  # the outputs really differ from the references
    assert gap < 2e-5, (gap, scale)
    assert attr.shape == X.shape


def test_deep_lift_shap_with_controls_complete():
    m = _model((1,), K=1)
    X = _x(2, 64)
    ctl = torch.rand(2, 1, 64) * 3
    gap, scale, _ = _completeness_gap(LogCountWrapper(m), X, X_ctl=ctl)
    assert gap < 2e-5 and scale > 1e-3


@pytest.mark.parametrize("kind", ["logcounts", "profile"])
def test_deep_lift_shap_completeness_in_float64(kind):
    """In float64 the rule is exact up to float64 rounding: the fp32 gap (~1e-7) was rounding."""
    m = _model((1, 2)).double()
    w = LogCountWrapper(m, group=1) if kind == "logcounts" else ProfileWrapper(m, group=1)
    X = _x(3, 64).double()
    gap, scale, attr = _completeness_gap(w, X)
    assert attr.dtype == torch.float64
    assert scale > 0.02 and gap < 1e-10, (gap, scale)


def test_without_the_conv_norm_rule_completeness_fails():
    """The fused conv+norm is what needs the rule: tangermeme alone treats it as linear."""
    from tangermeme.deep_lift_shap import deep_lift_shap as raw

    m = _model((1, 2))
    w = LogCountWrapper(m, group=1)
    X = _x(3, 64)
    refs = dinucleotide_shuffle(X, 4, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = raw(w, X, references=refs, hypothetical=True, device="cpu")
    with torch.no_grad():
        fx = w(X)[:, 0]
        fr = w(refs.reshape(-1, 4, 64))[:, 0].reshape(3, 4).mean(1)
    gap = ((attr * X).sum(dim=(1, 2)) - (fx - fr)).abs().max().item()
    assert gap > 1e-2


def test_dinucleotide_shuffle_seeds_and_composition():
    X = _x(2, 50)
    a = dinucleotide_shuffle(X, 3, random_state=5)
    b = dinucleotide_shuffle(X, 3, random_state=5)
    assert a.shape == (2, 3, 4, 50) and torch.equal(a, b)
    assert not torch.equal(a[:, 0], a[:, 1])
    # dinucleotide counts preserved
    def dinuc(x):
        i = x.argmax(0)
        return torch.bincount(i[:-1] * 4 + i[1:], minlength=16)
    for n in range(2):
        for k in range(3):
            assert torch.equal(dinuc(a[n, k]), dinuc(X[n]))


def test_attribute_crops_to_the_window_and_validates():
    m = _model((1,))
    X = _x(2, 64)
    ohe, attr = attribute(m, X, algorithm="deep_lift_shap", output="profile", attr_window=20,
                          n_shuffles=3, batch_size=8)
    assert ohe.shape == attr.shape == (2, 4, 20)
    torch.testing.assert_close(ohe, X[:, :, 22:42])
    full = deep_lift_shap(ProfileWrapper(m, 0), X, n_shuffles=3, random_state=0, batch_size=8)
    torch.testing.assert_close(attr, full[:, :, 22:42])
    o2, ism = attribute(m, X, algorithm="saturation_mutagenesis", output="logcounts", attr_window=8)
    assert ism.shape == (2, 4, 8)
    torch.testing.assert_close(ism.sum(dim=1), torch.zeros(2, 8), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="algorithm"):
        attribute(m, X, algorithm="gradient")
    with pytest.raises(ValueError, match="output"):
        attribute(m, X, output="shape")
    with pytest.raises(ValueError, match="group"):
        attribute(m, X, group=1)
    with pytest.warns(DeprecationWarning):
        attribute(m, X, algorithm="saturation_mutagenesis", output="counts", attr_window=2)


def test_deep_lift_shap_cpu_batch_is_capped_to_the_model_chunk(monkeypatch):
    # on the CPU the pairs per forward are capped at half the model's chunk (inputs + references
    # share one forward); the attributions are those of the uncapped call
    import tangermeme.deep_lift_shap as dls_mod

    m = _model((1,))
    w = LogCountWrapper(m)
    X = _x(3, 64)
    ref = deep_lift_shap(w, X, n_shuffles=4, batch_size=64)
    seen = []
    real = dls_mod.deep_lift_shap
    monkeypatch.setattr(dls_mod, "deep_lift_shap", lambda *a, **k: seen.append(k["batch_size"]) or real(*a, **k))
    monkeypatch.setattr(cpu_chunks, "CPU_CHUNK_BYTES", 6 * 64 * 2 * 8 * 4)  # chunks of 6 examples
    got = deep_lift_shap(w, X, n_shuffles=4, batch_size=64)
    assert seen == [3]
    assert torch.allclose(got, ref, atol=1e-6)
