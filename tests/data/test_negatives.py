import os

import numpy as np
import pytest

from strandwise.cli.main import main
from strandwise.data.negatives import gc_bin, gc_matched_negatives
from strandwise.io.fasta import Genome
from strandwise.io.intervals import ExclusionList, read_bed, read_peaks

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
FASTA = os.path.join(EXAMPLE, "sacCer3.fa.gz")
PEAKS = os.path.join(EXAMPLE, "yeast_atac.macs3_peaks.narrowPeak")
EXCL = os.path.join(EXAMPLE, "exclusion.bed")


def test_gc_bins():
    assert gc_bin([0.0, 0.009, 0.01, 0.5, 1.0]).tolist() == [0, 0, 1, 25, 50]


def test_same_seed_same_negatives_and_committed_file():
    a, _ = gc_matched_negatives(PEAKS, FASTA, exclusion=EXCL, summits=True, random_state=0)
    b, _ = gc_matched_negatives(PEAKS, FASTA, exclusion=EXCL, summits=True, random_state=0)
    c, _ = gc_matched_negatives(PEAKS, FASTA, exclusion=EXCL, summits=True, random_state=1)
    assert a.chrom.tolist() == b.chrom.tolist() and (a.start == b.start).all()
    assert not ((a.start == c.start).all() and a.chrom.tolist() == c.chrom.tolist())
    committed = read_bed(os.path.join(EXAMPLE, "yeast_atac.negatives.bed"))
    assert committed.chrom.tolist() == a.chrom.tolist() and (committed.start == a.start).all()


def test_tiles_are_valid_and_gc_matched():
    peaks = read_peaks(PEAKS)
    sub = peaks.subset(np.isin(peaks.chrom.astype(str), ["chrII", "chrVII", "chrXIII"]))
    # Yeast is AT-rich: tiles with GC > 0.43 are rare, so keep peaks up to that bin to have
    # enough candidates in every bin (the fill-from-neighbours rule is tested below).
    with Genome(FASTA) as g:
        mids = sub.centers(True)
        ok = [1057 <= m <= g.chrom_sizes[c] - 1057 and
              gc_bin(sum(ch in "GC" for ch in g.fetch(c, m - 1057, m + 1057)) / 2114) <= 21
              for c, m in zip(sub.chrom, mids)]
    sub = sub.subset(np.flatnonzero(ok)[::2])
    neg, st = gc_matched_negatives(sub, FASTA, exclusion=EXCL, summits=True, random_state=0)
    np.testing.assert_array_equal(st["negative_hist"], st["peak_hist"])  # bin for bin
    assert len(neg) == st["n_peaks_used"]
    assert ((neg.end - neg.start) == 2114).all() and (neg.start % 2114 == 0).all()
    # sorted, no peak overlap, nothing in the exclusion list
    key = [(c, s) for c, s in zip(neg.chrom, neg.start)]
    assert key == sorted(key, key=lambda t: (list(Genome(FASTA).chrom_sizes).index(t[0]), t[1]))
    assert not ExclusionList(sub, bin_size=1).overlaps(neg.chrom, neg.start, neg.end).any()
    # measured GC of each negative is in the bins the peaks occupy
    with Genome(FASTA) as g:
        gc = [sum(ch in "GC" for ch in g.fetch(c, s, e)) / 2114
              for c, s, e in zip(neg.chrom, neg.start, neg.end)]
    assert np.array_equal(np.bincount(gc_bin(gc), minlength=51), st["peak_hist"])


def test_deficits_filled_from_neighbour_bins():
    _, st = gc_matched_negatives(PEAKS, FASTA, exclusion=EXCL, summits=True)
    # all usable peaks get a negative; high-GC bins that ran short borrow from the nearest bins
    assert st["negative_hist"].sum() == st["peak_hist"].sum() == st["n_peaks_used"]
    short = np.flatnonzero(st["negative_hist"] < st["peak_hist"])
    assert len(short) and short.min() > np.argmax(st["peak_hist"])


def test_signal_filter_keeps_quiet_tiles():
    bw = os.path.join(EXAMPLE, "yeast_atac.insertions.bw")
    neg, st = gc_matched_negatives(PEAKS, FASTA, signals=bw, exclusion=EXCL, summits=True)
    from strandwise.io.bigwig import BigWig

    with BigWig(bw) as b:
        sums = [b.values(c, s + 557, s + 1557).sum() for c, s in zip(neg.chrom, neg.start)]
    assert st["signal_threshold"] > 0 and max(sums) < st["signal_threshold"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="random_state must be an int"):
        gc_matched_negatives(PEAKS, FASTA, random_state=None)
    with pytest.raises(FileNotFoundError, match="peak file not found"):
        gc_matched_negatives("/no/peaks.bed", FASTA)


def test_cli_matches_api_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "neg.bed"
    rc = main(["negatives", "-i", PEAKS, "-f", FASTA, "-o", str(out), "-e", EXCL, "--summits",
               "-s", "0", "-q"])
    assert rc == 0
    with open(out) as fh, open(os.path.join(EXAMPLE, "yeast_atac.negatives.bed")) as ref:
        assert fh.read() == ref.read()
    rc = main(["negatives", "-i", str(tmp_path / "none.bed"), "-f", FASTA, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"strandwise negatives: error: peak file not found: {tmp_path}/none.bed"]
