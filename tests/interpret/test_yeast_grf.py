"""Real data at a small scale: the Cherimoya trained on the yeast ATAC example
(``examples/yeast_atac/yeast_atac_motifs.torch``, config ``config_motifs.json``) must have learned
the general regulatory factors of yeast open chromatin, measured on the held-out test chromosome
chrIV only.

* Marginalization: the consensus of Abf1, Reb1 and Rap1 written into chrIV negatives raises
  predicted accessibility more than motifs of factors that are not enriched in these peaks and
  than column-shuffled copies of the GRF consensus sequences.
* Attribution: DeepLIFT/SHAP on chrIV peaks puts positive, above-typical contribution on Reb1 and
  Abf1 matches (``motif_hit_attribution``).
* Seqlets + tomtom: seqlets from those attributions are named after GRFs by tomtom against all
  JASPAR fungi matrices far more often than random windows, and the Reb1-site seqlets' aligned
  contribution matrix matches REB1 first.
"""

import os

import numpy as np
import pytest
import torch

from strandwise import Cherimoya
from strandwise.interpret import attribute, marginalize, motif_hit_attribution
from strandwise.interpret.enrichment import log_odds_matrix, max_motif_scores, score_threshold
from strandwise.io.fasta import Genome
from strandwise.io.intervals import read_bed, read_peaks
from strandwise.io.sequence import one_hot_encode

EX = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "yeast_atac")
MODEL = os.path.join(EX, "yeast_atac_motifs.torch")
HALF = 2114 // 2
GRF = {"ABF1": "TCGTATATAGTGAT", "REB1": "ATTACCCGG", "RAP1": "ATGTATGGGTGT"}  # JASPAR 2024 consensus
OTHERS = {"GCN4": "TGACTCAT", "STE12": "TGAAACA", "MCM1": "CCCAATTAGGAA"}  # not enriched in the peaks


def _windows(genome, intervals, summits):
    centres = intervals.centers(summits=summits)
    seqs = [one_hot_encode(genome.fetch(c, int(m) - HALF, int(m) + HALF), strict=False)
            for c, m in zip(intervals.chrom, centres)
            if HALF <= m <= genome.chrom_sizes[c] - HALF]
    return torch.stack(seqs).float()


@pytest.fixture(scope="module")
def yeast():
    torch.manual_seed(0)
    model = Cherimoya.load(MODEL)
    model.eval()
    genome = Genome(os.path.join(EX, "sacCer3.fa.gz"))
    peaks = read_peaks([os.path.join(EX, "yeast_atac.macs3_peaks.narrowPeak")])
    negs = read_bed(os.path.join(EX, "yeast_atac.negatives.bed"))
    peaks = peaks.subset(np.flatnonzero(peaks.chrom == "chrIV"))
    negs = negs.subset(np.flatnonzero(negs.chrom == "chrIV"))
    return model, _windows(genome, peaks, True), _windows(genome, negs, False)


@pytest.mark.slow
def test_marginalization_ranks_grfs_first_on_heldout_negatives(yeast):
    model, _, neg = yeast
    rng = np.random.RandomState(0)
    decoys = {f"{k} shuffled {i}": "".join(rng.permutation(list(v))) for k, v in GRF.items() for i in range(2)}
    motifs = {**GRF, **OTHERS, **decoys}
    recs = marginalize(model, neg, motifs, n_loci=32, random_state=0, batch_size=64)
    delta = {r["motif"]: r["delta_log_counts"] for r in recs}
    ranked = [r["motif"] for r in recs]
    assert set(ranked[:3]) == set(GRF), ranked
    assert delta["ABF1"] > 0.1 and delta["REB1"] > 0.1
    best_other = max(delta[k] for k in delta if k not in GRF)
    assert min(delta[k] for k in GRF) > best_other + 0.03, delta


@pytest.fixture(scope="module")
def attributed(yeast):
    """DeepLIFT/SHAP (4 shuffles) on 12 chrIV peaks: 6 with a Reb1 and 6 with an Abf1 match."""
    from strandwise.interpret.motifs_db import jaspar_motifs

    model, pos, _ = yeast
    fungi = jaspar_motifs(tax_group="fungi")
    motifs = {k: v for k, v in fungi.items() if k.split(" ", 1)[1] in ("REB1", "ABF1")}
    assert len(motifs) == 2
    lods = {k: log_odds_matrix(v) for k, v in motifs.items()}
    thr = np.array([score_threshold(v, 1e-4) for v in lods.values()])
    hits = max_motif_scores(pos[:, :, HALF - 200 : HALF + 200], lods) >= thr  # (n, 2)
    rng = np.random.RandomState(0)
    pick = sorted({int(i) for j in range(hits.shape[1]) for i in rng.choice(np.flatnonzero(hits[:, j]), 6, replace=False)})
    X, A = attribute(model, pos[pick], n_shuffles=4, batch_size=16, random_state=0)
    return X, A, motifs, fungi


@pytest.mark.slow
def test_deeplift_contributions_sit_on_reb1_and_abf1_matches(attributed):
    X, A, motifs, _ = attributed
    res = {r["motif"].split(" ", 1)[1]: r for r in motif_hit_attribution(X, A, motifs)}
    for tf in ("REB1", "ABF1"):
        assert res[tf]["n_hits"] >= 6
        assert res[tf]["ratio"] > 0.8, res[tf]
        assert res[tf]["frac_positive"] >= 0.8, res[tf]


@pytest.mark.slow
def test_seqlets_are_named_after_grfs_by_tomtom(attributed):
    """The issue's criterion at small scale: seqlets called from the attributions, matched by tomtom
    against all 178 JASPAR 2024 fungi matrices, are named after a GRF (Reb1, Abf1, Rap1, or Nsi1,
    which binds the Reb1 site) far more often than random windows of the same lengths in the same
    sequences; and the Reb1-site seqlets, aligned on REB1 and averaged, match REB1 first."""
    from strandwise.interpret import annotate_seqlets, call_seqlets, motif_aligned_cwm, tomtom_matches, trim_motif

    X, A, motifs, fungi = attributed
    grf = {"REB1", "NSI1", "ABF1", "RAP1"}
    seqlets = call_seqlets(A, X)
    assert len(seqlets) >= 30
    ann = annotate_seqlets(seqlets, X, fungi, n_jobs=1)
    names = [a["motif"].split(" ", 1)[-1] for a in ann]
    share = np.mean([n in grf for n in names])
    rng = np.random.RandomState(0)
    W = X.shape[-1]
    random_share = []
    for _ in range(5):
        rand = []
        for s in seqlets:
            st = rng.randint(0, W - (s["end"] - s["start"]) + 1)
            rand.append({**s, "start": st, "end": st + s["end"] - s["start"]})
        random_share.append(np.mean([a["motif"].split(" ", 1)[-1] in grf
                                     for a in annotate_seqlets(rand, X, fungi, n_jobs=1)]))
    assert share >= 0.1 and share >= 2 * max(random_share), (share, random_share, names)
    reb1_site = [s for s, n in zip(seqlets, names) if n in ("REB1", "NSI1")]
    assert len(reb1_site) >= 3, names
    reb1 = next(v for k, v in motifs.items() if k.endswith("REB1"))
    cwm, _ = motif_aligned_cwm(reb1_site, X, A, reb1)
    a, b = trim_motif(cwm, 0.3)
    best = tomtom_matches({"reb1 site": cwm[:, a:b]}, fungi, top_k=1, n_jobs=1)[0]
    assert best["match0"].endswith("REB1") and best["q0"] < 0.05, best
