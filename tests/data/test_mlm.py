"""MLM windows and masking (spec caduceus.md §6.1) on the real yeast genome."""

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from strandwise.data.mlm import MLMWindowDataset, make_windows, mlm_mask, split_windows
from strandwise.data.sampler import EpochBatchSampler
from strandwise.io.intervals import Intervals
from strandwise.io.records import SequenceStore, decode_ids
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

YEAST = shared("yeast_genome_R64-1-1")
CHR = lambda n: os.path.join(YEAST, f"Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.{n}.fa.gz")


@pytest.fixture(scope="module")
def store():
    return SequenceStore([CHR("I"), CHR("III"), CHR("VI")])


def test_masking_statistics_on_a_million_real_tokens(store):
    ids = store.fetch_ids("III", 0, 300_000).astype(np.int64)
    ids = np.concatenate([ids, store.fetch_ids("VI", 0, 270_161), store.fetch_ids("I", 0, 230_218)])[:800_000]
    ids = np.concatenate([ids, ids[:200_000]])  # 10^6 tokens
    n = len(ids)
    inp, tgt = mlm_mask(ids, np.random.default_rng(123))
    sel = tgt != 4
    z = lambda count, p: abs(count - n * p) / np.sqrt(n * p * (1 - p))
    assert z(sel.sum(), 0.15) < 5
    masked = inp == 3
    assert z(masked.sum(), 0.15 * (0.8 + 0.1 / 12)) < 5  # a random id can be [MASK] too
    changed = sel & ~masked & (inp != ids)
    unchanged = sel & (inp == ids)
    # a random id equals the original with probability 1/12, so "unchanged" = 10% + 10%/12 of selected
    assert z(unchanged.sum(), 0.15 * (0.1 + 0.1 / 12)) < 5
    assert z(changed.sum(), 0.15 * 0.1 * 10 / 12) < 5  # neither the original nor [MASK]
    # targets: original id where selected, 4 elsewhere; nothing outside the selection changes
    assert np.array_equal(tgt[sel], ids[sel]) and (tgt[~sel] == 4).all()
    assert np.array_equal(inp[~sel], ids[~sel])
    # random replacements are uniform over all 12 tokenizer ids 0..11 (specials and N included)
    u = np.random.default_rng(123)
    u_sel, u_mask, u_rand = u.random(n), u.random(n), u.random(n)
    rand_ids = u.integers(0, 12, n)
    to_rand = (u_sel < 0.15) & (u_mask >= 0.8) & (u_rand < 0.5)
    assert np.array_equal(inp[to_rand], rand_ids[to_rand])  # exact on the fixed seed
    counts = np.bincount(inp[to_rand], minlength=12)
    m = to_rand.sum()
    assert len(counts) == 12 and all(abs(c - m / 12) < 5 * np.sqrt(m / 12) for c in counts)
    # exact reproducibility, and a different seed gives different masks
    inp2, tgt2 = mlm_mask(ids, np.random.default_rng(123))
    assert np.array_equal(inp, inp2) and np.array_equal(tgt, tgt2)
    assert not np.array_equal(mlm_mask(ids, np.random.default_rng(124))[1], tgt)


def test_windows_shift_back_at_chromosome_end_and_skip_short_sequences():
    sizes = {"a": 1000, "b": 50}
    w, lab = make_windows(sizes, 300)
    assert w.chrom.tolist() == ["a"] * 4
    assert w.start.tolist() == [0, 300, 600, 700]  # last window ends at the chromosome end
    assert w.skipped["sequence shorter than the window"] == 1
    bed = Intervals(np.array(["a", "a"], dtype=object), [0, 900], [200, 1000], extra=[["train"], ["valid"]])
    w2, lab2 = make_windows(sizes, 300, bed, stride=100)
    assert w2.start.tolist() == [0, 100, 700]
    sp = split_windows(w2, lab2)
    assert len(sp["train"]) == 2 and sp["valid"].start.tolist() == [700]


def test_bed_intervals_past_the_chromosome_end_or_with_a_name_column_are_errors():
    sizes = {"a": 1000}
    # an interval of another genome build would collapse onto a's last window: refuse it
    past = Intervals(np.array(["a", "a"], dtype=object), [0, 5000], [200, 6000])
    with pytest.raises(ValueError, match=r"x.bed: interval 2 \(a:5000-6000\) starts at or past the end of a"):
        make_windows(sizes, 300, past, source="x.bed")
    named = Intervals(np.array(["a"], dtype=object), [0], [600], extra=[["peak1"]])
    with pytest.raises(ValueError, match=r"x.bed: interval 1 \(a:0-600\) has 4th column 'peak1'"):
        make_windows(sizes, 300, named, source="x.bed")
    # a split name in any case is accepted; an interval that only runs past the end is shifted back
    ok = Intervals(np.array(["a"], dtype=object), [800], [1200], extra=[["Valid"]])
    w, lab = make_windows(sizes, 300, ok)
    assert w.start.tolist() == [700] and split_windows(w, lab)["valid"].start.tolist() == [700]
    assert w.skipped["window repeated by the shift back at the chromosome end"] == 1  # 1100 -> 700 again


def test_chromosome_splits(store):
    w, lab = make_windows(store.chrom_sizes, 1000)
    sp = split_windows(w, lab, valid_chroms=["I"], test_chroms=["VI"])
    assert set(sp["valid"].chrom) == {"I"} and set(sp["test"].chrom) == {"VI"} and set(sp["train"].chrom) == {"III"}
    assert len(sp["train"]) == -(-316_620 // 1000)
    with pytest.raises(ValueError, match="both valid_chroms and test_chroms"):
        split_windows(w, lab, valid_chroms=["I"], test_chroms=["I"])


def test_n_becomes_pad_and_an_all_n_window_gives_no_targets_and_finite_loss(tmp_path):
    from strandwise.models.caduceus import CaduceusConfig, CaduceusForMaskedLM

    fa = tmp_path / "n.fa"
    fa.write_text(">n\n" + "N" * 256 + "\n>m\n" + "ACGTN" * 60 + "\n")
    st = SequenceStore(str(fa))
    w, _ = make_windows(st.chrom_sizes, 128, chroms=["n"])
    ds = MLMWindowDataset(st, w, seed=0, shuffle=False)
    x = torch.stack([ds[(0, i)][0] for i in range(len(ds))])
    y = torch.stack([ds[(0, i)][1] for i in range(len(ds))])
    assert (y == 4).all() and not (x == 11).any()
    assert set(x.unique().tolist()) <= set(range(12))
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=1, vocab_size=12, ssm_cfg={"d_state": 4},
                                               rcps=True, complement_map={7: 10, 8: 9, 9: 8, 10: 7}))
    out = model(x, labels=y)
    assert torch.isfinite(out.loss) and float(out.loss.detach()) == 0.0 and int(out.n_valid) == 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() and (p.grad == 0).all() for p in model.parameters() if p.grad is not None)
    w2, _ = make_windows(st.chrom_sizes, 300, chroms=["m"])
    ids, tgt = MLMWindowDataset(st, w2, seed=3, shuffle=False)[(0, 0)]
    n_pos = np.arange(300) % 5 == 4
    assert (tgt[torch.from_numpy(n_pos)] == 4).all()  # N is never a target


def _batches(ds, num_workers, epoch):
    bs = EpochBatchSampler(len(ds), 8)
    bs.set_epoch(epoch)
    return [b for b in DataLoader(ds, batch_sampler=bs, num_workers=num_workers)]


def test_items_are_a_pure_function_of_seed_epoch_idx_whatever_the_workers(store):
    w, _ = make_windows(store.chrom_sizes, 64, chroms=["I"])
    w = w.subset(slice(0, 40))
    ds = MLMWindowDataset(store, w, seed=7, rc_aug=True)
    a0, b0 = _batches(ds, 0, 0), _batches(ds, 2, 0)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a0, b0))
    a1 = _batches(ds, 0, 1)
    assert not torch.equal(a0[0][0], a1[0][0])  # a new epoch draws a new order and new masks
    fresh = MLMWindowDataset(store, w, seed=7, rc_aug=True)
    assert torch.equal(fresh[(1, 5)][0], ds[(1, 5)][0])


def test_rc_augmentation_flips_about_half_the_windows(store):
    w, _ = make_windows(store.chrom_sizes, 64, chroms=["I"])
    w = w.subset(slice(0, 200))
    ds = MLMWindowDataset(store, w, seed=1, rc_aug=True, shuffle=False, mask_prob=0.0)
    comp = np.array([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11])
    n_rc = 0
    for i in range(len(ds)):
        x = ds[(0, i)][0].numpy()
        raw = np.where(ds.window_ids(i) == 11, 4, ds.window_ids(i))
        rc = comp[raw[::-1]]
        assert np.array_equal(x, raw) or np.array_equal(x, rc)
        n_rc += np.array_equal(x, rc) and not np.array_equal(x, raw)
    assert 70 < n_rc < 130
    assert decode_ids(ds.window_ids(0)[:10]) == store.fetch("I", 0, 10)
