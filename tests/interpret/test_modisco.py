"""TF-MoDISco (``run_modisco``) must find a motif planted in attributions, and keep what it
promises (the HDF5 and modisco-lite's report).

Sequences are windows of real yeast DNA (``tests/data``). Into each one an instance of JASPAR's
REB1 matrix is sampled and written, on a random strand and at a random place. A GATA site
(GAT1's matrix) is written into each one as well. The hypothetical attributions are small noise
everywhere, plus the planted matrix itself (a model's idea of each base there) times +1 at REB1
sites and −0.8 at GATA sites, so the contributions (``attr × one-hot``) carry both motifs, with
opposite signs. modisco-lite runs with its defaults (as the ``motifs`` command does) except 8
Leiden seeds instead of 50, about 10 s on 2 cores; the assertions also hold with 2 and 50 seeds
and with other random seeds for the data (checked for 0–2).
"""

import gzip
import os

import numpy as np
import pytest

pytest.importorskip("modiscolite")
pytest.importorskip("memelite")
pytest.importorskip("pyjaspar")

from strandwise.interpret import run_modisco  # noqa: E402
from strandwise.interpret.motifs_db import jaspar_motifs, tomtom_matches, trim_motif  # noqa: E402
from strandwise.interpret.seqlets import write_meme  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "yeast_R64-1-1_chrI_40001-120000.fa.gz")
N, W = 240, 200
COMP = str.maketrans("ACGT", "TGCA")


def _rc(s):
    return s.translate(COMP)[::-1]


def _consensus(m):
    return "".join("ACGT"[k] for k in np.asarray(m).argmax(axis=0))


def _background(rng):
    with gzip.open(DATA, "rt") as fh:
        chrom = "".join(line.strip() for line in fh if not line.startswith(">")).upper()
    idx = np.empty((N, W), dtype=np.int64)
    for i, s in enumerate(rng.randint(0, len(chrom) - W, N)):
        idx[i] = ["ACGT".index(c) if c in "ACGT" else rng.randint(4) for c in chrom[s : s + W]]
    return idx


def _plant(idx, attr, pfm, score, lo, hi, rng):
    """Write one instance sampled from ``pfm`` (random strand) in ``[lo, hi)`` of every row and
    add ``score × pfm`` (on that strand) to the hypothetical attributions there, as a model that
    learned the matrix would score each base; returns ``(starts, strands)`` (True: reverse
    complement)."""
    w = pfm.shape[1]
    starts, strands = [], []
    for i in range(len(idx)):
        rc = bool(rng.rand() < 0.5)
        m = pfm[::-1, ::-1] if rc else pfm
        site = np.array([rng.choice(4, p=m[:, j] / m[:, j].sum()) for j in range(w)])
        p = rng.randint(lo, hi - w)
        idx[i, p : p + w] = site
        attr[i, :, p : p + w] += score * m
        starts.append(p)
        strands.append(rc)
    return np.array(starts), np.array(strands)


@pytest.fixture(scope="module")
def modisco(tmp_path_factory):
    out = tmp_path_factory.mktemp("modisco")
    jaspar = jaspar_motifs(tax_group="fungi")
    reb1 = next(v for k, v in jaspar.items() if k.endswith(" REB1"))
    gat1 = next(v for k, v in jaspar.items() if k.endswith(" GAT1"))
    rng = np.random.RandomState(0)
    idx = _background(rng)
    attr = rng.normal(0.0, 0.05, size=(N, 4, W)).astype(np.float32)
    sites = {"REB1": _plant(idx, attr, reb1, 1.0, 15, 95, rng),  # REB1 in the left half, GATA in
             "GAT1": _plant(idx, attr, gat1, -0.8, 105, 185, rng)}  # the right: they never overlap
    ohe = np.zeros((N, 4, W), dtype=np.float32)
    np.put_along_axis(ohe, idx[:, None], 1.0, axis=1)
    meme = str(out / "fungi.meme")
    write_meme(jaspar, meme)
    res = run_modisco(ohe, attr, str(out), name="planted", motifs_meme=meme, n_leiden_runs=8)
    return {"res": res, "out": out, "jaspar": jaspar, "reb1": reb1, "gat1": gat1, "sites": sites}


def _by_group(patterns, group):
    return [p for p in patterns if p["pattern"].startswith(group + ".")]


def _core(pattern):
    a, b = trim_motif(pattern["cwm"], 0.3)
    return a, b, _consensus(pattern["ppm"][:, a:b])


def _seqlets(h5, pattern):
    import h5py

    group, name = pattern.split(".")
    with h5py.File(h5, "r") as fh:
        s = fh[group][name]["seqlets"]
        return s["example_idx"][:], s["start"][:], s["end"][:], s["is_revcomp"][:].astype(bool)


def _on_sites(h5, pattern, sites, w):
    """Fraction of the pattern's seqlets overlapping their sequence's planted site, and the
    fraction whose strand relates to the planted one in the pattern's majority way (the pattern
    reads the motif one way round)."""
    ex, start, end, rc = _seqlets(h5, pattern)
    site_start, site_rc = sites[0][ex], sites[1][ex]
    overlap = (start < site_start + w) & (site_start < end)
    flips = rc ^ site_rc
    return overlap.mean(), max(flips.mean(), 1 - flips.mean())


def test_planted_reb1_is_found_as_positive_patterns(modisco):
    res, reb1, jaspar = modisco["res"], modisco["reb1"], modisco["jaspar"]
    pos = _by_group(res["patterns"], "pos_patterns")
    assert pos, [p["pattern"] for p in res["patterns"]]
    assert pos[0]["pattern"] == "pos_patterns.pattern_0"
    assert [p["n_seqlets"] for p in pos] == sorted((p["n_seqlets"] for p in pos), reverse=True)
    want = _consensus(reb1)[1:-1]  # TTACCCG: the bases REB1's matrix is sure of
    cores = {}
    for p in pos:
        # a positive CWM whose informative core reads REB1's core on one strand
        assert p["cwm"].shape == p["ppm"].shape and p["cwm"].shape[0] == 4
        assert np.allclose(p["ppm"].sum(axis=0), 1.0, atol=1e-3)
        a, b, core = _core(p)
        assert want in core or want in _rc(core), (p["pattern"], core, want)
        assert p["cwm"][:, a:b].sum() > 0
        cores[p["pattern"]] = p
        # its seqlets sit on the planted REB1 sites, all aligned alike
        frac, aligned = _on_sites(res["h5"], p["pattern"], modisco["sites"]["REB1"], reb1.shape[1])
        assert frac == 1.0 and aligned >= 0.95, (p["pattern"], frac, aligned)
    # modisco may split REB1 by its weak outer columns or by strand, but between them the patterns
    # hold most of the planted sites
    assert sum(p["n_seqlets"] for p in pos) >= 0.6 * N, [p["n_seqlets"] for p in pos]
    # tomtom against all 178 JASPAR fungi matrices names REB1 first, for the top pattern's
    # trimmed PPM and CWM
    a, b, _ = _core(pos[0])
    m = tomtom_matches({"ppm": pos[0]["ppm"][:, a:b], "cwm": pos[0]["cwm"][:, a:b]}, jaspar,
                       top_k=1, n_jobs=1)
    for rec in m:
        assert rec["match0"].endswith(" REB1"), m
        assert rec["q0"] < 0.01, m


def test_planted_negative_gata_is_found_as_negative_patterns(modisco):
    res, gat1 = modisco["res"], modisco["gat1"]
    neg = _by_group(res["patterns"], "neg_patterns")
    assert neg, [p["pattern"] for p in res["patterns"]]
    for p in neg:
        a, b, core = _core(p)
        assert "GATAA" in core or "GATAA" in _rc(core), (p["pattern"], core)
        assert p["cwm"][:, a:b].sum() < 0
        frac, aligned = _on_sites(res["h5"], p["pattern"], modisco["sites"]["GAT1"], gat1.shape[1])
        # the weaker, shorter site: modisco puts some of them in the other way round
        assert frac == 1.0 and aligned >= 0.75, (p["pattern"], frac, aligned)
    assert sum(p["n_seqlets"] for p in neg) >= 0.4 * N, [p["n_seqlets"] for p in neg]


def test_modisco_keeps_its_hdf5_and_report(modisco):
    import h5py

    res, out = modisco["res"], modisco["out"]
    assert res["h5"] == str(out / "planted_modisco_results.h5")
    assert os.path.getsize(res["h5"]) > 0
    with h5py.File(res["h5"], "r") as fh:
        names = [f"{g}.{p}" for g in ("pos_patterns", "neg_patterns") if g in fh for p in fh[g]]
        assert sorted(names) == sorted(p["pattern"] for p in res["patterns"])
        for p in res["patterns"]:
            group, name = p["pattern"].split(".")
            pat = fh[group][name]
            assert int(pat["seqlets"]["n_seqlets"][0]) == p["n_seqlets"] == len(pat["seqlets"]["start"])
            np.testing.assert_allclose(pat["contrib_scores"][:].T, p["cwm"])
            np.testing.assert_allclose(pat["sequence"][:].T, p["ppm"])
    # modisco-lite's report: motifs.html with a row and both logos per pattern, and its tomtom
    # matches against the database given (REB1 and its logo)
    rep = res["report_dir"]
    assert rep == str(out / "planted_modisco")
    html = open(os.path.join(rep, "motifs.html")).read()
    for p in res["patterns"]:
        assert p["pattern"] in html
        for strand in ("fwd", "rev"):
            png = os.path.join(rep, "trimmed_logos", f"{p['pattern']}.cwm.{strand}.png")
            assert os.path.getsize(png) > 0, png
    assert "REB1" in html
    logos = [f for f in os.listdir(rep) if f.endswith(".png") and "REB1" in f]
    assert logos and all(os.path.getsize(os.path.join(rep, f)) > 0 for f in logos), os.listdir(rep)


def test_all_zero_or_non_finite_attributions_are_clear_errors(tmp_path):
    ohe = np.zeros((3, 4, 50), dtype=np.float32)
    ohe[:, 0] = 1
    with pytest.raises(ValueError, match="every contribution .* is zero"):
        run_modisco(ohe, np.zeros_like(ohe), tmp_path)
    bad = np.random.default_rng(0).normal(size=ohe.shape).astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        run_modisco(ohe, bad, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written
