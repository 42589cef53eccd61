"""attribute / seqlets / motifs / marginalize / variants through the command line, on the bundled
real yeast ATAC example with a tiny (untrained, seeded) Cherimoya: the commands' plumbing —
which loci, which coordinates, which backgrounds, which windows — is checked against values
recomputed here from the genome and the library."""

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("tangermeme")
pytest.importorskip("memelite")

from strandwise.cli.interpret_common import kept_rows  # noqa: E402
from strandwise.cli.main import main  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
CHROM_SIZES = {"chrVI": 270161, "chrIX": 439888}


def _write_config(tmp_path, loci_path):
    cfg = json.load(open(os.path.join(EXAMPLE, "config.json")))
    data = cfg["data"]
    for key in ("sequences", "negatives"):
        data[key] = os.path.abspath(os.path.join(EXAMPLE, data[key]))
    data["loci"] = str(loci_path)
    data["signals"] = [os.path.abspath(os.path.join(EXAMPLE, s)) for s in data["signals"]]
    data["exclusion_lists"] = [os.path.abspath(os.path.join(EXAMPLE, s)) for s in data["exclusion_lists"]]
    data.update(training_chroms=["chrI", "chrII", "chrIII", "chrV"], validation_chroms=["chrVI"],
                test_chroms=["chrIX"], in_window=514, out_window=300, max_jitter=16)
    cfg["model"] = {"n_filters": 8, "n_layers": 3}
    cfg["output_dir"] = str(tmp_path / "run")
    cfg["name"] = "tiny"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Config whose loci file starts with real peaks of chrVI/chrIX, plus one locus at the start of
    chrVI (window runs off the chromosome: dropped) and one on a training chromosome (not in the
    split); a seeded tiny model saved where the config expects it."""
    from strandwise.cli.profile_config import build_model, load_fit_config
    from strandwise.io.intervals import read_peaks

    tmp = tmp_path_factory.mktemp("interp")
    peaks = read_peaks(os.path.join(EXAMPLE, "yeast_atac.macs3_peaks.narrowPeak"))
    held = [i for i in range(len(peaks)) if peaks.chrom[i] in ("chrVI", "chrIX")
            and 400 < peaks.start[i] and peaks.end[i] < CHROM_SIZES[peaks.chrom[i]] - 400][:7]
    lines = []
    for k, i in enumerate(held):
        if k == 2:
            lines.append("chrVI\t10\t110\tedge\t0\t.\t1\t1\t1\t50\n")  # centre 60: off the chromosome
        if k == 4:
            lines.append("chrI\t50000\t50200\ttrain\t0\t.\t1\t1\t1\t100\n")  # not in the split
        lines.append(f"{peaks.chrom[i]}\t{peaks.start[i]}\t{peaks.end[i]}\tp{k}\t0\t.\t1\t1\t1\t{peaks.summit[i]}\n")
    loci = tmp / "loci.narrowPeak"
    loci.write_text("".join(lines))
    cfg_path = _write_config(tmp, loci)
    cfg = load_fit_config(str(cfg_path))
    os.makedirs(cfg.out_dir, exist_ok=True)
    model = build_model(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # larger weights so outputs respond to sequence
        for p in model.parameters():
            if p.ndim > 1:
                p.mul_(3.0)
    model.save(cfg.path(".torch"))
    return {"cfg_path": str(cfg_path), "cfg": cfg, "run": tmp / "run", "loci": loci}


def _genome():
    from strandwise.io.fasta import Genome

    return Genome(os.path.join(EXAMPLE, "sacCer3.fa.gz"))


def test_kept_rows_composes_drops_and_duplicates():
    c = np.array(["a", "a", "b", "a", "a"], dtype=object)
    m = np.array([5, 5, 7, 9, 5])
    # output kept rows 1 (a:5, duplicate of row 0 → greedy takes row 0: same decision), 3
    assert kept_rows(c, m, np.array(["a", "a"], dtype=object), np.array([5, 9])).tolist() == \
        [True, False, False, True, False]
    assert kept_rows(c, m, np.array([], dtype=object), np.array([], dtype=int)).tolist() == [False] * 5
    with pytest.raises(ValueError, match="ordered subset"):
        kept_rows(c, m, np.array(["a", "b"], dtype=object), np.array([9, 7]))


def test_attribute_outputs_mask_and_windows(setup, capsys):
    from strandwise.io.sequence import one_hot_encode

    run = setup["run"]
    assert main(["attribute", setup["cfg_path"], "--n-shuffles", "2", "--max-loci", "5", "--quiet"]) == 0
    ohe = np.load(run / "tiny.attributions.ohe.npz")["arr_0"]
    attr = np.load(run / "tiny.attributions.attr.npz")["arr_0"]
    assert ohe.shape == attr.shape == (5, 4, 400) and ohe.dtype == np.float32
    mask = np.load(run / "tiny.attributions.idxs.npy")
    # file rows: p0 p1 edge p2 p3 train p4 p5 p6 → edge (row 2) dropped, train (row 5) not in split,
    # --max-loci 5 keeps p0 p1 p2 p3 p4 (rows 0 1 3 4 6)
    assert mask.dtype == bool and mask.tolist() == [True, True, False, True, True, False, True, False, False]
    bed = [l.split("\t") for l in (run / "tiny.attributions.loci.bed").read_text().splitlines()]
    assert [int(r[3]) for r in bed] == [0, 1, 3, 4, 6]
    rows = (setup["loci"]).read_text().splitlines()
    g = _genome()
    for k, r in enumerate(bed):
        src = rows[int(r[3])].split("\t")
        mid = int(src[1]) + int(src[9])  # summit-centred (config: summits true)
        assert (int(r[1]), int(r[2])) == (mid - 200, mid + 200)
        expect = one_hot_encode(g.fetch(r[0], mid - 200, mid + 200)).numpy()
        np.testing.assert_array_equal(ohe[k], expect)
    g.close()
    assert np.abs(attr).sum() > 0
    assert (run / "tiny.interpret.html").exists() and len(os.listdir(run / "tiny.attributions_logos")) == 5
    # predicted vs observed profiles of the same loci, shown on the report page next to each logo
    profiles = sorted(os.listdir(run / "tiny.attributions_profiles"))
    assert profiles == sorted(os.listdir(run / "tiny.attributions_logos"))
    assert all((run / "tiny.attributions_profiles" / f).read_bytes()[:4] == b"\x89PNG" for f in profiles)
    html = (run / "tiny.interpret.html").read_text()
    assert "predicted vs observed" in html and f"tiny.attributions_profiles/{profiles[0]}" in html


def test_attribute_ism_matches_library(setup):
    from strandwise.interpret.attribution import attribute
    from strandwise.models.cherimoya import Cherimoya

    run = setup["run"]
    out = run / "ism"
    assert main(["attribute", setup["cfg_path"], "--algorithm", "saturation_mutagenesis", "--max-loci", "2",
                 "--attr-window", "40", "--output-dir", str(out), "--quiet"]) == 0
    ohe = np.load(out / "tiny.attributions.ohe.npz")["arr_0"]
    attr = np.load(out / "tiny.attributions.attr.npz")["arr_0"]
    assert attr.shape == (2, 4, 40)
    np.testing.assert_allclose(attr.sum(axis=1), 0, atol=1e-6)  # centred over the bases
    model = Cherimoya.load(setup["cfg"].path(".torch"))
    g = _genome()
    from strandwise.io.sequence import one_hot_encode

    bed = [l.split("\t") for l in (out / "tiny.attributions.loci.bed").read_text().splitlines()]
    X = torch.stack([one_hot_encode(g.fetch(r[0], int(r[1]) + 20 - 257, int(r[1]) + 20 + 257)) for r in bed])
    g.close()
    o2, a2 = attribute(model, X.float(), algorithm="saturation_mutagenesis", attr_window=40)
    np.testing.assert_array_equal(ohe, o2.numpy())
    np.testing.assert_allclose(attr, a2.numpy(), atol=1e-6)


def test_seqlets_bed_coordinates_and_annotation(setup):
    from strandwise.interpret.motifs_db import jaspar_meme
    from strandwise.interpret.seqlets import call_seqlets

    pytest.importorskip("pyjaspar")
    run = setup["run"]
    if not (run / "tiny.attributions.attr.npz").exists():
        assert main(["attribute", setup["cfg_path"], "--n-shuffles", "2", "--max-loci", "5", "--quiet"]) == 0
    meme = jaspar_meme(run / "fungi.meme")
    assert main(["seqlets", setup["cfg_path"], "--motifs", meme, "--min-cluster", "1", "--quiet"]) == 0
    ohe = np.load(run / "tiny.attributions.ohe.npz")["arr_0"]
    attr = np.load(run / "tiny.attributions.attr.npz")["arr_0"]
    expect = call_seqlets(attr, ohe)
    bed = [l.split("\t") for l in (run / "tiny.seqlets.bed").read_text().splitlines()]
    assert len(bed) == len(expect) > 0
    loci = [l.split("\t") for l in (run / "tiny.attributions.loci.bed").read_text().splitlines()]
    for b, s in zip(bed, expect):
        win_start = int(loci[s["example_idx"]][1])  # = mid − attr_window//2, not mid − in_window//2
        assert (b[0], int(b[1]), int(b[2]), int(b[3])) == (loci[s["example_idx"]][0], win_start + s["start"],
                                                          win_start + s["end"], s["example_idx"])
    ann = [l.split("\t") for l in (run / "tiny.seqlets_annotated.bed").read_text().splitlines()]
    assert len(ann) == len(bed) and all(len(a) == 8 for a in ann)
    counts = [l.split("\t") for l in (run / "tiny.motif_seqlet_count.tsv").read_text().splitlines()[1:]]
    assert sum(int(c[1]) for c in counts) == len(bed)
    clusters = (run / "tiny.seqlet_clusters.tsv").read_text().splitlines()
    assert clusters[0].split("\t")[:3] == ["motif", "n_seqlets", "mean_attribution"]
    named = {c[0]: int(c[1]) for c in counts if c[0] != "NA"}
    for line in clusters[1:]:
        f = line.split("\t")
        assert named[f[0]] == int(f[1]) and (run / f[-1]).exists()
    assert "Seqlets" in (run / "tiny.interpret.html").read_text()


def test_marginalize_uses_shuffled_negatives(setup):
    from strandwise.interpret.marginalize import insert_motif, select_backgrounds
    from strandwise.interpret.seqlets import write_meme
    from strandwise.io.intervals import read_peaks
    from strandwise.io.sequence import one_hot_encode
    from strandwise.models.cherimoya import Cherimoya

    run = setup["run"]
    motifs = {"GATA": "AGATAAGA", "polyA": "AAAAAAAAAAAA"}
    meme = run / "two.meme"
    write_meme({k: one_hot_encode(v).numpy() * 0.97 + 0.0075 for k, v in motifs.items()}, meme)
    assert main(["marginalize", setup["cfg_path"], "--motifs", str(meme), "--n-loci", "6",
                 "--chroms", "chrVI", "--quiet"]) == 0
    rows = [l.split("\t") for l in (run / "tiny_marginalize" / "tiny.marginalize.tsv").read_text().splitlines()]
    got = {r[0]: float(r[2]) for r in rows[1:]}
    # recompute: negatives on chrVI in file order (none near the ends), shuffled with seed 0, first 6
    neg = read_peaks(os.path.join(EXAMPLE, "yeast_atac.negatives.bed"))
    sel = [i for i in range(len(neg)) if neg.chrom[i] == "chrVI"]
    g = _genome()
    X = torch.stack([one_hot_encode(g.fetch("chrVI", int(neg.start[i] + (neg.end[i] - neg.start[i]) // 2) - 257,
                                            int(neg.start[i] + (neg.end[i] - neg.start[i]) // 2) + 257))
                     for i in sel]).float()
    g.close()
    X = X[torch.from_numpy(select_backgrounds(len(sel), 6, True, 0))]
    model = Cherimoya.load(setup["cfg"].path(".torch")).eval()
    with torch.no_grad():
        base = model(X)[1][:, 0]
        for name, seq in motifs.items():
            d = float((model(insert_motif(X, seq))[1][:, 0] - base).mean())
            assert got[name] == pytest.approx(d, rel=2e-3, abs=1e-6)
    assert rows[0][:3] == ["motif", "consensus", "delta_log_counts"]
    assert float(rows[1][2]) >= float(rows[2][2])  # sorted
    assert len(os.listdir(run / "tiny_marginalize" / "figures")) == 2


def test_variants_tsv_sorted_with_skips(setup, tmp_path):
    from strandwise.models.cherimoya import Cherimoya
    from strandwise.io.sequence import one_hot_encode

    run = setup["run"]
    g = _genome()
    pos = 150_001  # 1-based
    ref = g.fetch("chrIX", pos - 1, pos)
    alt = "A" if ref != "A" else "C"
    ref3 = g.fetch("chrIX", 160_000 - 1, 160_000 + 2)
    wrong = "A" if g.fetch("chrIX", 170_000 - 1, 170_000) != "A" else "C"
    size = CHROM_SIZES["chrIX"]
    last = size - 257 + 1  # 1-based pos whose 514-bp window ends exactly at the chromosome end
    b_last, b_past = g.fetch("chrIX", last - 1, last), g.fetch("chrIX", last, last + 1)
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chrIX\t{pos}\tsnv\t{ref}\t{alt}\t.\t.\t.\n"
                   f"chrIX\t160000\tdel\t{ref3}\t{ref3[0]}\t.\t.\t.\n"
                   f"chrIX\t165000\tins\t{g.fetch('chrIX', 164999, 165000)}\t{g.fetch('chrIX', 164999, 165000)}GGGG\t.\t.\t.\n"
                   f"chrIX\t170000\tbad\t{wrong}\tG\t.\t.\t.\n"
                   "chrIX\t100\tedge\tN\tA\t.\t.\t.\n"
                   f"chrIX\t{last}\tlast\t{b_last}\t{'A' if b_last != 'A' else 'C'}\t.\t.\t.\n"
                   f"chrIX\t{last + 1}\tpast\t{b_past}\t{'A' if b_past != 'A' else 'C'}\t.\t.\t.\n"
                   "chrQ\t500\tnochrom\tA\tC\t.\t.\t.\n")
    assert main(["variants", setup["cfg_path"], "--vcf", str(vcf), "--top-k", "2", "--quiet"]) == 0
    out = run / "tiny_variants"
    rows = [l.split("\t") for l in (out / "tiny.variants.tsv").read_text().splitlines()]
    head = rows[0]
    recs = [dict(zip(head, r)) for r in rows[1:]]
    assert {r["id"] for r in recs} == {"snv", "del", "ins", "last"}
    d = [abs(float(r["delta_log_counts"])) for r in recs]
    assert d == sorted(d, reverse=True)
    skipped = {l.split("\t")[2]: l.split("\t")[-1] for l in
               (out / "tiny.variants.skipped.tsv").read_text().splitlines()[1:]}
    assert set(skipped) == {"bad", "edge", "past", "nochrom"}
    assert skipped["bad"].startswith("reference allele mismatch")
    assert skipped["edge"].startswith("window starts before the chromosome start")
    assert skipped["past"].startswith("window runs past the chromosome end")
    assert skipped["nochrom"].startswith("chromosome not found")
    # SNV Δ log counts recomputed from the genome
    model = Cherimoya.load(setup["cfg"].path(".torch")).eval()
    s = g.fetch("chrIX", pos - 1 - 257, pos - 1 + 257)
    a = s[:257] + alt + s[258:]
    g.close()
    with torch.no_grad():
        delta = float(model(one_hot_encode(a)[None].float())[1][0, 0] - model(one_hot_encode(s)[None].float())[1][0, 0])
    snv = next(r for r in recs if r["id"] == "snv")
    assert float(snv["delta_log_counts"]) == pytest.approx(delta, rel=1e-3, abs=1e-5)
    assert len(os.listdir(out / "tiny.variants_plots")) == 2 and (out / "tiny.variants.html").exists()


def test_motifs_command_writes_modisco_outputs(setup):
    pytest.importorskip("modiscolite")
    run = setup["run"]
    if not (run / "tiny.attributions.attr.npz").exists():
        assert main(["attribute", setup["cfg_path"], "--n-shuffles", "2", "--max-loci", "5", "--quiet"]) == 0
    assert main(["motifs", setup["cfg_path"], "--quiet"]) == 0
    import h5py

    with h5py.File(run / "tiny_modisco_results.h5") as fh:
        assert set(fh.keys()) <= {"pos_patterns", "neg_patterns"}
    # without --motifs there is no pattern table, but the page still links the results file
    assert "tiny_modisco_results.h5" in (run / "tiny.interpret.html").read_text()


def _write_attributions(out, ohe, attr, name="tiny"):
    os.makedirs(out, exist_ok=True)
    np.savez_compressed(out / f"{name}.attributions.ohe.npz", ohe)
    np.savez_compressed(out / f"{name}.attributions.attr.npz", attr)
    W = ohe.shape[-1]
    (out / f"{name}.attributions.loci.bed").write_text(
        "".join(f"chrVI\t{1000 + 200 * i}\t{1000 + 200 * i + W}\t{i}\n" for i in range(len(ohe))))


def test_motifs_command_names_a_planted_reb1_site_and_drops_stale_outputs(setup, tmp_path):
    """Attributions written by hand: random DNA, REB1's consensus on a random strand in each row,
    +1 hypothetical contribution on its bases; the command's TSV must name REB1's site (all
    JASPAR fungi) for the top pattern. A rerun on pure noise finds no pattern and must not leave the
    earlier pattern table, logos or modisco report behind."""
    pytest.importorskip("modiscolite")
    pytest.importorskip("pyjaspar")
    from strandwise.interpret.motifs_db import jaspar_motifs
    from strandwise.interpret.seqlets import read_meme

    rng = np.random.RandomState(0)
    n, W, site = 200, 200, "TTACCCGG"
    idx = rng.randint(0, 4, size=(n, W))
    attr = rng.normal(0.0, 0.05, size=(n, 4, W)).astype(np.float32)
    for i in range(n):
        s = site if rng.rand() < 0.5 else site.translate(str.maketrans("ACGT", "TGCA"))[::-1]
        p = rng.randint(30, W - 30 - len(s))
        idx[i, p : p + len(s)] = ["ACGT".index(c) for c in s]
        attr[i, idx[i, p : p + len(s)], np.arange(p, p + len(s))] += 1.0
    ohe = np.zeros((n, 4, W), dtype=np.float32)
    np.put_along_axis(ohe, idx[:, None], 1.0, axis=1)
    out = tmp_path / "planted"
    _write_attributions(out, ohe, attr)
    args = ["motifs", setup["cfg_path"], "--output-dir", str(out), "--motifs", "jaspar:fungi",
            "--quiet"]
    assert main(args) == 0
    with open(out / "tiny.modisco_patterns.tsv") as fh:
        head, *rows = [line.rstrip("\n").split("\t") for line in fh]
    rows = [dict(zip(head, r)) for r in rows]
    assert rows and rows[0]["pattern"] == "pos_patterns.pattern_0", rows
    assert int(rows[0]["n_seqlets"]) >= 0.5 * n
    # the bare consensus matches NSI1 (Reb1's paralog, same site) as well as REB1 (whose matrix
    # adds a weak A in front); both lead the 178 JASPAR fungi matrices
    top = {rows[0][f"match{j}"].split()[-1]: float(rows[0][f"q{j}"]) for j in range(3)}
    assert rows[0]["match0"].split()[-1] in ("REB1", "NSI1") and "REB1" in top, rows[0]
    assert max(top[m] for m in ("REB1", rows[0]["match0"].split()[-1])) < 0.01, rows[0]
    assert len(jaspar_motifs()) == len(read_meme(out / "jaspar_fungi_JASPAR2024.meme")) > 100
    for r in rows:
        assert os.path.getsize(out / r["logo"]) > 0
    assert os.path.getsize(out / "tiny_modisco_results.h5") > 0
    assert "REB1" in (out / "tiny_modisco" / "motifs.html").read_text()
    page = (out / "tiny.interpret.html").read_text()
    for f in ("tiny.modisco_patterns.tsv", "tiny_modisco/motifs.html", "tiny_modisco_results.h5"):
        assert f in page, f

    # pure noise: no patterns; nothing of the first run may pass for this one's results
    _write_attributions(out, ohe, rng.normal(0.0, 0.05, size=(n, 4, W)).astype(np.float32))
    assert main(args) == 0
    import h5py

    with h5py.File(out / "tiny_modisco_results.h5") as fh:
        assert not any(len(fh[g]) for g in fh)
    assert not (out / "tiny.modisco_patterns.tsv").exists()
    assert not [f for f in os.listdir(out / "tiny.modisco_patterns") if f.endswith(".png")]
    assert not (out / "tiny_modisco" / "motifs.html").exists()
    page = (out / "tiny.interpret.html").read_text()
    assert "modisco_patterns.tsv" not in page and "motifs.html" not in page


def test_interpret_errors_are_one_line(setup, tmp_path, capsys):
    cfg = setup["cfg_path"]
    assert main(["seqlets", cfg, "--output-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run strandwise attribute first" in err
    bad = tmp_path / "v.bed"
    bad.write_text("chrIX\t1\t2\n")
    assert main(["variants", cfg, "--vcf", str(bad)]) == 2
    assert "use .vcf, .vcf.gz, .bcf or .tsv" in capsys.readouterr().err
    assert main(["marginalize", cfg, "--motifs", str(tmp_path / "none.meme")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["attribute", cfg, "--chroms", "chrXX", "--quiet"]) == 2
    assert "chrXX" in capsys.readouterr().err
