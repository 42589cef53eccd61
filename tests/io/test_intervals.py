import os

import numpy as np
import pytest

from strandwise.io.intervals import (
    ExclusionList,
    Intervals,
    read_bed,
    read_exclusion_lists,
    read_peaks,
    write_bed,
)

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
PEAKS = os.path.join(EXAMPLE, "yeast_atac.macs3_peaks.narrowPeak")


def test_narrowpeak_summits():
    p = read_bed(PEAKS)
    assert len(p) > 1000
    # first MACS3 peak: chrI 28 698 ... summit offset 210
    assert (p.chrom[0], p.start[0], p.end[0], p.summit[0]) == ("chrI", 28, 698, 210)
    assert p.centers(summits=True)[0] == 28 + 210
    assert p.centers(summits=False)[0] == 28 + (698 - 28) // 2


def test_interleaving(tmp_path):
    a, b = tmp_path / "a.bed", tmp_path / "b.bed"
    a.write_text("chrI\t0\t10\nchrI\t20\t30\nchrI\t40\t50\n")
    b.write_text("track name=x\nchrII\t5\t6\n")
    p = read_peaks([a, b])
    assert list(zip(p.chrom, p.start)) == [("chrI", 0), ("chrII", 5), ("chrI", 20), ("chrI", 40)]
    assert (p.summit == -1).all()


def test_empty_and_bad_files(tmp_path):
    e = tmp_path / "empty.bed"
    e.write_text("")
    with pytest.raises(ValueError, match="empty peak file"):
        read_peaks(e)
    bad = tmp_path / "bad.bed"
    bad.write_text("chrI\t10\t5\n")
    with pytest.raises(ValueError, match=r"bad.bed:1: invalid interval chrI:10-5"):
        read_bed(bad)
    bad.write_text("chrI\tx\t5\n")
    with pytest.raises(ValueError, match="must be integers"):
        read_bed(bad)
    with pytest.raises(FileNotFoundError, match="peak file not found"):
        read_peaks(tmp_path / "nope.bed")


def test_exclusion_bins(tmp_path):
    ex = ExclusionList(Intervals(["chrXII"], [450_050], [450_060]), bin_size=100)
    # same 100-bp bin → excluded; next bin → kept; other chromosome → kept
    got = ex.overlaps(np.array(["chrXII", "chrXII", "chrXII", "chrI"], dtype=object),
                      [449_000, 450_099, 450_100, 450_000], [450_001, 450_200, 450_300, 450_100])
    assert got.tolist() == [True, True, False, False]
    real = read_exclusion_lists([os.path.join(EXAMPLE, "exclusion.bed")])
    assert real.overlaps("chrM", [100], [200]).tolist() == [True]
    assert real.overlaps("chrXII", [470_000], [472_114]).tolist() == [False]
    assert len(read_exclusion_lists(None)) == 0


def test_write_bed_round_trip(tmp_path):
    p = read_bed(PEAKS).subset(np.arange(5))
    write_bed(tmp_path / "o.bed", p)
    q = read_bed(tmp_path / "o.bed")
    assert q.chrom.tolist() == p.chrom.tolist() and (q.start == p.start).all() and (q.end == p.end).all()
