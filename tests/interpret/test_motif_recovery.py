"""End to end at a small scale: a Cherimoya trained on sequences with a planted motif; DeepLIFT
seqlets annotated by tomtom and marginalization must both name that motif among decoys."""

import numpy as np
import pytest
import torch

from strandwise import Cherimoya
from strandwise.interpret import (
    annotate_seqlets,
    attribute,
    call_seqlets,
    marginalize,
    motif_seqlet_counts,
    write_meme,
)

pytest.importorskip("tangermeme")
pytest.importorskip("memelite")

MOTIF = "TGACTCA"


def planted(n, L=200, trimming=40, seed=0, min_copies=0):
    """Random DNA with min_copies–3 copies of MOTIF; each copy adds a counts bump at its centre."""
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, 4, size=(n, L))
    out_len = L - 2 * trimming
    rate = np.full((n, out_len), 0.02)
    motif = np.array(["ACGT".index(c) for c in MOTIF])
    grid = np.arange(out_len)
    for i in range(n):
        k = rng.randint(min_copies, 4)
        starts = rng.choice(np.arange(trimming + 5, L - trimming - 5 - len(motif), 9), size=k, replace=False)
        for s in starts:
            idx[i, s : s + len(motif)] = motif
            rate[i] += 1.5 * np.exp(-0.5 * ((grid - (s + len(motif) // 2 - trimming)) / 3.0) ** 2)
    X = torch.zeros(n, 4, L)
    X.scatter_(1, torch.from_numpy(idx)[:, None], 1.0)
    return X, torch.from_numpy(rng.poisson(rate)).float()[:, None]


def _pwm(consensus, strength=0.85):
    pwm = np.full((4, len(consensus)), (1 - strength) / 3)
    for i, ch in enumerate(consensus):
        pwm["ACGT".index(ch), i] = strength
    return pwm


@pytest.mark.slow
def test_planted_motif_is_recovered_by_seqlets_and_marginalization(tmp_path):
    from strandwise.train import OptimizerConfig, TrainConfig, fit

    X, y = planted(512, seed=0)
    Xv, yv = planted(96, seed=1)
    cfg = TrainConfig(batch_size=32, max_epochs=8, random_state=0,
                      optimizer=OptimizerConfig(n_warmup_epochs=1, adam_lr=1e-2))
    model = fit(Cherimoya(n_filters=32, n_layers=4, trimming=40, random_state=0), (X, y), valid=(Xv, yv),
                config=cfg, output_dir=str(tmp_path / "fit"), quiet=True).model.eval()

    rng = np.random.RandomState(0)
    db = {"PLANTED": _pwm(MOTIF)}
    for k in range(30):
        db[f"decoy_{k}"] = _pwm("".join(rng.choice(list("ACGT"), size=rng.randint(6, 11))))
    write_meme(db, tmp_path / "db.meme")

    Xt, _ = planted(24, seed=2, min_copies=1)
    ohe, attr = attribute(model, Xt, output="logcounts", attr_window=120, n_shuffles=6, batch_size=72)
    seqlets = call_seqlets(attr, ohe)
    ann = annotate_seqlets(seqlets, ohe, str(tmp_path / "db.meme"), n_jobs=1)
    counts = motif_seqlet_counts(ann)
    assert counts[0]["motif"] == "PLANTED", counts[:3]
    assert counts[0]["n_seqlets"] >= 0.5 * len(ann)
    # the strongest seqlets sit on planted copies
    assert [a["motif"] for a in ann[:5]].count("PLANTED") >= 4

    negatives = torch.zeros(200, 4, 200)
    negatives.scatter_(1, torch.from_numpy(np.random.RandomState(5).randint(0, 4, (200, 1, 200))), 1.0)
    recs = marginalize(model, negatives, {k: db[k] for k in list(db)[:8]}, n_loci=50)
    assert recs[0]["motif"] == "PLANTED"
    assert recs[0]["delta_log_counts"] > 2 * max(r["delta_log_counts"] for r in recs[1:])
    assert recs[0]["max_abs_delta_profile"] == max(r["max_abs_delta_profile"] for r in recs)
