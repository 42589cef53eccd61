import math

import pytest
import torch

from strandwise.evaluate import metrics as M


def test_pearson_perfect_constant_and_spearman_monotone():
    a = torch.arange(10.0)
    assert math.isclose(float(M.pearson_corr(a, 3 * a + 1)), 1.0, abs_tol=1e-6)
    assert math.isclose(float(M.pearson_corr(a, -a)), -1.0, abs_tol=1e-6)
    assert float(M.pearson_corr(a, torch.ones(10))) == 0.0
    assert math.isclose(float(M.spearman_corr(a, a**3)), 1.0, abs_tol=1e-6)
    # ordinal ranks: ties broken by position
    assert M.ordinal_ranks(torch.tensor([3.0, 1.0, 3.0])).tolist() == [1.0, 0.0, 2.0]


def test_jsd_properties():
    y = torch.tensor([[[1.0, 3.0, 0.0, 6.0]]])
    logits = torch.log(y / y.sum() + 1e-30)
    assert abs(float(M.profile_jsd(logits, y))) < 1e-6
    disjoint = torch.tensor([[[0.0, 0.0, 5.0, 0.0]]])
    val = float(M.profile_jsd(torch.tensor([[[30.0, 0.0, -30.0, 0.0]]]), disjoint))
    assert val <= math.log(2) + 1e-6 and val > 0.6
    assert math.isnan(float(M.profile_jsd(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))))


def test_jsd_matches_hand_computation():
    p = torch.tensor([0.2, 0.3, 0.5])
    y = torch.tensor([1.0, 1.0, 2.0])
    q = y / y.sum()
    m = (p + q) / 2
    ref = 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
    got = M.profile_jsd(p.log()[None, None], y[None, None])
    assert math.isclose(float(got), float(ref), rel_tol=1e-5)


def test_count_metrics_per_group():
    y = torch.zeros(4, 3, 5)
    y[:, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y[:, 1, 1] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    y[:, 2, 2] = torch.tensor([1.0, 5.0, 2.0, 9.0])
    groups = [2, 1]
    target = torch.stack([torch.log1p(y[:, :2].sum((1, 2))), torch.log1p(y[:, 2].sum(-1))], 1)
    pred = target + torch.tensor([[0.1, -0.2]])
    mse = M.count_mse(pred, y, groups)
    torch.testing.assert_close(mse, torch.tensor([0.01, 0.04]))
    cp = M.count_pearson(pred, y, groups)
    assert math.isnan(float(M.pearson_corr(target[:, 0], target[:, 0]))) is False
    assert float(cp[1]) == pytest.approx(1.0, abs=1e-6)


def test_auroc_auprc():
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    lab = torch.tensor([0, 0, 1, 1])
    assert M.auroc(s, lab) == pytest.approx(0.75)
    assert M.auprc(s, lab) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert math.isnan(M.auroc(s, torch.ones(4)))


def test_gaussian_smoothing_preserves_mass_in_interior():
    x = torch.zeros(1, 1, 301)
    x[0, 0, 150] = 1.0
    s = M.gaussian_smooth(x)
    assert float(s.sum()) == pytest.approx(1.0, abs=1e-5)
    assert int(s.argmax()) == 150


def test_group_table_rows_match_hand_means():
    g = torch.Generator().manual_seed(0)
    y = torch.poisson(torch.full((6, 3, 20), 2.0), generator=g)
    logits = torch.randn(6, 3, 20, generator=g)
    counts = torch.randn(6, 2, generator=g)
    labels = torch.tensor([1, 1, 1, 1, 0, 0])
    rows = M.group_performance_table(logits, y, counts, [1, 2], labels)
    assert [r["group"] for r in rows] == [0, 1]
    pk = labels.bool()
    ref = M.profile_pearson(logits[pk], y[pk])[:, 1:3].mean()
    assert rows[1]["profile_pearson"] == pytest.approx(float(ref), abs=1e-4)
    ref_mse = M.count_mse(counts[pk], y[pk], [1, 2])[0]
    assert rows[0]["count_mse"] == pytest.approx(float(ref_mse), abs=1e-4)
    assert rows[0]["auroc"] == pytest.approx(M.auroc(counts[:, 0], labels), abs=1e-9)
    assert set(M.GROUP_METRIC_COLUMNS) <= set(rows[0])
