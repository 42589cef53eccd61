import os

import numpy as np
import pytest

from strandwise.io.bigwig import BigWig, SignalTracks, normalize_signal_groups, write_bigwig

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
BW = os.path.join(EXAMPLE, "yeast_atac.insertions.bw")


def test_grammar():
    assert normalize_signal_groups(None) == ([], [])
    assert normalize_signal_groups("a.bw") == (["a.bw"], [1])
    # a flat pair is two unstranded groups, not a stranded pair
    assert normalize_signal_groups(["a.bw", "b.bw"]) == (["a.bw", "b.bw"], [1, 1])
    assert normalize_signal_groups(["atac.bw", ["c.+.bw", "c.-.bw"]]) == (
        ["atac.bw", "c.+.bw", "c.-.bw"], [1, 2])
    assert normalize_signal_groups([["p.+.bw", "p.-.bw"], "x.bw", ["q.+.bw", "q.-.bw"]])[1] == [2, 1, 2]
    with pytest.raises(ValueError, match="signal group 1 is empty"):
        normalize_signal_groups(["a.bw", []])
    with pytest.raises(TypeError, match="signal entry 0 must be a path"):
        normalize_signal_groups([3])
    with pytest.raises(TypeError, match="cannot be nested"):
        normalize_signal_groups([["a.bw", ["b.bw"]]])
    with pytest.raises(ValueError, match="empty list"):
        normalize_signal_groups([])


def test_round_trip_real_values(tmp_path):
    with BigWig(BW) as bw:
        v = bw.values("chrI", 0, 230218)
    assert v.dtype == np.float32 and v.sum() > 1000
    v2 = v.copy()
    v2[100:110] = 2.5  # a run of equal non-integer values
    out = write_bigwig(tmp_path / "x.bw", {"chrI": 230218, "chrII": 813184}, {"chrI": v2})
    with BigWig(out) as bw:
        assert bw.chrom_sizes == {"chrI": 230218, "chrII": 813184}
        np.testing.assert_array_equal(bw.chrom_values("chrI"), v2)
        # a chromosome with no entries reads as zeros, not NaN
        np.testing.assert_array_equal(bw.values("chrII", 5000, 5100), np.zeros(100, np.float32))


def test_window_without_signal_is_zero():
    # chrXII rDNA is masked in the example track: a window there has no data at all
    with BigWig(BW) as bw:
        v = bw.values("chrXII", 455000, 457114)
    assert v.shape == (2114,) and not np.isnan(v).any() and v.sum() == 0


def test_chrom_mismatch_and_missing():
    with BigWig(BW) as bw:
        with pytest.raises(ValueError, match=r"\{'IV': 'chrIV'\}"):
            bw.values("IV", 0, 10)
    with pytest.raises(FileNotFoundError, match="bigWig not found"):
        BigWig("/no/such.bw")


def test_signal_tracks_memory_and_file():
    arr = {"chrI": np.arange(230218, dtype=np.float32)}
    st = SignalTracks([BW, arr])
    out = st.read("chrI", 50, 60)
    assert out.shape == (2, 10)
    np.testing.assert_array_equal(out[1], np.arange(50, 60))
    with pytest.raises(ValueError, match="not found in in-memory track"):
        st.check_chroms(["chrII"], "peaks")
