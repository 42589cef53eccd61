"""Marginalization ordering rule (spec §7.4 #7), variant windows and scoring, pictures and report."""

import os

import numpy as np
import pytest
import torch

from strandwise import Cherimoya
from strandwise.interpret import (
    AlleleMismatchError,
    HTMLReport,
    Variant,
    build_variant_windows,
    insert_motif,
    marginalize,
    motif_consensus,
    parse_variants,
    score_variants,
    select_backgrounds,
    variant_type,
    write_tsv,
    write_variant_effects,
)
from strandwise.interpret.plots import plot_attribution_logo, plot_motif_match, plot_profiles
from strandwise.io import one_hot_encode


def _model(groups=(1,), seed=0):
    return Cherimoya(n_filters=8, n_layers=2, trimming=6, signal_groups=list(groups), random_state=seed).eval()


# --------------------------------------------------------------------------- marginalization
def test_backgrounds_are_shuffled_before_the_cap():
    idx = select_backgrounds(50, n_loci=10, shuffle=True, random_state=0)
    want = np.random.RandomState(0).permutation(50)[:10]
    np.testing.assert_array_equal(idx, want)
    # a cap-then-shuffle order could only ever pick from the first 10
    assert idx.max() >= 10
    np.testing.assert_array_equal(select_backgrounds(50, 10, shuffle=True, random_state=0), idx)
    np.testing.assert_array_equal(select_backgrounds(50, 10, shuffle=False), np.arange(10))
    assert len(select_backgrounds(5, 100)) == 5
    assert not np.array_equal(select_backgrounds(50, 10, random_state=1), idx)
    with pytest.raises(ValueError, match="negatives"):
        select_backgrounds(0)


def test_insert_motif_centres_the_consensus():
    X = torch.stack([one_hot_encode("A" * 20, dtype=torch.float32)] * 2)
    pwm = np.array([[0.1, 0.7, 0.1], [0.7, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.7]])
    assert motif_consensus(pwm) == "CAT"
    Xm = insert_motif(X, pwm)
    from strandwise.io import one_hot_decode

    assert one_hot_decode(Xm[0]) == "A" * 9 + "CAT" + "A" * 8  # start = 20//2 − 3//2 = 9
    assert one_hot_decode(insert_motif(X, "GNG")[1]) == "A" * 9 + "GAG" + "A" * 8
    assert torch.equal(X[0], one_hot_encode("A" * 20, dtype=torch.float32))  # input untouched
    with pytest.raises(ValueError):
        insert_motif(X, "X")


def test_marginalize_reports_deltas_sorted_and_writes_outputs(tmp_path):
    torch.manual_seed(0)
    m = _model((1, 2))
    X = torch.zeros(30, 4, 48)
    X.scatter_(1, torch.randint(0, 4, (30, 1, 48)), 1.0)
    motifs = {"m1": "GGGGGG", "m2": "TATATA", "m3": "CACGTG"}
    recs = marginalize(m, X, motifs, n_loci=12, random_state=3, output_dir=tmp_path, name="marg")
    assert [r["delta_log_counts"] for r in recs] == sorted((r["delta_log_counts"] for r in recs), reverse=True)
    # recompute one motif by hand on the documented background subset
    idx = torch.from_numpy(np.random.RandomState(3).permutation(30)[:12])
    r = next(r for r in recs if r["motif"] == "m2")
    with torch.no_grad():
        c0 = m(X[idx])[1]
        c1 = m(insert_motif(X[idx], "TATATA"))[1]
    assert r["n_loci"] == 12
    assert r["delta_log_counts"] == pytest.approx(float((c1 - c0)[:, 0].mean()), abs=1e-6)
    assert r["delta_log_counts_by_group"][1] == pytest.approx(float((c1 - c0)[:, 1].mean()), abs=1e-6)
    assert r["profile_before"].shape == (3, 36)
    lines = (tmp_path / "marg.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["motif", "consensus", "delta_log_counts"] and len(lines) == 4
    assert (tmp_path / "marg.html").exists() and all(os.path.exists(r["plot"]) for r in recs)
    with pytest.raises(ValueError, match="group"):
        marginalize(m, X, motifs, group=2)


# --------------------------------------------------------------------------------- variants
GENOME = {"chr1": "ACGTACGTTA" + "GGCCAATTGC" + "CAGTCAGTCA" + "TTGGCCAAGT" + "ACGATCGATG"}


def fetch(chrom, start, end):
    if chrom not in GENOME:
        raise KeyError(f"chromosome {chrom!r} not in the genome")
    return GENOME[chrom][start:end]


def test_snv_window_centred_on_the_variant():
    # pos 21 (1-based) -> index 20 'C'; L = 10 -> c = 5, window [15, 25)
    w = build_variant_windows(fetch, [("chr1", 21, "C", "T", "rs1")], 10)
    assert w.ref == [GENOME["chr1"][15:25]] and w.ref[0][5] == "C"
    assert w.alt == [GENOME["chr1"][15:20] + "T" + GENOME["chr1"][21:25]]
    assert w.kept == [Variant("chr1", 21, "C", "T", "rs1")] and w.skipped == []


def test_insertion_trims_and_deletion_extends_the_right_flank():
    g = GENOME["chr1"]
    ins = build_variant_windows(fetch, [("chr1", 21, "C", "CGGG")], 10)
    assert ins.ref[0] == g[15:25]
    assert ins.alt[0] == g[15:20] + "CGGG" + g[21:22] and len(ins.alt[0]) == 10
    dele = build_variant_windows(fetch, [("chr1", 21, "CAGT", "C")], 10)
    assert dele.ref[0] == g[15:25]
    assert dele.alt[0] == g[15:20] + "C" + g[24:28] and len(dele.alt[0]) == 10
    # an insertion longer than the right half is cut at the window end
    long = build_variant_windows(fetch, [("chr1", 21, "C", "C" + "A" * 12)], 10)
    assert long.alt[0] == g[15:20] + "CAAAA"
    assert variant_type(Variant("c", 1, "C", "CGG")) == "insertion"
    assert variant_type(Variant("c", 1, "CAG", "C")) == "deletion"
    assert variant_type(Variant("c", 1, "CA", "GT")) == "MNV"
    assert variant_type(Variant("c", 1, "CA", "G")) == "complex"


def test_allele_mismatch_and_unusable_variants_are_skipped_with_reasons():
    vs = [
        ("chr1", 21, "C", "T", "ok"),
        ("chr1", 21, "G", "T", "mismatch"),
        ("chr1", 21, "c", "t", "lowercase-ok"),
        ("chr1", 2, "C", "T", "too-close-to-start"),
        ("chr1", 48, "T", "A", "too-close-to-end"),
        ("chrX", 21, "C", "T", "no-chrom"),
        ("chr1", 21, "C", "<DEL>", "symbolic"),
        ("chr1", 21, "C", "T,G", "multi"),
    ]
    w = build_variant_windows(fetch, vs, 10)
    assert [v.id for v in w.kept] == ["ok", "lowercase-ok", "multi", "multi"]
    assert [v.alt for v in w.kept][-2:] == ["T", "G"]
    assert w.reasons == {"reference allele mismatch": 1, "window starts before the chromosome start": 1,
                         "window runs past the chromosome end": 1, "chromosome not found": 1,
                         "unsupported allele": 1}
    mism = next(s for s in w.skipped if s["variant"].id == "mismatch")
    assert "genome has 'C'" in mism["reason"]
    with pytest.raises(AlleleMismatchError, match="chr1:21 G>T"):
        build_variant_windows(fetch, vs[:2], 10, strict=True)
    with pytest.raises(ValueError, match="pos"):
        parse_variants([("chr1", 0, "A", "T")])
    with pytest.raises(ValueError, match="lacks field 'alt'"):
        parse_variants([{"chrom": "chr1", "pos": 3, "ref": "A"}])


def test_window_ending_at_the_chromosome_end_is_scored_with_a_strict_accessor():
    """An accessor that raises past the chromosome end (like ``Genome.fetch``) must not lose the
    variants whose window ends exactly there: only the bases the windows need are fetched."""
    size = len(GENOME["chr1"])

    def strict_fetch(chrom, start, end):
        if chrom not in GENOME:
            raise KeyError(chrom)
        if end > size:
            raise ValueError(f"window {chrom}:{start}-{end} is outside the chromosome (length {size})")
        return GENOME[chrom][start:end]

    L, c = 10, 5
    last = size - (L - c) + 1  # 1-based pos whose ref window is [size − L, size)
    g = GENOME["chr1"]
    vs = [("chr1", last, g[last - 1], "A" if g[last - 1] != "A" else "C", "snv-at-end"),
          ("chr1", last - 1, g[last - 2 : last], g[last - 2], "del-at-end"),  # alt pulls in the last base
          ("chr1", last + 1, g[last], "A" if g[last] != "A" else "C", "one-past")]
    w = build_variant_windows(strict_fetch, vs, L)
    assert [v.id for v in w.kept] == ["snv-at-end", "del-at-end"]
    assert w.ref[0] == g[size - L:] and len(w.alt[1]) == L and w.alt[1].endswith(g[-1])
    assert w.reasons == {"window cannot be fetched": 1}
    assert "outside the chromosome" in w.skipped[0]["reason"]
    # the same variants with a clipping accessor: the library's own end check names the reason
    assert build_variant_windows(fetch, vs, L).reasons == {"window runs past the chromosome end": 1}


def _random_genome(n=400, seed=0):
    rng = np.random.RandomState(seed)
    return "".join(rng.choice(list("ACGT"), size=n))


def test_score_variants_values_sorting_and_outputs(tmp_path):
    g = _random_genome()
    GENOME["chrR"] = g
    m = _model((2,))
    L = 40
    vs = [("chrR", p, g[p - 1], "ACGT"[("ACGT".index(g[p - 1]) + 1) % 4], f"v{p}") for p in (100, 150, 200, 250)]
    vs.append(("chrR", 300, g[299:302], g[299], "del"))
    vs.append(("chrR", 320, "A" if g[319] != "A" else "C", "G", "bad"))
    eff = score_variants(m, fetch, vs, input_length=L, variant_flank=3)
    assert eff.n_skipped == 1 and eff.skipped[0]["variant"].id == "bad"
    assert len(eff.records) == 5
    absd = [abs(r["delta_log_counts"]) for r in eff.records]
    assert absd == sorted(absd, reverse=True)
    # recompute one SNV by hand
    r = next(r for r in eff.records if r["id"] == "v150")
    ref = one_hot_encode(g[149 - 20 : 149 + 20], dtype=torch.float32)[None]
    alt = ref.clone()
    alt[0, :, 20] = 0
    alt[0, "ACGT".index(r["alt"]), 20] = 1
    with torch.no_grad():
        pr, cr = m(ref)
        pa, ca = m(alt)
    assert r["delta_log_counts"] == pytest.approx(float(ca[0, 0] - cr[0, 0]), abs=1e-6)
    p = torch.softmax(pr.reshape(-1).double(), 0)
    q = torch.softmax(pa.reshape(-1).double(), 0)
    mid = (p + q) / 2
    jsd = 0.5 * (p * (p / mid).log()).sum() + 0.5 * (q * (q / mid).log()).sum()
    assert r["profile_jsd"] == pytest.approx(float(jsd), abs=1e-9)
    from strandwise.evaluate import expected_counts

    v = 20 - m.trimming
    er = expected_counts(pr, cr, [2])[0, :, v - 3 : v + 4].sum()
    ea = expected_counts(pa, ca, [2])[0, :, v - 3 : v + 4].sum()
    assert r["delta_at_variant"] == pytest.approx(float(ea - er), abs=1e-5)
    assert next(r for r in eff.records if r["id"] == "del")["type"] == "deletion"
    by_jsd = score_variants(m, fetch, vs, input_length=L, sort_by="profile_jsd")
    js = [r["profile_jsd"] for r in by_jsd.records]
    assert js == sorted(js, reverse=True)

    out = write_variant_effects(eff, tmp_path, "v", model=m, fetch=fetch, input_length=L, top_k=2)
    lines = open(out["tsv"]).read().splitlines()
    assert lines[0].split("\t")[:5] == ["chrom", "pos", "id", "ref", "alt"] and len(lines) == 6
    assert lines[1].split("\t")[2] == eff.records[0]["id"]
    assert "bad" in open(out["skipped"]).read()
    assert len(out["plots"]) == 2 and all(os.path.getsize(p) > 1000 for p in out["plots"])
    html = open(out["html"]).read()
    assert "v_plots/000_" in html and "v.tsv" in html


# ------------------------------------------------------------------------- pictures, report
def test_pictures_and_html_report_write_linked_files(tmp_path):
    rng = np.random.RandomState(0)
    ohe = np.eye(4)[rng.randint(0, 4, 30)].T
    attr = rng.normal(size=(4, 30))
    logo = plot_attribution_logo(ohe, attr, 5, 25, title="locus", offset=1000,
                                 seqlets=[{"start": 10, "end": 16, "motif": "AP1"}], path=tmp_path / "fig" / "logo.png")
    prof = plot_profiles(rng.rand(2, 50), rng.poisson(2, (2, 50)), labels=["+", "-"], path=tmp_path / "fig" / "prof.png")
    match = plot_motif_match(attr[:, :8], np.full((4, 8), 0.25) + np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]].T * 0.0,
                             p_value=1e-5, path=tmp_path / "fig" / "match.png")
    for p in (logo, prof, match):
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = [{"motif": "AP1", "n_seqlets": 12, "logo": logo}, {"motif": "<b>x</b>", "n_seqlets": 1, "logo": ""}]
    write_tsv(rows, tmp_path / "t.tsv", ["motif", "n_seqlets"])
    rep = HTMLReport("What the model learned")
    rep.add_heading("Seqlets").add_text("Counts per motif.")
    rep.add_table(rows, ["motif", "n_seqlets", "logo"], tsv=tmp_path / "t.tsv", image_columns=["logo"])
    rep.add_image(prof, caption="profiles")
    path = rep.write(tmp_path / "report" / "index.html")
    html = open(path).read()
    assert "../fig/prof.png" in html and "../t.tsv" in html and "../fig/logo.png" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert (tmp_path / "t.tsv").read_text() == "motif\tn_seqlets\nAP1\t12\n<b>x</b>\t1\n"
    bad = HTMLReport("x").add_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):
        bad.write(tmp_path / "bad.html")
    assert not (tmp_path / "bad.html").exists()
