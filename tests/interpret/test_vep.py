"""VEP embeddings (spec §7) on the real yeast chromosome I with variants written from it."""

import dataclasses
import os

import numpy as np
import pytest
import torch

from strandwise.interpret.vep import (
    AlleleMismatchError,
    chromosome_code,
    evaluate_vep_svm,
    read_variant_file,
    variant_index,
    vep_embeddings,
    vep_window_indices,
)
from strandwise.io.records import SequenceStore
from strandwise.models.caduceus import DNAEmbeddingModelCaduceus
from strandwise.train.caduceus_module import CaduceusModelConfig
from shared_data import needs_shared_data, shared

pytestmark = needs_shared_data

CHR_I = os.path.join(shared("yeast_genome_R64-1-1"),
                     "Saccharomyces_cerevisiae.R64-1-1.dna.chromosome.I.fa.gz")
SIZE_I = 230_218


@pytest.fixture(scope="module")
def store():
    return SequenceStore(CHR_I)


def _backbone(variant, d=8):
    torch.manual_seed(0)
    cfg = CaduceusModelConfig(variant=variant, d_model=d, n_layer=1, d_state=4).caduceus_config()
    return DNAEmbeddingModelCaduceus(cfg, conjoin_train=True, aligned=True).eval()


def _vcf(path, store, rows):
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for i, (pos, alt, info) in enumerate(rows):
        ref = store.fetch("I", pos - 1, pos)
        alt = alt if alt != "auto" else {"A": "G", "C": "T", "G": "A", "T": "C", "N": "A"}[ref]
        lines.append(f"I\t{pos}\tv{i}\t{ref}\t{alt}\t.\tPASS\t{info}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_variant_index_rule_and_window():
    L = 11
    ref = torch.full((3, L), 7)
    alt = ref.clone()
    alt[0, 5] = 8  # differs at the centre
    alt[1, 7] = 8
    alt[1, 9] = 8  # differs only off-centre: the last differing position
    idx = variant_index(ref, alt)
    assert idx.tolist() == [5, 9, -1]
    pos = vep_window_indices(torch.tensor([65536, 0, 131071]), 131072, 1536)
    assert pos.shape == (3, 1537)
    assert pos[0, 0] == 65536 - 768 and pos[0, -1] == 65536 + 768
    assert pos[1].min() == 0 and (pos[1] == 0).sum() == 769  # clamped at the start
    assert pos[2].max() == 131071 and (pos[2] == 131071).sum() == 769
    assert [chromosome_code(c) for c in ("chr9", "10", "X", "chrY", "MT", "I")] == [9, 10, -1, -2, -3, -4]


@pytest.mark.parametrize("variant", ["ps", "ph"])
def test_outputs_per_split_and_their_definition(tmp_path, store, variant):
    rows = [(1000 + 50 * i, "auto", f"label={i % 2};split={'train' if i < 6 else 'test'};tissue=t{i % 3};"
             f"distance_to_nearest_tss={1000 * i}") for i in range(9)]
    recs = read_variant_file(_vcf(tmp_path / "v.vcf", store, rows))
    bb = _backbone(variant)
    L, W = 64, 16
    res = vep_embeddings(bb, store.fetch_clipped, recs, L, W, batch_size=4)
    assert set(res.splits) == {"train", "test"} and not res.skipped
    tr, te = res.splits["train"], res.splits["test"]
    assert tr["concat_avg_ws"].shape == (6, 16) and te["rc_concat_avg_ws"].shape == (3, 16)
    assert tr["labels"].tolist() == [0, 1, 0, 1, 0, 1] and (tr["variant_index"] == L // 2).all()
    assert te["distance_to_nearest_tss"].tolist() == [6000, 7000, 8000]
    assert tr["tissue_embed"].tolist() == [0, 1, 2, 0, 1, 2]  # encoder fitted on the test tissues
    # definition: mean over positions idx-8 .. idx+8 of each strand of ref and alt, concatenated
    r = recs[0]
    c = L // 2
    ref_seq = store.fetch("I", r.pos - 1 - c, r.pos - 1 - c + L)
    alt_seq = ref_seq[:c] + r.alt + ref_seq[c + 1:]
    from strandwise.interpret.embeddings import encode_padded

    with torch.no_grad():
        h_ref, _ = bb(encode_padded([ref_seq], L))
        h_alt, _ = bb(encode_padded([alt_seq], L))
    sl = slice(c - W // 2, c + W // 2 + 1)
    want_f = torch.cat([h_ref[0, sl, :, 0].mean(0), h_alt[0, sl, :, 0].mean(0)])
    want_r = torch.cat([h_ref[0, sl, :, 1].mean(0), h_alt[0, sl, :, 1].mean(0)])
    assert np.allclose(tr["concat_avg_ws"][0], want_f.numpy(), atol=1e-5)
    assert np.allclose(tr["rc_concat_avg_ws"][0], want_r.numpy(), atol=1e-5)


def test_reference_mismatch_is_an_error_or_a_counted_skip(tmp_path, store):
    p = tmp_path / "bad.vcf"
    ref = store.fetch("I", 1999, 2000)
    wrong = "A" if ref != "A" else "C"
    p.write_text("#CHROM\tPOS\tID\tREF\tALT\nI\t1000\ta\t%s\tG\nI\t2000\tb\t%s\tT\n" % (store.fetch("I", 999, 1000), wrong))
    recs = read_variant_file(p)
    with pytest.raises(AlleleMismatchError, match=r"line 3: I:2000 .*reference allele mismatch"):
        vep_embeddings(_backbone("ps"), store.fetch_clipped, recs, 32, 8)
    res = vep_embeddings(_backbone("ps"), store.fetch_clipped, recs, 32, 8, on_ref_mismatch="skip")
    assert len(res.kept["all"]) == 1 and res.skip_counts == {"reference allele mismatch": 1}


def test_variants_too_close_to_a_chromosome_end_are_counted(tmp_path, store):
    rows = [(5, "auto", "."), (SIZE_I - 3, "auto", "."), (5000, "auto", ".")]
    recs = read_variant_file(_vcf(tmp_path / "ends.vcf", store, rows))
    res = vep_embeddings(_backbone("ph"), store.fetch_clipped, recs, 64, 16)
    assert len(res.kept["all"]) == 1 and res.kept["all"][0].pos == 5000
    assert res.skip_counts == {"window starts before the chromosome start": 1, "window runs past the chromosome end": 1}


def test_malformed_lines_and_unknown_chromosomes(tmp_path, store):
    cases = {
        "few.vcf": ("#CHROM\tPOS\tID\tREF\tALT\nI\t100\tx\tA\n", r"few.vcf:2: malformed VCF line"),
        "pos.vcf": ("#CHROM\tPOS\tID\tREF\tALT\nI\t100\tx\tA\tG\nI\tabc\ty\tA\tG\n", r"pos.vcf:3: position must be an integer"),
        "zero.vcf": ("#CHROM\tPOS\tID\tREF\tALT\nI\t0\tx\tA\tG\n", r"zero.vcf:2: position must be >= 1"),
        "allele.vcf": ("#CHROM\tPOS\tID\tREF\tALT\nI\t10\tx\tA\t<DEL>\n", r"allele.vcf:2: ALT allele '<DEL>'"),
        "tsv.tsv": ("chrom\tpos\tref\talt\nI\t10\tA\n", r"tsv.tsv:2: malformed line: expected 4"),
        "hdr.tsv": ("chr\tposition\tref\talt\nI\t10\tA\tG\n", r"header must name chrom, pos, ref, alt"),
        "empty.vcf": ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n", r"no variants"),
    }
    for name, (text, msg) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=msg):
            read_variant_file(tmp_path / name)
    (tmp_path / "chr.tsv").write_text("chrom\tpos\tref\talt\nchrI\t1000\tA\tG\n")
    with pytest.raises(KeyError, match="chrI"):
        vep_embeddings(_backbone("ps"), store.fetch_clipped, read_variant_file(tmp_path / "chr.tsv"), 32, 8)


def test_svm_protocol_on_separable_features():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 2, n)
        f = rng.normal(size=(n, 8)).astype(np.float32) + 2.0 * y[:, None]
        return {"concat_avg_ws": f, "rc_concat_avg_ws": f + 0.01, "labels": y, "tissue_embed": np.zeros(n, np.int64),
                "distance_to_nearest_tss": rng.choice([1000.0, 50_000.0, 200_000.0], n).astype(np.float32)}

    tr, te = split(600), split(300)
    te["concat_avg_ws"][0] = np.nan  # NaN rows are dropped, as upstream
    out = evaluate_vep_svm(tr, te, "ps", C=(1.0,), seeds=(1, 2), n_train=200)
    assert set(out["summary"]) == {"0-30k", "30k-100k", "100k+"} and len(out["rows"]) == 6
    for r in out["rows"]:
        assert r["auroc_hard"] > 0.9 and r["auroc_score"] >= r["auroc_hard"] - 0.02
    lr = evaluate_vep_svm(tr, te, "ph", C=(1.0,), seeds=(1,), n_train=200, classifier="logistic")
    assert all(r["auroc_score"] > 0.95 for r in lr["rows"])


def test_multi_allelic_records_give_one_named_row_per_allele(tmp_path, store):
    ref = store.fetch("I", 2999, 3000)
    a1, a2 = [b for b in "ACGT" if b != ref][:2]
    p = tmp_path / "multi.vcf"
    p.write_text(f"#CHROM\tPOS\tID\tREF\tALT\nI\t3000\tm\t{ref}\t{a1},{a2}\n")
    recs = read_variant_file(p)
    assert len(recs) == 1 and recs[0].alt == f"{a1},{a2}"
    bb = _backbone("ps")
    res = vep_embeddings(bb, store.fetch_clipped, recs, 32, 8)
    assert [(r.id, r.alt) for r in res.kept["all"]] == [("m", a1), ("m", a2)]
    # each row equals the embedding of that allele on its own
    one = [vep_embeddings(bb, store.fetch_clipped, [dataclasses.replace(recs[0], alt=a)], 32, 8) for a in (a1, a2)]
    got = res.splits["all"]["concat_avg_ws"]
    for k in range(2):
        np.testing.assert_allclose(got[k], one[k].splits["all"]["concat_avg_ws"][0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[0], got[1])
    # an empty allele in an ALT list is a malformed line, not a silent deletion
    (tmp_path / "empty.vcf").write_text(f"#CHROM\tPOS\tID\tREF\tALT\nI\t3000\tm\t{ref}\t{a1},\n")
    with pytest.raises(ValueError, match=r"empty.vcf:2: ALT allele"):
        read_variant_file(tmp_path / "empty.vcf")
