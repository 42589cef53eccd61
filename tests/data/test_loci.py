import os

import numpy as np
import pytest
import torch

from strandwise.data.config import ProfileDataConfig
from strandwise.data.loci import (
    count_filter_mask,
    extract_loci,
    load_profile_dataset,
    load_training_loci,
    locus_windows,
    outlier_filter_mask,
)
from strandwise.io.bigwig import BigWig
from strandwise.io.fasta import Genome, build_genome_fasta
from strandwise.io.intervals import ExclusionList, Intervals
from strandwise.io.reads import reads_to_bigwig
from strandwise.io.sequence import one_hot_decode, one_hot_encode, reverse_complement_one_hot

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
FASTA = os.path.join(EXAMPLE, "sacCer3.fa.gz")
BW = os.path.join(EXAMPLE, "yeast_atac.insertions.bw")


def example_cfg(**kw):
    import json

    with open(os.path.join(EXAMPLE, "config.json")) as fh:
        d = json.load(fh)["data"]
    d.update(kw)
    return ProfileDataConfig.from_dict(d).resolve_paths(EXAMPLE)


def test_window_maths_odd_and_even():
    assert [a.tolist() for a in locus_windows([100], 10, 0)] == [[95], [105]]
    assert [a.tolist() for a in locus_windows([100], 11, 0)] == [[95], [106]]
    assert [a.tolist() for a in locus_windows([100], 11, 3)] == [[92], [109]]


@pytest.mark.parametrize("inw,outw,mj", [(2114, 1000, 0), (11, 5, 2), (10, 3, 1)])
def test_extraction_matches_genome_and_bigwig(inw, outw, mj):
    loci = Intervals(["chrIV", "chrI"], [100_000, 50_000], [100_301, 50_200], [17, -1])
    L = extract_loci(FASTA, loci, [BW], in_window=inw, out_window=outw, max_jitter=mj, summits=True)
    assert L.X.dtype == torch.int8 and L.y.dtype == torch.float32
    assert L.X.shape == (2, 4, inw + 2 * mj) and L.y.shape == (2, 1, outw + 2 * mj)
    mids = [100_017, 50_100]  # summit-centred where the summit is known, else the midpoint
    assert L.center.tolist() == mids
    with Genome(FASTA) as g, BigWig(BW) as bw:
        for k, (c, m) in enumerate(zip(["chrIV", "chrI"], mids)):
            s0, s1 = m - inw // 2 - mj, m + inw // 2 + mj + inw % 2
            assert one_hot_decode(L.X[k]) == g.fetch(c, s0, s1)
            y0, y1 = m - outw // 2 - mj, m + outw // 2 + mj + outw % 2
            np.testing.assert_array_equal(L.y[k, 0].numpy(), bw.values(c, y0, y1))
            # the output window is centred in the input window: same offset both sides (+/-1 for parity)
            assert (y0 - s0) - (s1 - y1) in (-1, 0, 1)


def test_chromosome_end_drop_warns_and_counts():
    loci = Intervals(["chrI", "chrI", "chrI"], [500, 100_000, 229_900], [600, 100_100, 230_000])
    with pytest.warns(UserWarning, match="2 of 3 loci dropped: their window .* chromosome end"):
        L = extract_loci(FASTA, loci, [BW], max_jitter=0)
    assert len(L) == 1 and L.dropped["chrom_end"] == 2 and L.center.tolist() == [100_050]


def test_exclusion_drop():
    loci = Intervals(["chrXII", "chrXII"], [460_000, 600_000], [460_100, 600_100])
    ex = ExclusionList(Intervals(["chrXII"], [450_000], [470_000]))
    L = extract_loci(FASTA, loci, [BW], exclusion=ex)
    assert len(L) == 1 and L.dropped["exclusion"] == 1 and L.chrom.tolist() == ["chrXII"]


@pytest.fixture(scope="module")
def n_genome(tmp_path_factory):
    """Real chrI with a run of N and one IUPAC code, and a copy with a bad character."""
    d = tmp_path_factory.mktemp("g")
    with Genome(FASTA) as g:
        seq = g.fetch_chrom("chrI")
    seq_n = seq[:10_000] + "N" * 5 + "R" + seq[10_006:]
    (d / "n.fa").write_text(">chrI\n" + seq_n + "\n")
    (d / "bad.fa").write_text(">chrI\n" + seq[:10_000] + "?" + seq[10_001:] + "\n")
    build_genome_fasta([d / "n.fa"], d / "n.fa.gz")
    return d, seq_n


def test_n_is_zero_column_and_bad_char_errors(n_genome):
    d, seq = n_genome
    loci = Intervals(["chrI"], [9_900], [10_100])
    L = extract_loci(d / "n.fa.gz", loci, [BW], in_window=2114, out_window=1000)
    s0 = 10_000 - 1057
    col = L.X[0].sum(0)
    assert col[10_000 - s0:10_006 - s0].tolist() == [0] * 6 and col.sum() == 2114 - 6
    assert torch.equal(L.X[0], one_hot_encode(seq[s0:s0 + 2114]))
    with pytest.raises(ValueError, match=r"invalid character '\?' in the genome at chrI:8943-11057"):
        extract_loci(d / "bad.fa", loci, [BW])


def test_stranded_group_and_rc_consistency(tmp_path):
    frag = os.path.join(EXAMPLE, "yeast_500k_SRR1822137.bedpe.gz")
    s = reads_to_bigwig(frag, tmp_path / "atac.bw", FASTA, shift="atac", stranded=True)
    loci = Intervals(["chrIV"], [200_000], [200_100])
    L = extract_loci(FASTA, loci, [BW, s.paths], in_window=100, out_window=50)
    assert L.signal_groups == [1, 2] and L.y.shape == (1, 3, 50)
    # the strands add up to the unstranded track
    np.testing.assert_array_equal(L.y[0, 1] + L.y[0, 2], L.y[0, 0])
    # RC of the extracted one-hot = one-hot of the RC'd FASTA string
    from strandwise.io.sequence import string_reverse_complement

    with Genome(FASTA) as g:
        rc_seq = string_reverse_complement(g.fetch("chrIV", 200_050 - 50, 200_050 + 50))
    assert torch.equal(reverse_complement_one_hot(L.X[0]), one_hot_encode(rc_seq))


def test_chrom_name_mismatch_between_loci_and_tracks(tmp_path):
    loci = Intervals(["IV"], [200_000], [200_100])
    with pytest.raises(ValueError, match=r"from the loci not found in genome FASTA.*\{'IV': 'chrIV'\}"):
        extract_loci(FASTA, loci, [BW])
    # splits named differently from the loci
    with pytest.raises(ValueError, match=r"no loci on chromosomes IV.*e.g. \{'IV': 'chrIV'\}"):
        extract_loci(FASTA, Intervals(["chrIV"], [200_000], [200_100]), [BW], chroms=["IV"])


def test_outlier_filter_per_group_or():
    # totals: group 0 (1 channel) and group 1 (2 channels)
    rng = np.random.RandomState(0)
    y = rng.poisson(5, size=(200, 3, 20)).astype(np.float32)
    y[7, 0] *= 10  # outlier in group 0 only
    y[9, 1:] *= 10  # outlier in group 1 only
    keep = outlier_filter_mask(y, [1, 2])
    assert not keep[7] and not keep[9]
    t0 = y[:, 0].sum(1)
    t1 = y[:, 1:].sum((1, 2))
    want = (t0 <= 1.2 * np.quantile(t0, 0.99)) & (t1 <= 1.2 * np.quantile(t1, 0.99))
    np.testing.assert_array_equal(keep, want)
    # single group = the total-based rule
    tot = y.sum((1, 2))
    np.testing.assert_array_equal(outlier_filter_mask(y, [3]), tot <= 1.2 * np.quantile(tot, 0.99))


def test_count_filters_on_group_totals():
    y = np.zeros((3, 2, 4), np.float32)
    y[0] = 1  # group totals 4, 4
    y[1, 0] = 5  # 20, 0
    y[2] = 10  # 40, 40
    ok_min, ok_max = count_filter_mask(y, [1, 1], min_counts=1, max_counts=30)
    assert ok_min.tolist() == [True, False, True] and ok_max.tolist() == [True, True, False]
    ok_min, _ = count_filter_mask(y, [2], min_counts=10)
    assert ok_min.tolist() == [False, True, True]


def test_load_profile_dataset_test_split():
    cfg = example_cfg()
    with pytest.warns(UserWarning, match="chromosome end"):
        L = load_profile_dataset(cfg, "test")
    assert set(L.chrom.tolist()) == {"chrIV"} and L.max_jitter == 0
    assert L.X.shape[1:] == (4, 2114) and L.y.shape[1:] == (1, 1000)
    n_p = L.n_peaks
    assert 150 < n_p < len(L) and (L.labels[:n_p] == 1).all() and (L.labels[n_p:] == 0).all()
    # peaks carry more signal than GC-matched negatives
    tot = L.y.sum((1, 2))
    assert tot[:n_p].median() > 3 * tot[n_p:].median()
    assert L.nbytes == len(L) * (4 * 2114 + 4 * 1000 + 1)


def test_training_loci_are_wide_filtered_and_not_duplicated():
    cfg = example_cfg()
    with pytest.warns(UserWarning):
        peaks, neg = load_training_loci(cfg)
    assert peaks.X.shape[1:] == (4, 3114) and peaks.y.shape[1:] == (1, 2000)
    assert neg.X.shape[1:] == (4, 2114) and neg.max_jitter == 0
    train = set(cfg.training_chroms)
    assert set(peaks.chrom.tolist()) <= train and set(neg.chrom.tolist()) <= train
    assert peaks.dropped["outlier"] > 0
    with pytest.warns(UserWarning):
        unfiltered, _ = load_training_loci(example_cfg(outlier_threshold=None, negatives=None,
                                                       negative_ratio=0))
    tot = unfiltered.y.sum((1, 2)).numpy().astype(np.float64)
    keep = tot <= 1.2 * np.quantile(tot, 0.99)
    assert peaks.dropped["outlier"] == (~keep).sum()
    np.testing.assert_array_equal(peaks.center, unfiltered.center[keep])
    assert torch.equal(peaks.X, unfiltered.X[torch.from_numpy(keep)])
    # storage: int8 one-hot, float32 signal, nothing else held
    assert peaks.nbytes == len(peaks) * (4 * 3114 + 4 * 2000 + 1)


def test_missing_input_file():
    cfg = example_cfg(signals=["/no/such.bw"])
    with pytest.raises(FileNotFoundError, match="bigWig not found: /no/such.bw"):
        load_profile_dataset(cfg, "valid")
