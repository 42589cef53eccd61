"""Attributing token-id classifiers (CNN baseline, Caduceus) and the JASPAR enrichment scan:
wrapper == classifier on ids, DeepLIFT completeness, ISM == explicit mutants, errors, exact
score thresholds, and a planted JASPAR motif recovered by a trained CNN's seqlets."""

import itertools
import warnings

import numpy as np
import pytest
import torch

from strandwise.interpret import ClassifierWrapper, attribute_classifier, deep_lift_shap
from strandwise.interpret.enrichment import (
    log_odds_matrix,
    max_motif_scores,
    motif_enrichment,
    motif_hit_attribution,
    score_threshold,
)
from strandwise.io.tokenizer import A_ID, N_ID, PAD_ID
from strandwise.train.caduceus_module import CaduceusModelConfig, CNNBaseline, build_classifier

L = 40
EPOCHS, N_TRAIN = 6, 2400


def _x(n, length=L, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.zeros(n, 4, length)
    X.scatter_(1, torch.randint(0, 4, (n, 1, length), generator=g), 1.0)
    return X


def _ids(X):
    """Token ids of one-hot X; all-zero columns are N."""
    ids = X.argmax(1) + A_ID
    return torch.where(X.sum(1) == 0, torch.full_like(ids, N_ID), ids)


def _cnn(num_classes=2, seed=0, scale=3.0):
    torch.manual_seed(seed)
    m = CNNBaseline(L, num_classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics and weights large enough to bend the ReLUs
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.2, 0.6)
                mod.weight.uniform_(0.5, 2.0)
                mod.bias.uniform_(-0.2, 0.2)
            elif isinstance(mod, (torch.nn.Conv1d, torch.nn.Linear)):
                mod.weight.mul_(scale)
    return m.eval()


def _caduceus(variant):
    return build_classifier(CaduceusModelConfig(variant=variant, d_model=8, n_layer=1, d_state=4), 3, L).eval()


@pytest.mark.parametrize("kind", ["cnn", "ps", "ph"])
def test_wrapper_equals_classifier_on_token_ids(kind):
    m = _cnn(3) if kind == "cnn" else _caduceus(kind)
    X = _x(3)
    X[1, :, 5] = 0  # an N
    with torch.no_grad():
        want = m(_ids(X))
        w = ClassifierWrapper(m, target=2, output="logit")
        assert torch.allclose(w.logits(X), want, atol=1e-5)
        assert torch.allclose(w(X)[:, 0], want[:, 2], atol=1e-5)
        d = ClassifierWrapper(m, target=0, output="logit_diff")(X)[:, 0]
        assert torch.allclose(d, want[:, 0] - want[:, 1:].mean(1), atol=1e-5)


def test_cnn_wrapper_left_pads_short_sequences_like_the_tokenizer():
    m = _cnn()
    X = _x(2, L - 7)
    ids = torch.cat([torch.full((2, 7), PAD_ID), _ids(X)], dim=1)
    with torch.no_grad():
        assert torch.allclose(ClassifierWrapper(m, 1, "logit").logits(X), m(ids), atol=1e-5)


@pytest.mark.parametrize("output", ["logit", "logit_diff"])
def test_deep_lift_shap_is_complete_for_the_cnn(output):
    pytest.importorskip("tangermeme")
    m = _cnn(3)
    w = ClassifierWrapper(m, target=1, output=output)
    X = _x(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # tangermeme's convergence warning
        attr, refs = deep_lift_shap(w, X, n_shuffles=5, random_state=1, return_references=True, batch_size=8)
    assert not w.training and not m.training  # BatchNorm stays on running statistics
    with torch.no_grad():
        fx = w(X)[:, 0]
        fr = w(refs.reshape(-1, 4, L))[:, 0].reshape(4, 5).mean(1)
    got = (attr * X).sum(dim=(1, 2))
    assert (fx - fr).abs().max() > 0.05  # outputs really change
    assert torch.allclose(got, fx - fr, atol=1e-4), (got, fx - fr)
    same = attribute_classifier(m, X, target=1, output=output, n_shuffles=5, random_state=1)
    assert torch.allclose(same, attr, atol=1e-6)


@pytest.mark.parametrize("kind", ["cnn", "ph"])
def test_ism_equals_explicit_mutation_deltas(kind):
    m = _cnn() if kind == "cnn" else _caduceus("ph")
    X = _x(2, seed=3)
    got = attribute_classifier(m, X, target=1, output="logit_diff", algorithm="saturation_mutagenesis")
    assert got.shape == (2, 4, L)

    def score(ids):
        with torch.no_grad():
            y = m(ids)
        return y[:, 1] - y[:, [0, 2]].mean(1) if y.shape[1] == 3 else y[:, 1] - y[:, 0]

    ids = _ids(X)
    base = score(ids)
    with torch.no_grad():
        tol = 1e-5 * max(1.0, float(m(ids).abs().max()))
    for n, p in [(0, 0), (1, 17), (0, L - 1)]:
        deltas = []
        for b in range(4):
            mut = ids[n : n + 1].clone()
            mut[0, p] = A_ID + b
            deltas.append(float(score(mut)[0] - base[n]))
        want = torch.tensor(deltas) - sum(deltas) / 4
        # fp32 logits reach ~40 here and batched vs single-row convs round differently (~2e-5),
        # so the tolerance scales with the logits (the deltas themselves are ~1)
        assert torch.allclose(got[n, :, p], want, atol=tol), (n, p, got[n, :, p], want)


def test_errors_are_specific():
    m = _cnn()
    with pytest.raises(TypeError, match="CNNBaseline and CaduceusClassifier"):
        ClassifierWrapper(torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="target"):
        ClassifierWrapper(m, target=2)
    with pytest.raises(ValueError, match="output"):
        ClassifierWrapper(m, output="prob")
    with pytest.raises(ValueError, match="longer than the CNN"):
        ClassifierWrapper(m)(_x(1, L + 1))
    with pytest.raises(ValueError, match=r"\(N, 4, L\)"):
        ClassifierWrapper(m)(torch.zeros(2, L))
    with pytest.raises(ValueError, match="saturation_mutagenesis"):
        attribute_classifier(_caduceus("ps"), _x(1), algorithm="deep_lift_shap")
    with pytest.raises(ValueError, match="algorithm"):
        attribute_classifier(m, _x(1), algorithm="gradient")


# ----------------------------------------------------------------------------- enrichment scan
def test_score_threshold_matches_enumeration():
    rng = np.random.RandomState(0)
    pfm = rng.dirichlet(np.ones(4) * 0.5, size=5).T
    lod = log_odds_matrix(pfm)
    scores = np.array([sum(lod[b, i] for i, b in enumerate(w)) for w in itertools.product(range(4), repeat=5)])
    for p in (1e-3, 1e-2, 0.1):
        t = score_threshold(lod, p)
        assert (scores >= t).mean() <= p < (scores >= t - 1).mean()
    with pytest.raises(ValueError, match="p must be"):
        score_threshold(lod, 0)


def test_max_motif_scores_equal_a_loop_over_windows_and_strands():
    rng = np.random.RandomState(1)
    X = _x(3, 12, seed=2)
    lods = {"a": log_odds_matrix(rng.dirichlet(np.ones(4), size=4).T),
            "b": log_odds_matrix(rng.dirichlet(np.ones(4), size=6).T),
            "wide": log_odds_matrix(rng.dirichlet(np.ones(4), size=13).T)}
    got = max_motif_scores(X, lods)
    x = X.numpy()
    for j, (name, lod) in enumerate(lods.items()):
        w = lod.shape[1]
        for n in range(3):
            if w > 12:
                assert got[n, j] == -np.inf
                continue
            rc = x[n][::-1, ::-1]
            best = max(max((x[n][:, s : s + w] * lod).sum(), (rc[:, s : s + w] * lod).sum()) for s in range(12 - w + 1))
            assert got[n, j] == best


def test_motif_enrichment_ranks_the_planted_motif_first():
    rng = np.random.RandomState(0)
    planted = np.full((4, 8), 0.02)
    planted[[0, 2, 1, 3, 3, 1, 0, 2], range(8)] = 0.94  # AGCTTCAG
    motifs = {"planted": planted, **{f"decoy{k}": rng.dirichlet(np.ones(4) * 0.3, size=8).T for k in range(20)}}
    pos, neg = _x(200, 50, seed=4), _x(200, 50, seed=5)
    pos[:100, :, 10:18] = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 3, 3, 1, 0, 2]), 4).T.float()
    recs = motif_enrichment(pos, neg, motifs)
    assert recs[0]["motif"] == "planted" and recs[0]["frac_pos"] >= 0.5
    assert recs[0]["q_value"] < 1e-10 and all(r["q_value"] > 1e-3 for r in recs[1:])
    with pytest.raises(ValueError, match="positives and negatives"):
        motif_enrichment(pos[:0], neg, motifs)


def _onehot(seq):
    return torch.nn.functional.one_hot(torch.tensor(["ACGT".index(c) for c in seq]), 4).T.float()


def test_motif_hit_attribution_measures_contribution_on_hits_both_strands():
    site = "AGCTTCAG"
    pfm = np.full((4, 8), 0.02)
    pfm[["ACGT".index(c) for c in site], range(8)] = 0.94
    rc = site[::-1].translate(str.maketrans("ACGT", "TGCA"))
    X = _x(3, 60, seed=7)
    X[0, :, 10:18] = _onehot(site)
    X[1, :, 30:38] = _onehot(rc)  # reverse strand
    hyp = torch.ones(3, 4, 60)  # contribution 1 per base ...
    hyp[0, :, 10:18] = 5.0  # ... and 5 on the forward site
    hyp[1, :, 30:38] = -3.0  # ... and -3 on the reverse one
    motifs = {"site": pfm, "absent": np.eye(4)[[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]].T}
    recs = motif_hit_attribution(X, hyp, motifs)
    assert [r["motif"] for r in recs] == ["site", "absent"]
    norm = (3 * 60 - 16 + 8 * 5 + 8 * 3) / (3 * 60)
    r = recs[0]
    assert r["n_hits"] == 2 and r["n_sequences"] == 2 and r["frac_positive"] == 0.5
    assert r["mean_contribution"] == pytest.approx(1.0)  # (5 - 3) / 2
    assert r["ratio"] == pytest.approx(1.0 / norm)
    assert recs[1]["n_hits"] == 0 and np.isnan(recs[1]["ratio"])
    # actual (already multiplied) attributions give the same answer
    assert motif_hit_attribution(X, X * hyp, motifs)[0]["ratio"] == pytest.approx(r["ratio"])


def test_motif_hit_attribution_counts_overlapping_windows_once():
    X = _onehot("CGCGC" + "A" * 10 + "CG" * 12 + "C")[None]  # one run of 10 A: 5 windows of AAAAAA
    polya = np.full((4, 6), 0.01)
    polya[0] = 0.97
    attr = torch.ones(1, 4, 40)
    kw = dict(p_hit=1e-3)  # a 6-mer cannot reach p < 4^-6
    assert motif_hit_attribution(X, attr, {"polyA": polya}, non_overlapping=False, **kw)[0]["n_hits"] == 5
    assert motif_hit_attribution(X, attr, {"polyA": polya}, **kw)[0]["n_hits"] == 1
    with pytest.raises(ValueError, match="does not match"):
        motif_hit_attribution(X, attr[:, :, :30], {"polyA": polya})
    with pytest.raises(ValueError, match="all zero"):
        motif_hit_attribution(X, 0 * attr, {"polyA": polya})


# ------------------------------------------------------------------------ end to end, small
def test_cnn_trained_on_a_planted_jaspar_motif_recovers_it():
    """A CNN baseline trained on GC-rich random DNA, positives carrying one sampled CTCF (JASPAR
    MA0139.2) site: DeepLIFT seqlets matched by tomtom against all JASPAR vertebrate matrices are
    most often CTCF, and the CWM of those seqlets matches a CTCF matrix best (q < 0.05)."""
    pytest.importorskip("tangermeme")
    pytest.importorskip("memelite")
    pytest.importorskip("pyjaspar")
    from strandwise.interpret import annotate_seqlets, call_seqlets, jaspar_motifs, seqlet_cwm, tomtom_matches
    from strandwise.interpret.motifs_db import trim_motif
    from strandwise.interpret.seqlets import motif_aligned_cwm

    db = jaspar_motifs(tax_group="vertebrates")
    ctcf = db["MA0139.2 CTCF"]
    rng = np.random.RandomState(0)
    n, Ls = N_TRAIN, 101

    def sample(n):
        idx = rng.choice(4, size=(n, Ls), p=[0.2, 0.3, 0.3, 0.2])
        y = rng.rand(n) < 0.5
        for i in np.flatnonzero(y):
            site = np.array([rng.choice(4, p=col) for col in ctcf.T])
            if rng.rand() < 0.5:
                site = 3 - site[::-1]
            s = rng.randint(30, Ls - 30 - len(site))  # near the centre, as ChIP-seq summits
            idx[i, s : s + len(site)] = site
        X = torch.zeros(n, 4, Ls)
        X.scatter_(1, torch.from_numpy(idx)[:, None], 1.0)
        return X, torch.from_numpy(y.astype(np.int64))

    X, y = sample(n)
    torch.manual_seed(0)
    m = CNNBaseline(Ls, 2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    ids = _ids(X)
    for _ in range(EPOCHS):
        for b in torch.randperm(n).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(ids[b]), y[b]).backward()
            opt.step()
    m.eval()
    Xt, yt = sample(300)
    with torch.no_grad():
        acc = (m(_ids(Xt)).argmax(1) == yt).float().mean().item()
    assert acc > 0.85, acc

    pos = Xt[yt == 1][:48]
    attr = attribute_classifier(m, pos, target=1, n_shuffles=8, batch_size=96)
    seqlets = call_seqlets(attr, pos)
    assert len(seqlets) >= 20
    ann = annotate_seqlets(seqlets[:60], pos, db, n_jobs=1)
    names = [a["motif"].split()[-1] for a in ann]
    top = max(set(names), key=names.count)
    assert top == "CTCF", sorted(((names.count(k), k) for k in set(names)), reverse=True)[:5]
    # CTCF's 19 bp often split into two seqlets; the halves also match CTCFL or zinc-finger motifs
    assert names.count("CTCF") + names.count("CTCFL") >= 0.25 * len(ann)
    named = [s for s, a in zip(seqlets, ann) if a["motif"].endswith("CTCF")]
    # Unaligned (seqlet-centred) CWM: a CTCF matrix is among the best three matches. ZIC matrices
    # share CTCF's CCCTGC core, so which of them ranks first moves with fp32 rounding in training
    # (ZIC4 first on an AMD EPYC, CTCF first elsewhere); both strands are averaged unaligned here.
    cwm = seqlet_cwm(named, pos, attr, width=25)
    best = tomtom_matches({"cwm": cwm}, db, top_k=3, n_jobs=1)[0]
    top3 = [(best[f"match{j}"], best[f"q{j}"]) for j in range(3)]
    assert any(m.endswith("CTCF") and q < 0.05 for m, q in top3), best
    # Aligned on the motif and trimmed (what `strandwise seqlets` reports): CTCF first.
    aligned, _ = motif_aligned_cwm(named, pos, attr, ctcf)
    a, b = trim_motif(aligned, 0.3)
    best = tomtom_matches({"cwm": aligned[:, a:b]}, db, top_k=1, n_jobs=1)[0]
    assert best["match0"].endswith("CTCF") and best["q0"] < 0.05, best
