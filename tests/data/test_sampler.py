import os

import numpy as np
import pytest
import torch

from strandwise.data.loci import extract_loci
from strandwise.data.sampler import (
    EpochBatchSampler,
    PeakNegativeSampler,
    ddp_batch_slice,
    epoch_seed,
)
from strandwise.io.intervals import read_bed, read_peaks

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
FASTA = os.path.join(EXAMPLE, "sacCer3.fa.gz")
BW = os.path.join(EXAMPLE, "yeast_atac.insertions.bw")
IN, OUT, MJ = 200, 100, 20


@pytest.fixture(scope="module")
def loci():
    """40 real chrII peaks (jitter margin 20) and 30 real negatives, small windows for speed."""
    import warnings

    warnings.simplefilter("ignore", UserWarning)  # one chrII peak sits at the chromosome start
    peaks = read_peaks(os.path.join(EXAMPLE, "yeast_atac.macs3_peaks.narrowPeak"))
    neg = read_bed(os.path.join(EXAMPLE, "yeast_atac.negatives.bed"))
    p = extract_loci(FASTA, peaks, [BW], in_window=IN, out_window=OUT, max_jitter=MJ,
                     chroms=["chrII"], summits=True)
    n = extract_loci(FASTA, neg, [BW], in_window=IN, out_window=OUT, chroms=["chrII"],
                     labels=np.zeros(len(neg), np.int8))
    return p.subset(np.arange(40)), n.subset(np.arange(30))


def make(loci, **kw):
    p, n = loci
    args = dict(negative_ratio=0.5, random_state=3)
    args.update(kw)
    return PeakNegativeSampler.from_loci(p, n, **args)


def epoch_items(ds, epoch):
    return [ds[(epoch, i)] for i in range(len(ds))]


def test_epoch_length_labels_and_coverage(loci):
    ds = make(loci)
    assert len(ds) == 40 + int(40 * 0.5)
    plan = ds.epoch_plan(0)
    assert plan["is_peak"].sum() == 40
    assert sorted(plan["example"][plan["is_peak"]].tolist()) == list(range(40))  # each peak once
    labels = [int(it[-1]) for it in epoch_items(ds, 0)]
    assert sum(labels) == 40
    assert ((plan["example"][~plan["is_peak"]] >= 0) & (plan["example"][~plan["is_peak"]] < 30)).all()


def test_plan_follows_spec_draw_order(loci):
    ds = make(loci)
    rng = np.random.RandomState((3 + 2 * 2654435761) % (2**31 - 1))
    assert epoch_seed(3, 2) == (3 + 2 * 2654435761) % (2**31 - 1)
    order = rng.permutation(40)
    is_peak = rng.permutation(np.arange(60) < 40)
    neg = rng.randint(0, 30, size=20)
    jit = rng.randint(0, 2 * MJ + 1, size=60)
    jit[~is_peak] = 0
    rc = rng.randint(0, 2, size=60).astype(bool)
    plan = ds.epoch_plan(2)
    np.testing.assert_array_equal(plan["peak_order"], order)
    np.testing.assert_array_equal(plan["is_peak"], is_peak)
    np.testing.assert_array_equal(plan["example"][~is_peak], neg)
    np.testing.assert_array_equal(plan["jitter"], jit)
    np.testing.assert_array_equal(plan["rc"], rc)


def test_item_is_slice_plus_rc(loci):
    p, n = loci
    ds = make(loci)
    plan = ds.epoch_plan(1)
    perm = torch.tensor([0])
    for idx in range(len(ds)):
        X, y, label = ds[(1, idx)]
        i = plan["example"][idx]
        if plan["is_peak"][idx]:
            j = plan["jitter"][idx]
            X0, y0 = p.X[i, :, j:j + IN].float(), p.y[i, :, j:j + OUT]
        else:
            X0, y0 = n.X[i].float(), n.y[i]
        if plan["rc"][idx]:
            X0, y0 = X0.flip(0).flip(1), y0[perm].flip(1)
        assert torch.equal(X, X0) and torch.equal(y, y0) and int(label) == int(plan["is_peak"][idx])
        assert X.shape == (4, IN) and X.dtype == torch.float32 and y.shape == (1, OUT)


def test_determinism_and_seed_sensitivity(loci):
    a, b, c = make(loci), make(loci), make(loci, random_state=4)
    # access order does not matter
    ea = epoch_items(a, 5)
    eb = [b[(5, i)] for i in reversed(range(len(b)))][::-1]
    for x, y in zip(ea, eb):
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    assert not np.array_equal(a.epoch_plan(5)["example"], c.epoch_plan(5)["example"])
    assert not np.array_equal(a.epoch_plan(5)["example"], a.epoch_plan(6)["example"])


def test_jitter_range_and_rc_rate(loci):
    ds = make(loci)
    jit, rc, neg_jit = [], [], []
    for e in range(60):
        plan = ds.epoch_plan(e)
        jit.append(plan["jitter"][plan["is_peak"]])
        neg_jit.append(plan["jitter"][~plan["is_peak"]])
        rc.append(plan["rc"])
    jit = np.concatenate(jit)
    assert jit.min() == 0 and jit.max() == 2 * MJ  # both ends reachable (inclusive)
    assert (np.concatenate(neg_jit) == 0).all()
    assert abs(np.concatenate(rc).mean() - 0.5) < 0.03


def test_plain_indices_advance_epoch(loci):
    ds = make(loci)
    first = [ds[i] for i in range(len(ds))]
    second = [ds[i] for i in range(len(ds))]  # idx decreased → epoch 1
    ref = make(loci)
    for k in range(len(ds)):
        assert torch.equal(first[k][0], ref[(0, k)][0]) and torch.equal(second[k][0], ref[(1, k)][0])


def test_rc_swaps_strands_within_groups(loci):
    p, n = loci
    y = torch.cat([p.y, 2 * p.y, 3 * p.y], dim=1)  # channels: unstranded, (+, −)
    yn = torch.cat([n.y, 2 * n.y, 3 * n.y], dim=1)
    ds = PeakNegativeSampler(p.X, y, n.X, yn, in_window=IN, out_window=OUT, max_jitter=MJ,
                             signal_groups=[1, 2], random_state=0)
    plan = ds.epoch_plan(0)
    idx = int(np.flatnonzero(plan["rc"] & plan["is_peak"])[0])
    _, yy, _ = ds[(0, idx)]
    i, j = plan["example"][idx], plan["jitter"][idx]
    win = y[i, :, j:j + OUT]
    assert torch.equal(yy, win[[0, 2, 1]].flip(-1))
    # RC twice = identity
    assert torch.equal(yy[[0, 2, 1]].flip(-1), win)


def test_controls_follow_jitter_and_rc(loci):
    p, n = loci
    ctl_p = torch.stack([p.X[:, 0].float(), p.X[:, 1].float()], 1)  # (n, 2, IN + 2MJ)
    ctl_n = torch.stack([n.X[:, 0].float(), n.X[:, 1].float()], 1)
    ds = PeakNegativeSampler(p.X, p.y, n.X, n.y, ctl_p, ctl_n, in_window=IN, out_window=OUT,
                             max_jitter=MJ, control_groups=[2], random_state=1)
    plan = ds.epoch_plan(0)
    for idx in range(len(ds)):
        X, ctl, y, label = ds[(0, idx)]
        assert ctl.shape == (2, IN)
        ref = ctl_p[plan["example"][idx], :, plan["jitter"][idx]:plan["jitter"][idx] + IN] \
            if plan["is_peak"][idx] else ctl_n[plan["example"][idx]]
        if plan["rc"][idx]:
            ref = ref[[1, 0]].flip(-1)
        assert torch.equal(ctl, ref)


def _batches(ds, workers, epochs=(0, 1)):
    bs = EpochBatchSampler(len(ds), batch_size=8)
    dl = torch.utils.data.DataLoader(ds, batch_sampler=bs, num_workers=workers)
    out = []
    for e in epochs:
        bs.set_epoch(e)
        out.extend(list(dl))
    return out


def test_worker_count_does_not_change_batches(loci):
    ds = make(loci)
    b0, b2 = _batches(ds, 0), _batches(make(loci), 2)
    assert len(b0) == 2 * (60 // 8)
    for x, y in zip(b0, b2):
        assert all(torch.equal(u, v) for u, v in zip(x, y))


def test_ddp_slices_reassemble_global_batch(loci):
    ds = make(loci)
    glob = list(EpochBatchSampler(len(ds), 8, epoch=3))
    per_rank = [list(EpochBatchSampler(len(ds), 8, epoch=3, rank=r, world_size=4)) for r in range(4)]
    for b in range(len(glob)):
        assert sum((per_rank[r][b] for r in range(4)), []) == glob[b]
        assert per_rank[1][b] == glob[b][2:4]
    assert ddp_batch_slice(list(range(6)), 2, 3) == [4, 5]
    with pytest.raises(ValueError, match="not divisible by world_size 4"):
        ddp_batch_slice(list(range(6)), 0, 4)
    with pytest.raises(ValueError, match="not divisible"):
        EpochBatchSampler(60, 6, world_size=4)


def test_edge_settings_and_errors(loci):
    p, n = loci
    ds = PeakNegativeSampler.from_loci(p, None, negative_ratio=0, reverse_complement=False,
                                       shuffle=False)
    assert len(ds) == 40 and [int(ds[(0, i)][-1]) for i in range(40)] == [1] * 40
    np.testing.assert_array_equal(ds.epoch_plan(0)["peak_order"], np.arange(40))
    # max_jitter = 0 with un-jittered peaks
    ds0 = PeakNegativeSampler.from_loci(n, None, negative_ratio=0)
    assert (ds0.epoch_plan(0)["jitter"] == 0).all() and ds0[(0, 0)][0].shape == (4, IN)
    with pytest.raises(ValueError, match="negative_ratio > 0 but no negatives"):
        PeakNegativeSampler.from_loci(p, None, negative_ratio=0.25)
    with pytest.raises(ValueError, match="max_jitter must be an int >= 0"):
        PeakNegativeSampler(p.X, p.y, max_jitter=-1, negative_ratio=0)
    with pytest.raises(ValueError, match="negative_ratio must be >= 0"):
        PeakNegativeSampler.from_loci(p, n, negative_ratio=-0.1)
    with pytest.raises(ValueError, match=r"X_peaks must be \(n, 4, 250\)"):
        PeakNegativeSampler(p.X, p.y, n.X, n.y, in_window=IN, out_window=OUT, max_jitter=25)
    none = PeakNegativeSampler.from_loci(p, n, random_state=None)
    assert 0 <= none.random_state < 2**31 - 1
