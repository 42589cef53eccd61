"""VCF / TSV variant readers: formats, 1-based positions, multi-allelic ALT, clear errors."""

import pytest

from strandwise.io.variants import read_variants

VCF = ("##fileformat=VCFv4.2\n##contig=<ID=chrIX,length=439888>\n"
       "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
       "chrIX\t150001\trs1\tA\tG\t.\t.\t.\n"
       "chrIX\t160000\t.\tACG\tA,AT\t.\t.\t.\n")


def test_plain_vcf(tmp_path):
    p = tmp_path / "v.vcf"
    p.write_text(VCF)
    assert read_variants(p) == [
        {"chrom": "chrIX", "pos": 150001, "ref": "A", "alt": "G", "id": "rs1"},
        {"chrom": "chrIX", "pos": 160000, "ref": "ACG", "alt": "A,AT", "id": "."},
    ]


def test_bgzipped_vcf_through_pysam(tmp_path):
    pysam = pytest.importorskip("pysam")
    p = tmp_path / "v.vcf"
    p.write_text(VCF)
    gz = str(tmp_path / "v.vcf.gz")
    pysam.tabix_compress(str(p), gz)
    assert read_variants(gz) == read_variants(p)


def test_tsv_with_and_without_header(tmp_path):
    a = tmp_path / "a.tsv"
    a.write_text("ID\tCHROM\tPOS\tREF\tALT\nv1\tchrI\t10\tC\tT\n")
    assert read_variants(a) == [{"chrom": "chrI", "pos": 10, "ref": "C", "alt": "T", "id": "v1"}]
    b = tmp_path / "b.tsv"
    b.write_text("chrom\tpos\tref\talt\nchrI\t10\tC\tT\n")
    assert read_variants(b)[0]["id"] == "."
    c = tmp_path / "c.tsv"
    c.write_text("chrI\t10\tC\tT\tmine\n")
    assert read_variants(c) == [{"chrom": "chrI", "pos": 10, "ref": "C", "alt": "T", "id": "mine"}]


def test_header_without_alt_is_refused(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("chrom\tpos\tref\n" "chrI\t10\tC\n")
    with pytest.raises(ValueError, match="header lacks column"):
        read_variants(p)


@pytest.mark.parametrize("body, msg", [
    ("chrI\tten\tC\tT\n", "position 'ten' is not an integer"),
    ("chrI\t0\tC\tT\n", "must be >= 1"),
    ("chrI\t5\tC\n", "expected at least 4"),
    ("chrI\t5\t\tT\n", "empty REF or ALT"),
])
def test_tsv_errors_name_the_line(tmp_path, body, msg):
    p = tmp_path / "bad.tsv"
    p.write_text("\n" + body)
    with pytest.raises(ValueError, match=msg) as exc:
        read_variants(p)
    assert "bad.tsv:2" in str(exc.value)


def test_vcf_errors(tmp_path):
    p = tmp_path / "short.vcf"
    p.write_text("#CHROM\tPOS\nchrI\t5\n")
    with pytest.raises(ValueError, match=r"short.vcf:2: .*at least 5"):
        read_variants(p)
    with pytest.raises(FileNotFoundError):
        read_variants(tmp_path / "missing.vcf")
    q = tmp_path / "v.bed"
    q.write_text("chrI\t1\t2\n")
    with pytest.raises(ValueError, match="use .vcf"):
        read_variants(q)
    e = tmp_path / "empty.vcf"
    e.write_text("##fileformat=VCFv4.2\n")
    with pytest.raises(ValueError, match="no variants"):
        read_variants(e)
    bad_gz = tmp_path / "bad.vcf.gz"
    bad_gz.write_bytes(b"not gzip at all")
    pytest.importorskip("pysam")
    with pytest.raises(ValueError, match="cannot read"):
        read_variants(bad_gz)
