import gzip
import os

import numpy as np
import pytest

from strandwise.io.bigwig import BigWig
from strandwise.io.fasta import read_chrom_sizes
from strandwise.io.intervals import ExclusionList, read_bed
from strandwise.io.reads import (
    call_peaks_pileup,
    count_insertions,
    fragment_coverage,
    mask_tracks,
    reads_to_bigwig,
    stranded_paths,
)
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

HERE = os.path.dirname(__file__)
BEDPE = os.path.join(shared("yeast_atac_SRR1822137"),
                     "yeast_500k_SRR1822137.bedpe.gz")
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "yeast_atac")
SIZES = read_chrom_sizes(os.path.join(EXAMPLE, "sacCer3.fa.gz.fai"))


@pytest.fixture(scope="module")
def chrI_fragments(tmp_path_factory):
    """The real fragments on chrI (first 5,771 rows of the file), as a small fragments file."""
    rows = []
    with gzip.open(BEDPE, "rt") as fh:
        for line in fh:
            if not line.startswith("chrI\t"):
                break
            rows.append(line.split()[:3])
    path = tmp_path_factory.mktemp("frag") / "chrI.tsv"
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    arr = np.array([[int(r[1]), int(r[2])] for r in rows])
    return path, arr


def test_insertions_by_hand(chrI_fragments):
    path, frag = chrI_fragments
    assert len(frag) == 5771
    (tr,), s = count_insertions(path, {"chrI": SIZES["chrI"]})
    want = np.bincount(np.concatenate([frag[:, 0], frag[:, 1] - 1]), minlength=SIZES["chrI"])
    np.testing.assert_array_equal(tr["chrI"], want)
    assert s.n_records == 5771 and s.n_events == 2 * 5771 and s.n_out_of_bounds == 0
    # ATAC shift (+4 / −4) and strands
    (plus, minus), _ = count_insertions(path, {"chrI": SIZES["chrI"]}, shift="atac", stranded=True)
    np.testing.assert_array_equal(plus["chrI"], np.bincount(frag[:, 0] + 4, minlength=SIZES["chrI"]))
    np.testing.assert_array_equal(minus["chrI"], np.bincount(frag[:, 1] - 5, minlength=SIZES["chrI"]))


def test_shift_out_of_bounds_counted(chrI_fragments):
    path, frag = chrI_fragments
    with pytest.warns(UserWarning, match="fell outside their chromosome"):
        (_,), s = count_insertions(path, {"chrI": SIZES["chrI"]}, shift=(-100, 0))
    assert s.n_out_of_bounds == int((frag[:, 0] - 100 < 0).sum()) > 0


def test_rename_and_mismatch(chrI_fragments):
    path, frag = chrI_fragments
    ens = {"I": SIZES["chrI"]}
    with pytest.raises(ValueError, match=r"chrI from reads file .* not found.*\{'chrI': 'I'\}"):
        count_insertions(path, ens)
    (tr,), _ = count_insertions(path, ens, rename={"chrI": "I"})
    assert tr["I"].sum() == 2 * len(frag)


def test_bam_matches_fragments(chrI_fragments, tmp_path):
    import pysam

    path, frag = chrI_fragments
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "chrI", "LN": SIZES["chrI"]}]}
    bam = str(tmp_path / "r.bam")
    with pysam.AlignmentFile(bam, "wb", header=header) as out:
        for k, (s, e) in enumerate(frag):
            ln = min(36, e - s)
            for first in (True, False):
                a = pysam.AlignedSegment()
                a.query_name = f"f{k}"
                a.reference_id = 0
                a.reference_start = int(s if first else e - ln)
                a.cigarstring = f"{ln}M"
                a.query_sequence = "A" * ln
                a.mapping_quality = 30
                a.flag = (1 | 2 | (64 if first else 128) | (32 if first else 16))
                a.next_reference_id = 0
                a.next_reference_start = int(e - ln if first else s)
                a.template_length = int(e - s) if first else -int(e - s)
                out.write(a)
    sizes = {"chrI": SIZES["chrI"]}
    for kw in ({}, {"shift": "atac", "stranded": True}):
        a, _ = count_insertions(bam, sizes, **kw)
        b, _ = count_insertions(path, sizes, **kw)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x["chrI"], y["chrI"])
    cov_bam, _ = fragment_coverage(bam, sizes)
    cov_frag, _ = fragment_coverage(path, sizes)
    np.testing.assert_array_equal(cov_bam["chrI"], cov_frag["chrI"])
    assert cov_frag["chrI"].sum() == (frag[:, 1] - frag[:, 0]).sum()


def test_coverage_by_hand(chrI_fragments):
    path, frag = chrI_fragments
    cov, _ = fragment_coverage(path, {"chrI": SIZES["chrI"]})
    pos = 150_000
    assert cov["chrI"][pos] == int(((frag[:, 0] <= pos) & (frag[:, 1] > pos)).sum())


def test_mask_tracks():
    tr = {"chrM": np.ones(100, np.float32), "chrXII": np.ones(1000, np.float32)}
    removed = mask_tracks(tr, [("chrXII", 100, 200)], chroms=["chrM"])
    assert removed == 200 and tr["chrM"].sum() == 0 and tr["chrXII"].sum() == 900
    assert tr["chrXII"][99] == 1 and tr["chrXII"][100] == 0 and tr["chrXII"][200] == 1


def test_example_bigwig_is_reproducible(tmp_path):
    """The committed example track is exactly what reads_to_bigwig builds from the fragments."""
    out = tmp_path / "ins.bw"
    s = reads_to_bigwig(os.path.join(EXAMPLE, "yeast_500k_SRR1822137.bedpe.gz"), out,
                        os.path.join(EXAMPLE, "sacCer3.fa.gz"), shift="atac",
                        mask=os.path.join(EXAMPLE, "exclusion.bed"))
    assert s.n_records == 467_908 and s.n_events == 935_816
    with BigWig(out) as a, BigWig(os.path.join(EXAMPLE, "yeast_atac.insertions.bw")) as b:
        assert a.chrom_sizes == b.chrom_sizes
        for c in ("chrI", "chrIV", "chrXII", "chrM"):
            np.testing.assert_array_equal(a.chrom_values(c), b.chrom_values(c))
        assert a.chrom_values("chrM").sum() == 0
        assert a.values("chrXII", 450_000, 470_000).sum() == 0
        total = sum(a.chrom_values(c).sum() for c in a.chrom_sizes)
    assert total + s.n_masked == 935_816


def test_stranded_paths_and_mode_errors(chrI_fragments, tmp_path):
    assert stranded_paths("x/atac.bw") == ("x/atac.+.bw", "x/atac.-.bw")
    path, _ = chrI_fragments
    s = reads_to_bigwig(path, tmp_path / "a.bw", {"chrI": SIZES["chrI"]}, stranded=True)
    assert [os.path.basename(p) for p in s.paths] == ["a.+.bw", "a.-.bw"]
    with pytest.raises(ValueError, match="coverage tracks are unstranded"):
        reads_to_bigwig(path, tmp_path / "c.bw", {"chrI": SIZES["chrI"]}, mode="coverage",
                        stranded=True)
    with pytest.raises(FileNotFoundError, match="reads file not found"):
        reads_to_bigwig(tmp_path / "none.bedpe", tmp_path / "c.bw", {"chrI": 10})


def test_fallback_caller_finds_macs3_peaks():
    """The built-in caller recovers most MACS3 peaks on the real yeast data."""
    with BigWig(os.path.join(EXAMPLE, "yeast_atac.insertions.bw")) as bw:
        tracks = {c: bw.chrom_values(c) for c in bw.chrom_sizes}
    peaks, stats = call_peaks_pileup(tracks, exclude_chroms=["chrM"], qvalue=0.01)
    macs = read_bed(os.path.join(EXAMPLE, "yeast_atac.macs3_peaks.narrowPeak"))
    recovered = ExclusionList(peaks, bin_size=1).overlaps(macs.chrom, macs.start, macs.end).mean()
    assert recovered > 0.9  # 0.97 when written
    assert 1000 < len(peaks) < 4000
    # summits lie inside their peaks and are pileup maxima with significant q-values
    assert ((peaks.summit >= 0) & (peaks.summit < peaks.end - peaks.start)).all()
    assert (stats["mlog10q"] >= 2).all() and (stats["fold"] > 1).all()


def test_call_peaks_pileup_writes_narrowpeak(chrI_fragments, tmp_path):
    from strandwise.io.reads import call_peaks

    path, _ = chrI_fragments
    out, used = call_peaks(path, tmp_path / "p.narrowPeak", {"chrI": SIZES["chrI"]}, method="pileup")
    assert used == "pileup"
    p = read_bed(out, keep_extra=True)
    assert len(p) > 5 and (p.summit >= 0).all() and len(p.extra[0]) == 7
    assert all(float(row[5]) >= -np.log10(0.05) for row in p.extra)  # column 9: −log10 q
    with pytest.raises(ValueError, match="method must be auto, macs3 or pileup"):
        call_peaks(path, tmp_path / "q.narrowPeak", {"chrI": SIZES["chrI"]}, method="homer")
