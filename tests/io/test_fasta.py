import gzip
import os

import pytest

from strandwise.io.fasta import Genome, build_genome_fasta, read_chrom_sizes, suggest_chrom_mapping
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

HERE = os.path.dirname(__file__)
GENOME_DIR = shared("yeast_genome_R64-1-1")
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "yeast_atac")


def chrom_file(name):
    return os.path.join(GENOME_DIR, f"Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.{name}.fa.gz")


def raw_sequence(name):
    with gzip.open(chrom_file(name), "rt") as fh:
        return "".join(line.strip() for line in fh if not line.startswith(">")).upper()


def test_build_bgzip_with_rename_matches_source(tmp_path):
    out = build_genome_fasta([chrom_file("I"), chrom_file("Mito")], tmp_path / "g.fa.gz",
                             rename={"I": "chrI", "Mito": "chrM"})
    assert os.path.exists(out + ".fai") and os.path.exists(out + ".gzi")
    with Genome(out) as g:
        assert g.chrom_sizes == {"chrI": 230218, "chrM": 85779}
        seq = raw_sequence("I")
        assert g.fetch("chrI", 1000, 1100) == seq[1000:1100]
        assert g.fetch_chrom("chrI") == seq
        assert g.fetch("chrM", 85700, 85779) == raw_sequence("Mito")[85700:]


def test_plain_fasta_and_chrom_sizes(tmp_path):
    out = build_genome_fasta([chrom_file("Mito")], tmp_path / "m.fa", line_width=70)
    with Genome(out) as g:
        assert g.fetch("Mito", 10, 20) == raw_sequence("Mito")[10:20]
    assert read_chrom_sizes(out + ".fai") == {"Mito": 85779}
    assert read_chrom_sizes(out) == {"Mito": 85779}


def test_example_genome_is_complete():
    sizes = read_chrom_sizes(os.path.join(EXAMPLE, "sacCer3.fa.gz"))
    assert len(sizes) == 17 and sum(sizes.values()) == 12_157_105
    assert sizes["chrIV"] == 1_531_933 and sizes["chrM"] == 85_779


def test_plain_gzip_is_refused_with_advice():
    with pytest.raises(ValueError, match="plain gzip.*bgzip"):
        Genome(chrom_file("I"))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="genome FASTA not found: /no/such.fa"):
        Genome("/no/such.fa")


def test_unknown_chrom_suggests_mapping():
    with Genome(os.path.join(EXAMPLE, "sacCer3.fa.gz")) as g:
        with pytest.raises(ValueError, match=r"I from the request not found.*\{'I': 'chrI'\}"):
            g.fetch("I", 0, 10)
        with pytest.raises(ValueError, match="outside the chromosome"):
            g.fetch("chrI", 230000, 230300)


def test_suggest_chrom_mapping_conventions():
    assert suggest_chrom_mapping(["chr1", "chrX", "chrM"], ["1", "X", "MT"]) == {
        "chr1": "1", "chrX": "X", "chrM": "MT"}
    assert suggest_chrom_mapping(["chrI", "chrXVI", "chrM"], ["I", "XVI", "Mito"]) == {
        "chrI": "I", "chrXVI": "XVI", "chrM": "Mito"}
    assert suggest_chrom_mapping(["scaffold_7"], ["1"]) == {}


def test_build_rejects_bad_characters_and_unused_rename(tmp_path):
    seq = raw_sequence("Mito")[:120]
    bad = tmp_path / "bad.fa"
    bad.write_text(">m\n" + seq[:60] + "\n" + seq[60:90] + "*" + seq[91:] + "\n")
    with pytest.raises(ValueError, match=r"characters outside ACGTN/IUPAC: '\*'"):
        build_genome_fasta([bad], tmp_path / "o.fa.gz")
    good = tmp_path / "good.fa"
    good.write_text(">m\n" + seq + "\n")
    with pytest.raises(ValueError, match="rename keys not found.*chrZ"):
        build_genome_fasta([good], tmp_path / "o.fa.gz", rename={"chrZ": "Z"})
    assert not os.path.exists(tmp_path / "o.fa.gz")  # atomic: nothing half-written
