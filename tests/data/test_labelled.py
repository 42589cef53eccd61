"""Labelled sequence readers on the real GUE and Genomic Benchmarks files, and their errors."""

import gzip
import os

import numpy as np
import pytest

from strandwise.data.labelled import (
    LabelledDataset,
    kfold_indices,
    read_fasta_labelled,
    read_gb_coordinates,
    read_gb_folder,
    read_gb_intervals,
    read_labelled_table,
    train_valid_split,
)
from shared_data import SHARED_DATA, needs_shared_data

pytestmark = needs_shared_data

DATA = SHARED_DATA
GUE = os.path.join(DATA, "gue_subset")
NONTATA = os.path.join(DATA, "gb_human_nontata_promoters_test", "test.tsv")
STARK = os.path.join(DATA, "gb_drosophila_enhancers_stark_test", "test.csv")


def test_gue_csv_and_gb_tables():
    d = read_labelled_table(os.path.join(GUE, "prom", "prom_core_tata", "test.csv"))
    assert len(d) == 613 and d.class_names == ["0", "1"] and set(d.labels.tolist()) == {0, 1}
    assert all(len(s) == 70 for s in d.sequences)
    nt = read_labelled_table(NONTATA)
    assert len(nt) == 9034 and int(nt.labels.sum()) == 4915
    st = read_labelled_table(STARK)
    assert st.class_names == ["negative", "positive"] and int(st.labels.sum()) == 865 and len(st) == 1730


def test_table_errors_name_file_and_line(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("sequence,label\nACGT,1\nACGA,1\n")
    with pytest.raises(ValueError, match="only one class"):
        read_labelled_table(p)
    e = tmp_path / "empty.csv"
    e.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_labelled_table(e)
    h = tmp_path / "header_only.csv"
    h.write_text("sequence,label\n")
    with pytest.raises(ValueError, match="no labelled sequences"):
        read_labelled_table(h)
    m = tmp_path / "bad.csv"
    m.write_text("sequence,label\nACGT,1\nACGT,0,extra\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: expected 2 fields"):
        read_labelled_table(m)
    b = tmp_path / "nohdr.csv"
    b.write_text("ACGT,1\nACGA,0\n")
    with pytest.raises(ValueError, match="header"):
        read_labelled_table(b)


def _gb_folder(root, split, table, n=5, classes=None):
    for name, k in (classes or {"negative": 0, "positive": 1}).items():
        os.makedirs(root / split / name, exist_ok=True)
        seqs = [s for s, y in zip(table.sequences, table.labels) if y == k][:n]
        for i, s in enumerate(seqs):
            (root / split / name / f"{i}.txt").write_text(s)


def test_gb_folder_layout_from_real_sequences(tmp_path):
    nt = read_labelled_table(NONTATA)
    _gb_folder(tmp_path, "train", nt)
    d = read_gb_folder(tmp_path, "train")
    assert d.class_names == ["negative", "positive"] and d.labels.tolist() == [0] * 5 + [1] * 5
    assert d.sequences[5] == [s for s, y in zip(nt.sequences, nt.labels) if y == 1][0]
    os.makedirs(tmp_path / "one" / "train" / "positive")
    (tmp_path / "one" / "train" / "positive" / "0.txt").write_text("ACGT")
    with pytest.raises(ValueError, match=r"1 class folder\(s\) \['positive'\]"):
        read_gb_folder(tmp_path / "one", "train")
    os.makedirs(tmp_path / "two" / "train" / "a")
    os.makedirs(tmp_path / "two" / "train" / "b")
    (tmp_path / "two" / "train" / "a" / "0.txt").write_text("ACGT")
    with pytest.raises(ValueError, match="class folder is empty"):
        read_gb_folder(tmp_path / "two", "train")


def test_fasta_plus_labels(tmp_path):
    (tmp_path / "s.fa").write_text(">x\nACGT\n>y\nTTTT\n>z\nGGGA\n")
    (tmp_path / "l.tsv").write_text("id\tlabel\nx\tpos\ny\tneg\nz\tpos\n")
    d = read_fasta_labelled(tmp_path / "s.fa", tmp_path / "l.tsv")
    assert d.ids == ["x", "y", "z"] and d.labels.tolist() == [1, 0, 1] and d.class_names == ["neg", "pos"]
    (tmp_path / "bad.tsv").write_text("x\tpos\ny\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected two fields"):
        read_fasta_labelled(tmp_path / "s.fa", tmp_path / "bad.tsv")
    (tmp_path / "miss.tsv").write_text("x\tpos\ny\tneg\n")
    with pytest.raises(ValueError, match="record 'z' has no label"):
        read_fasta_labelled(tmp_path / "s.fa", tmp_path / "miss.tsv")


def test_official_gb_coordinate_files():
    rows = read_gb_intervals(os.path.join(DATA, "gb_coordinates", "human_nontata_promoters"), "test")
    assert {k: len(v) for k, v in rows.items()} == {"negative": 4119, "positive": 4915}
    assert all(e - s == 251 for v in rows.values() for _, _, s, e, _ in v)
    reg = read_gb_intervals(os.path.join(DATA, "gb_coordinates", "human_ensembl_regulatory"), "train")
    assert sorted(reg) == ["enhancer", "ocr", "promoter"] and len(reg["ocr"]) == 69902


def test_coordinates_cut_from_a_genome_with_strand(tmp_path):
    from strandwise.io.records import SequenceStore
    from strandwise.io.sequence import string_reverse_complement

    chrI = os.path.join(DATA, "yeast_genome_R64-1-1", "Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.I.fa.gz")
    store = SequenceStore(chrI)
    os.makedirs(tmp_path / "test")
    for cls, rows in {"neg": [("a", 100, 150, "+")], "pos": [("b", 1000, 1040, "-"), ("c", 5, 9, "+")]}.items():
        with gzip.open(tmp_path / "test" / f"{cls}.csv.gz", "wt") as fh:
            fh.write("id,region,start,end,strand\n")
            for rid, s, e, strand in rows:
                fh.write(f"{rid},I,{s},{e},{strand}\n")
    d = read_gb_coordinates(tmp_path, "test", store)
    assert d.ids == ["a", "b", "c"] and d.labels.tolist() == [0, 1, 1]
    assert d.sequences[0] == store.fetch("I", 100, 150)
    assert d.sequences[1] == string_reverse_complement(store.fetch("I", 1000, 1040))
    with gzip.open(tmp_path / "test" / "pos.csv.gz", "wt") as fh:
        fh.write("id,region,start,end,strand\nb,I,10,x,+\n")
    with pytest.raises(ValueError, match=r"pos.csv.gz:2: start/end must be integers"):
        read_gb_intervals(tmp_path, "test")


def test_stratified_kfold_tests_each_example_once_on_the_gb_test_split():
    st = read_labelled_table(STARK)
    folds = kfold_indices(st.labels, 5, seed=1)
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(st)))
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert abs(st.labels[te].mean() - 0.5) < 0.01  # 865 / 865 balanced
    assert [te.tolist() for _, te in kfold_indices(st.labels, 5, 1)] == [te.tolist() for _, te in folds]
    tr, va = train_valid_split(1000, 0.1, seed=2)
    assert len(va) == 100 and not set(tr) & set(va) and len(tr) + len(va) == 1000


def test_dataset_left_pads_right_truncates_and_rc_augments():
    from strandwise.data.labelled import LabelledSequences

    d = LabelledSequences(["ACG", "ACGTACGTAA"], np.array([0, 1]), ["0", "1"], ["a", "b"])
    ds = LabelledDataset(d, 6)
    assert ds[0][0].tolist() == [4, 4, 4, 7, 8, 9]
    assert ds[1][0].tolist() == [7, 8, 9, 10, 7, 8]  # first max_length bp kept
    assert ds.encode("ACGTACGTAA", rc=True).tolist() == [10, 10, 7, 8, 9, 10]  # RC of the full string, cut
    aug = LabelledDataset(d, 6, rc_aug=True, seed=0)
    seen = {tuple(aug[(e, 0)][0].tolist()) for e in range(20)}
    assert seen == {(4, 4, 4, 7, 8, 9), (4, 4, 4, 8, 9, 10)}
