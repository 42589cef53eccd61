"""JASPAR from pyjaspar's bundled SQLite, tomtom matches with BH q-values, trimming, orientation."""

import numpy as np
import pytest

from strandwise.interpret.motifs_db import benjamini_hochberg, orient_like, trim_motif


def test_benjamini_hochberg_matches_the_formula():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    q = benjamini_hochberg(p)
    # sorted finite p: .01 .03 .04 .2 (m = 4) → p·m/rank = .04 .06 .0533 .2 → running min from the top
    np.testing.assert_allclose(q[:4], [0.04, 0.05333333, 0.05333333, 0.2])
    assert np.isnan(q[4])
    np.testing.assert_allclose(benjamini_hochberg([[0.5, 0.5], [1.0, 0.1]]), [[0.5, 0.5], [1.0, 0.2]])


def test_trim_motif_and_orientation():
    cwm = np.zeros((4, 10))
    cwm[0, 3], cwm[2, 5], cwm[1, 7] = 1.0, -0.8, 0.2
    assert trim_motif(cwm, 0.3) == (3, 6)
    assert trim_motif(cwm, 0.1) == (3, 8)
    assert trim_motif(cwm, 0.3, flank=5) == (0, 10)
    with pytest.raises(ValueError):
        trim_motif(np.zeros((3, 4)))
    gata = np.eye(4)[:, [0, 2, 0, 3, 0, 0]]  # AGATAA
    rc = gata[::-1, ::-1]  # TTATCT
    m, flipped = orient_like(gata, rc)
    assert flipped and np.array_equal(m, gata)
    m, flipped = orient_like(gata, gata)
    assert not flipped


def test_jaspar_fungi_has_the_general_regulatory_factors(tmp_path):
    pytest.importorskip("pyjaspar")
    from strandwise.interpret.motifs_db import jaspar_meme, jaspar_motifs, jaspar_releases
    from strandwise.interpret.seqlets import read_meme

    assert "JASPAR2024" in jaspar_releases()
    db = jaspar_motifs(tax_group="fungi", release="JASPAR2024")
    assert len(db) == 178
    names = {k.split()[1].upper(): k for k in db}
    for tf in ("REB1", "ABF1", "RAP1", "CBF1", "MCM1", "TBF1"):
        assert tf in names
    for pfm in db.values():
        np.testing.assert_allclose(pfm.sum(axis=0), 1.0, atol=1e-9)
    # Reb1 binds TTACCCG (CGGGTAA on the other strand): its JASPAR matrix must say so
    reb1 = db[names["REB1"]]
    cons = "".join("ACGT"[i] for i in reb1.argmax(axis=0))
    assert "TTACCCG" in cons or "CGGGTAA" in cons
    path = jaspar_meme(tmp_path / "fungi.meme")
    back = read_meme(path)
    assert list(back) == list(db)
    np.testing.assert_allclose(back[names["ABF1"]], db[names["ABF1"]], atol=1e-6)
    with pytest.raises(ValueError, match="unknown JASPAR release"):
        jaspar_motifs(release="JASPAR1999")


def test_tomtom_matches_finds_each_factor_in_the_database():
    pytest.importorskip("pyjaspar")
    pytest.importorskip("memelite")
    from strandwise.interpret.motifs_db import jaspar_motifs, tomtom_matches

    db = jaspar_motifs()
    names = {k.split()[1].upper(): k for k in db}
    rng = np.random.default_rng(0)
    queries = {}
    for tf in ("REB1", "ABF1", "RAP1"):
        m = db[names[tf]] + rng.uniform(0, 0.2, db[names[tf]].shape)  # noisy copy
        queries[tf] = (m / m.sum(0))[::-1, ::-1]                       # on the other strand
    res = tomtom_matches(queries, db, top_k=2)
    for rec in res:
        assert rec["match0"] == names[rec["query"]]
        assert rec["q0"] < 1e-3 and rec["p0"] <= rec["p1"] and rec["q0"] <= rec["q1"]


def test_motif_aligned_cwm_puts_both_strands_on_the_motif():
    from strandwise.interpret.seqlets import motif_aligned_cwm
    from strandwise.io.sequence import one_hot_encode

    rng = np.random.default_rng(1)
    W = 60
    motif = "TTACCCG"
    rc = "CGGGTAA"
    seqs, seqlets = [], []
    for k, (site, pos) in enumerate([(motif, 10), (rc, 30), (motif, 44)]):
        s = list("".join(rng.choice(list("ACGT"), W)))
        s[pos : pos + 7] = site
        seqs.append("".join(s))
        seqlets.append({"example_idx": k, "start": pos - 2, "end": pos + 9})
    ohe = np.stack([one_hot_encode(s).numpy() for s in seqs]).astype(np.float32)
    attr = np.zeros_like(ohe)
    for k, r in enumerate(seqlets):  # contribution 1 on the site's bases only
        p = r["start"] + 2
        attr[k, :, p : p + 7] = 1.0
    pfm = one_hot_encode(motif).numpy().astype(np.float64) * 0.9 + 0.025
    cwm, ppm = motif_aligned_cwm(seqlets, ohe, attr, pfm, flank=2)
    assert cwm.shape == ppm.shape == (4, 11)
    expect = np.zeros((4, 11))
    expect[:, 2:9] = one_hot_encode(motif).numpy()
    np.testing.assert_allclose(cwm, expect, atol=1e-6)  # minus-strand site flipped onto the motif
    np.testing.assert_allclose(ppm[:, 2:9], one_hot_encode(motif).numpy(), atol=1e-6)
