import math

import pytest
import torch

from strandwise.train.losses import KendallGalWeights, count_targets, mixture_loss, mnll


def test_mnll_equals_multinomial_log_prob():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 30, generator=g, dtype=torch.float64)
    y = torch.randint(0, 6, (5, 30), generator=g).double()
    logp = torch.log_softmax(logits, -1)
    got = mnll(logp, y)
    for i in range(5):
        d = torch.distributions.Multinomial(int(y[i].sum()), probs=logp[i].exp())
        assert math.isclose(float(got[i]), float(-d.log_prob(y[i])), rel_tol=1e-10, abs_tol=1e-9)


def test_group_shift_invariance_and_strand_shift_changes_loss():
    g = torch.Generator().manual_seed(1)
    y = torch.poisson(torch.full((4, 2, 50), 2.0), generator=g)
    logits = torch.randn(4, 2, 50, generator=g)
    counts = torch.randn(4, 1, generator=g)
    p0, c0 = mixture_loss(y, logits, counts, signal_groups=[2])
    shift = torch.randn(4, 1, 1, generator=g) * 3
    p1, _ = mixture_loss(y, logits + shift, counts, signal_groups=[2])
    torch.testing.assert_close(p0, p1, atol=1e-4, rtol=1e-6)
    one_strand = logits.clone()
    one_strand[:, 0] += 2.0
    p2, _ = mixture_loss(y, one_strand, counts, signal_groups=[2])
    assert (p2 - p0).abs().item() > 1e-2


def test_size_one_groups_bit_identical_to_per_channel():
    g = torch.Generator().manual_seed(2)
    y = torch.poisson(torch.full((3, 3, 20), 1.5), generator=g)
    logits = torch.randn(3, 3, 20, generator=g)
    counts = torch.randn(3, 3, generator=g)
    a = mixture_loss(y, logits, counts, signal_groups=[1, 1, 1])
    b = mixture_loss(y, logits, counts, signal_groups=None)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # and equals the per-channel MNLL by hand
    per = mnll(torch.log_softmax(logits, -1), y).mean(0)
    torch.testing.assert_close(a[0], per)


def test_count_loss_zero_at_truth_and_pools_strands():
    y = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [5.0, 5.0]]])  # groups [2, 1]
    target = count_targets(y, [2, 1])
    torch.testing.assert_close(target, torch.log1p(torch.tensor([[6.0, 10.0]])))
    _, c = mixture_loss(y, torch.zeros_like(y), target, signal_groups=[2, 1])
    assert torch.all(c == 0)


def test_mismatched_groups_raise():
    y = torch.zeros(2, 3, 10)
    with pytest.raises(ValueError, match=r"sum\(signal_groups\)"):
        mixture_loss(y, y, torch.zeros(2, 1), signal_groups=[2])


def test_labels_restrict_profile_rows_only():
    g = torch.Generator().manual_seed(3)
    y = torch.poisson(torch.full((4, 1, 10), 2.0), generator=g)
    logits = torch.randn(4, 1, 10, generator=g)
    counts = torch.randn(4, 1, generator=g)
    labels = torch.tensor([1, 0, 1, 0])
    p, c = mixture_loss(y, logits, counts, labels=labels, signal_groups=[1])
    p_ref, _ = mixture_loss(y[[0, 2]], logits[[0, 2]], counts[[0, 2]], signal_groups=[1])
    _, c_ref = mixture_loss(y, logits, counts, signal_groups=[1])
    torch.testing.assert_close(p, p_ref)
    torch.testing.assert_close(c, c_ref)


def test_kendall_at_one_and_analytic_gradient():
    kg = KendallGalWeights()
    prof = torch.tensor([3.0, 5.0])
    cnt = torch.tensor([0.5, 0.25])
    lw0 = torch.ones(2, requires_grad=True)
    lw1 = torch.ones(2, requires_grad=True)
    loss = kg(prof, cnt, lw0, lw1)
    assert math.isclose(float(loss), 0.5 * 8.0 + 0.5 * 0.75, rel_tol=1e-6)
    lw0 = torch.tensor([0.7, 1.3], requires_grad=True)
    kg(prof, cnt, lw0, torch.ones(2)).backward()
    analytic = -prof / lw0.detach() ** 3 + 2 * torch.log(lw0.detach()) / lw0.detach()
    torch.testing.assert_close(lw0.grad, analytic)


def test_freeze_rule_makes_weights_constant():
    kg = KendallGalWeights()
    lw0 = torch.nn.Parameter(torch.ones(1))
    lw1 = torch.nn.Parameter(torch.ones(1))
    # gradient magnitude 0.5·|∂(w0·prof)/∂lw0| = prof at lw=1 → 0.4 < 1: freeze
    kg(torch.tensor([0.4]), torch.tensor([0.1]), lw0, lw1).backward()
    kg.record_gradient(lw0)
    assert kg.maybe_freeze(lw0, lw1) is True
    assert kg.frozen and not lw0.requires_grad and not lw1.requires_grad
    loss = kg(torch.tensor([0.4], requires_grad=True), torch.tensor([0.1]), lw0, lw1)
    assert math.isclose(float(loss), 0.5 * 0.4 + 0.5 * 0.1, rel_tol=1e-6)  # no regulariser
    assert kg.maybe_freeze(lw0, lw1) is False


def test_no_freeze_while_gradient_large():
    kg = KendallGalWeights()
    lw0 = torch.nn.Parameter(torch.ones(1))
    lw1 = torch.nn.Parameter(torch.ones(1))
    kg(torch.tensor([50.0]), torch.tensor([1.0]), lw0, lw1).backward()
    kg.record_gradient(lw0)
    assert kg.maybe_freeze(lw0, lw1) is False and lw0.requires_grad


def test_fixed_weights_divide_profile_by_depth():
    kg = KendallGalWeights(loss_weights=(2.0, 3.0))
    loss = kg(torch.tensor([10.0]), torch.tensor([1.0]), torch.ones(1), torch.ones(1), depth=torch.tensor([5.0]))
    assert math.isclose(float(loss), 2.0 * 10 / 5 + 3.0, rel_tol=1e-6)
    loss = kg(torch.tensor([10.0]), torch.tensor([1.0]), torch.ones(1), torch.ones(1), depth=torch.tensor([0.2]))
    assert math.isclose(float(loss), 2.0 * 10 + 3.0, rel_tol=1e-6)  # depth clamped at 1


def test_recorded_gradient_is_a_snapshot_read_as_a_float():
    """record_gradient keeps a device value (no host sync per step); reading it gives a float
    that later changes to ``lw0.grad`` do not touch."""
    kg = KendallGalWeights()
    lw0 = torch.nn.Parameter(torch.ones(1))
    lw1 = torch.nn.Parameter(torch.ones(1))
    kg(torch.tensor([0.4]), torch.tensor([0.1]), lw0, lw1).backward()
    kg.record_gradient(lw0)
    lw0.grad.mul_(100.0)
    v = kg.last_lw0_grad
    assert isinstance(v, float) and math.isclose(v, 0.4, rel_tol=1e-6)
    kg.last_lw0_grad = None
    assert kg.last_lw0_grad is None and kg.maybe_freeze(lw0, lw1) is False
