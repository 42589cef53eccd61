"""Seqlet calling, genome coordinates (spec §9 item 35, §7.4 #1), annotation and counts."""

import numpy as np
import pytest
import torch

from strandwise.interpret import (
    annotate_seqlets,
    call_seqlets,
    importance_scores,
    motif_seqlet_counts,
    read_meme,
    seqlet_cwm,
    seqlets_to_genome,
    write_meme,
    write_motif_counts,
    write_seqlets_bed,
)

pytest.importorskip("tangermeme")
pytest.importorskip("memelite")


def _onehot(seqs):
    X = torch.zeros(len(seqs), 4, len(seqs[0]))
    for n, s in enumerate(seqs):
        for i, ch in enumerate(s):
            X[n, "ACGT".index(ch), i] = 1
    return X


def _spiky(n=30, W=400, spikes=((0, 150),), width=6, seed=0):
    rng = np.random.RandomState(seed)
    attr = torch.from_numpy(rng.normal(0, 0.01, size=(n, 4, W))).float()
    ohe = torch.zeros(n, 4, W)
    ohe.scatter_(1, torch.from_numpy(rng.randint(0, 4, size=(n, 1, W))), 1.0)
    for ex, o in spikes:
        attr[ex, :, o : o + width] += 2.0
    return ohe, attr


def test_importance_projects_onto_observed_bases():
    ohe, attr = _spiky(2, 10)
    torch.testing.assert_close(importance_scores(attr, ohe), (attr * ohe).sum(1))
    torch.testing.assert_close(importance_scores(attr * ohe), (attr * ohe).sum(1))
    with pytest.raises(ValueError, match="same shape"):
        importance_scores(attr, ohe[:, :, :5])


def test_spike_at_offset_maps_to_locus_mid_minus_half_window_plus_offset(tmp_path):
    o = 150
    ohe, attr = _spiky(30, 400, spikes=((4, o),), width=6)
    seqlets = call_seqlets(attr, ohe, additional_flanks=0)
    top = seqlets[0]
    assert top["example_idx"] == 4
    # spans reaching up to min_seqlet_len − 1 bp past the spike still hold it, so they pass too
    assert o - 3 <= top["start"] <= o and o + 6 <= top["end"] <= o + 9
    assert all(s["attribution"] >= t["attribution"] for s, t in zip(seqlets, seqlets[1:]))

    # synthetic seqlet exactly at the spike: genome = locus_mid − 400//2 + offset
    rec = {"example_idx": 4, "start": o, "end": o + 6, "attribution": 1.0, "p_value": 1e-4}
    chroms = ["chrI"] * 30
    mids = [10_000 + 7 * i for i in range(30)]
    placed = seqlets_to_genome([rec], chroms, mids, attr_window=400)[0]
    assert placed["genome_start"] == mids[4] - 200 + o == 9_978
    assert placed["genome_end"] == 9_984
    # upstream's defect (converting with the 2114-bp input width) would be 857 bp off
    assert placed["genome_start"] - (mids[4] - 2114 // 2 + o) == 857

    bed = tmp_path / "x.seqlets.bed"
    write_seqlets_bed([placed], bed)
    assert bed.read_text() == "chrI\t9978\t9984\t4\t1\t0.0001\n"
    with pytest.raises(IndexError):
        seqlets_to_genome([{**rec, "example_idx": 30}], chroms, mids, 400)


def test_flanks_are_clipped_to_the_window():
    ohe, attr = _spiky(20, 100, spikes=((0, 0),), width=6)
    seqlets = call_seqlets(attr, ohe, additional_flanks=3)
    first = [s for s in seqlets if s["example_idx"] == 0][0]
    assert first["start"] == 0 and first["end"] <= 100


def _pwm(consensus, strength=0.85):
    pwm = np.full((4, len(consensus)), (1 - strength) / 3)
    for i, ch in enumerate(consensus):
        pwm["ACGT".index(ch), i] = strength
    return pwm


def _database(seed=0, n_decoys=30):
    rng = np.random.RandomState(seed)
    motifs = {"PLANTED_AP1": _pwm("TGACTCA"), "REB1_LIKE": _pwm("TTACCCGG")}
    for k in range(n_decoys):
        motifs[f"decoy_{k}"] = _pwm("".join(rng.choice(list("ACGT"), size=rng.randint(6, 11))))
    return motifs


def test_meme_round_trip(tmp_path):
    motifs = _database()
    path = tmp_path / "db.meme"
    write_meme(motifs, path)
    back = read_meme(path)
    assert list(back) == list(motifs)
    np.testing.assert_allclose(back["REB1_LIKE"], motifs["REB1_LIKE"], atol=1e-6)
    with pytest.raises(FileNotFoundError):
        read_meme(tmp_path / "missing.meme")


def test_annotation_finds_the_motif_under_each_seqlet(tmp_path):
    rng = np.random.RandomState(1)
    seqs = []
    for i in range(6):
        s = list(rng.choice(list("ACGT"), size=60))
        site = "TGACTCA" if i % 2 == 0 else "TTACCCGG"
        s[20 : 20 + len(site)] = site
        seqs.append("".join(s))
    ohe = _onehot(seqs)
    seqlets = [{"example_idx": i, "start": 20, "end": 20 + (7 if i % 2 == 0 else 8),
                "attribution": 1.0, "p_value": 0.001} for i in range(6)]
    write_meme(_database(), tmp_path / "db.meme")
    ann = annotate_seqlets(seqlets, ohe, str(tmp_path / "db.meme"), n_jobs=1)
    assert [a["motif"] for a in ann] == ["PLANTED_AP1", "REB1_LIKE"] * 3
    assert all(a["motif_p_value"] < 1e-3 for a in ann)
    counts = motif_seqlet_counts(ann + [{"motif": "NA"}])
    assert counts == [{"motif": "PLANTED_AP1", "n_seqlets": 3}, {"motif": "REB1_LIKE", "n_seqlets": 3},
                      {"motif": "NA", "n_seqlets": 1}]
    write_motif_counts(counts, tmp_path / "c.tsv")
    assert (tmp_path / "c.tsv").read_text().splitlines()[:2] == ["motif\tn_seqlets", "PLANTED_AP1\t3"]
    # seqlets over random sequence are left unannotated at a strict threshold
    none = annotate_seqlets([{"example_idx": 0, "start": 40, "end": 46}], ohe, _database(), p_threshold=1e-12,
                            n_jobs=1)
    assert none[0]["motif"] == "NA" and none[0]["motif_idx"] == -1


def test_seqlet_cwm_averages_centred_contributions():
    ohe = _onehot(["AAAACGTAAA", "TTTTCGTTTT"])
    attr = torch.ones(2, 4, 10)
    cwm = seqlet_cwm([{"example_idx": 0, "start": 4, "end": 7}, {"example_idx": 1, "start": 4, "end": 7}],
                     ohe, attr)
    np.testing.assert_allclose(cwm, ohe[0, :, 4:7].numpy())
