"""Spec §9 item 34: output wrappers."""

import pytest
import torch

from strandwise import Cherimoya
from strandwise.interpret import ControlWrapper, ExpectedCountsWrapper, LogCountWrapper, ProfileWrapper


def _model(groups=(1, 2), K=0, seed=0):
    return Cherimoya(n_filters=8, n_layers=2, trimming=6, signal_groups=list(groups),
                     n_control_tracks=K, random_state=seed).eval()


def _x(n=3, L=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.zeros(n, 4, L)
    X.scatter_(1, torch.randint(0, 4, (n, 1, L), generator=g), 1.0)
    return X


def test_expected_counts_group_sums_equal_expm1_counts():
    m = _model((1, 2))
    with torch.no_grad():
        m.linear.bias.copy_(torch.tensor([2.0, 3.5]))
        X = _x()
        e = ExpectedCountsWrapper(m)(X)
        _, c = m(X)
    assert e.shape == (3, 3, 40 - 12)
    torch.testing.assert_close(e[:, :1].sum(dim=(1, 2)), torch.expm1(c[:, 0]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e[:, 1:].sum(dim=(1, 2)), torch.expm1(c[:, 1]), rtol=1e-5, atol=1e-5)
    # the stranded group is one joint softmax: the two strands share the group's total
    assert not torch.allclose(e[:, 1].sum(-1), e[:, 2].sum(-1))


def test_profile_wrapper_shape_formula_and_shift_invariance():
    m = _model((1, 2))
    X = _x()
    with torch.no_grad():
        logits, _ = m(X)
        out = ProfileWrapper(m)(X)
        out_g1 = ProfileWrapper(m, group=1)(X)
    assert out.shape == (3, 1) and out_g1.shape == (3, 1)
    flat = logits[:, 1:].reshape(3, -1)
    z = flat - flat.mean(-1, keepdim=True)
    torch.testing.assert_close(out_g1[:, 0], (z * torch.softmax(z, -1)).sum(-1))

    class Shifted(torch.nn.Module):
        def __init__(self, inner, shift):
            super().__init__()
            self.inner, self.shift = inner, shift
            self.signal_groups, self.n_control_tracks = inner.signal_groups, 0

        def forward(self, X, X_ctl=None):
            p, c = self.inner(X, X_ctl)
            return p + self.shift, c

    with torch.no_grad():
        shifted = ProfileWrapper(Shifted(m, 7.5))(X)
    torch.testing.assert_close(shifted, out, atol=1e-5, rtol=1e-5)


def test_log_count_wrapper_all_and_one_group():
    m = _model((1, 2))
    X = _x()
    with torch.no_grad():
        _, c = m(X)
        torch.testing.assert_close(LogCountWrapper(m)(X), c)
        torch.testing.assert_close(LogCountWrapper(m, group=1)(X), c[:, 1:2])


def test_control_wrapper_zeros_and_pass_through():
    m = _model((1,), K=2)
    X = _x()
    ctl = torch.rand(3, 2, 40) * 5
    w = ControlWrapper(m)
    assert w.signal_groups == [1] and w.n_control_tracks == 2
    with torch.no_grad():
        p0, c0 = w(X)
        pz, cz = m(X, torch.zeros(3, 2, 40))
        p1, c1 = w(X, ctl)
        pc, cc = m(X, ctl)
    torch.testing.assert_close(p0, pz)
    torch.testing.assert_close(c0, cz)
    torch.testing.assert_close(p1, pc)
    torch.testing.assert_close(c1, cc)
    assert not torch.allclose(c0, c1)
    # a model without controls: nothing supplied
    m2 = _model((1,))
    with torch.no_grad():
        torch.testing.assert_close(ControlWrapper(m2)(X)[1], m2(X)[1])


@pytest.mark.parametrize("bad", [2, -1, True, 1.0, "0"])
@pytest.mark.parametrize("cls", [ProfileWrapper, LogCountWrapper])
def test_wrong_group_raises(cls, bad):
    with pytest.raises(ValueError, match=r"group must be an int in \[0, 2\)"):
        cls(_model((1, 2)), group=bad)
