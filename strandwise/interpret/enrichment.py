"""Motif enrichment: which known motif separates two sets of sequences?

An independent, model-free ground truth for a labelled task: scan positives and negatives with a
motif database (e.g. JASPAR CORE vertebrates) and rank the motifs by how much more often they hit
the positives.

* :func:`log_odds_matrix` — integer-scaled log-odds ``round(scale · log2(p / 0.25))`` of a PFM.
* :func:`score_threshold` — the smallest score whose probability under an i.i.d. uniform
  background is at most ``p`` (exact distribution of the integer score by convolution, as FIMO
  computes its p-values).
* :func:`max_motif_scores` — best score of every motif in every sequence, both strands.
* :func:`motif_enrichment` — per motif: hit fractions in positives and negatives, odds ratio and a
  one-sided Fisher exact p-value with Benjamini–Hochberg q-values, most enriched first.
* :func:`motif_hit_attribution` — does a model use a motif where it occurs? Mean attribution per
  base inside the motif's hits, relative to the mean absolute attribution per base (a seqlet-free
  check that does not depend on clustering or on how strong the motif's learned pattern is).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

__all__ = ["log_odds_matrix", "score_threshold", "max_motif_scores", "motif_enrichment",
           "motif_hit_attribution"]

#: Integer score units per bit: ``round(SCALE · log2(p / 0.25))``.
DEFAULT_SCALE = 10


def _pfm(pfm, name="pfm"):
    pfm = np.asarray(pfm, dtype=np.float64)
    if pfm.ndim != 2 or pfm.shape[0] != 4 or pfm.shape[1] == 0:
        raise ValueError(f"{name} must be a (4, w > 0) frequency matrix; got shape {pfm.shape}")
    if (pfm < 0).any():
        raise ValueError(f"{name} has negative entries")
    return pfm


def log_odds_matrix(pfm, pseudocount: float = 0.01, scale: int = DEFAULT_SCALE) -> np.ndarray:
    """Integer log-odds ``round(scale · log2(q / 0.25))``, ``q`` the column-normalised
    ``pfm + pseudocount``; shape ``(4, w)``, int64, rows A, C, G, T."""
    pfm = _pfm(pfm) + float(pseudocount)
    q = pfm / pfm.sum(axis=0, keepdims=True)
    return np.rint(scale * np.log2(q / 0.25)).astype(np.int64)


def score_threshold(lod: np.ndarray, p: float) -> int:
    """Smallest integer score ``s`` with ``P(score ≥ s) ≤ p`` for one window of i.i.d. uniform bases.

    The null distribution of a sum of independent columns is the convolution of the columns'
    distributions (each base 1/4), computed exactly on the integer grid.
    """
    lod = np.asarray(lod)
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1); got {p}")
    lo = int(lod.min(axis=0).sum())
    dist = np.ones(1)  # distribution of the partial sum, offset by the partial minimum
    for col in lod.T:
        cmin = int(col.min())
        step = np.zeros(int(col.max()) - cmin + 1)
        for v in col:
            step[int(v) - cmin] += 0.25
        dist = np.convolve(dist, step)
    tail = np.cumsum(dist[::-1])[::-1]  # tail[i] = P(score >= lo + i)
    ok = np.flatnonzero(tail <= p * (1 + 1e-9))
    if ok.size == 0:  # even the best score is more probable than p
        return lo + len(dist)
    return lo + int(ok[0])


def _to_onehot(X) -> torch.Tensor:
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, torch.Tensor) or X.ndim != 3 or X.shape[1] != 4:
        raise ValueError(f"sequences must be one-hot (N, 4, L); got {getattr(X, 'shape', type(X).__name__)}")
    return X.float()


def max_motif_scores(X, lods: Mapping[str, np.ndarray], chunk: int = 2048) -> np.ndarray:
    """Best integer log-odds score of each motif in each sequence, over positions and both strands.

    Parameters
    ----------
    X : tensor or array, shape (N, 4, L)
        One-hot sequences (N positions all-zero: they score 0 in every column).
    lods : dict
        ``{name: integer log-odds (4, w)}`` from :func:`log_odds_matrix`.
    chunk : int
        Sequences per convolution.

    Returns
    -------
    numpy.ndarray, shape (N, M), float64
        ``-inf`` where a motif is wider than the sequences.
    """
    X = _to_onehot(X)
    names = list(lods)
    N, _, L = X.shape
    out = np.full((N, len(names)), -np.inf)
    by_width: dict[int, list[int]] = {}
    for j, n in enumerate(names):
        by_width.setdefault(np.asarray(lods[n]).shape[1], []).append(j)
    for w, idx in by_width.items():
        if w > L:
            continue
        fwd = torch.tensor(np.stack([np.asarray(lods[names[j]], dtype=np.float32) for j in idx]))
        weight = torch.cat([fwd, fwd.flip(1, 2)])  # reverse complement: rows A,C,G,T reversed
        k = len(idx)
        for s in range(0, N, chunk):
            with torch.no_grad():
                y = torch.nn.functional.conv1d(X[s : s + chunk], weight)  # (n, 2k, L - w + 1)
                best = torch.maximum(y[:, :k], y[:, k:]).amax(dim=-1)
            out[s : s + chunk, idx] = best.double().numpy()
    return out


def motif_enrichment(pos, neg, motifs: Mapping[str, np.ndarray], p_hit: float = 1e-4,
                     pseudocount: float = 0.01, scale: int = DEFAULT_SCALE, chunk: int = 2048) -> list[dict]:
    """Rank motifs by enrichment of hits in positives over negatives.

    A sequence has a hit of a motif when its best window (either strand) reaches the score whose
    per-window background p-value is ``p_hit`` (:func:`score_threshold`). Per motif, a one-sided
    Fisher exact test on the 2×2 table (hit / no hit × positive / negative).

    Parameters
    ----------
    pos, neg : tensor or array, shape (N, 4, L)
        One-hot positives and negatives.
    motifs : dict
        ``{name: PFM (4, w)}`` (e.g. :func:`~strandwise.interpret.jaspar_motifs`).
    p_hit : float
        Per-window p-value of a hit.

    Returns
    -------
    list of dict, most enriched first (by Fisher p, then odds ratio)
        ``motif``, ``width``, ``threshold`` (bits), ``frac_pos``, ``frac_neg``, ``odds_ratio``
        (with 0.5 added to each cell), ``log2_enrichment`` (``log2(frac_pos / frac_neg)``, 0.5
        pseudo-hits), ``p_value``, ``q_value`` (BH over all motifs).
    """
    from scipy.stats import fisher_exact

    from strandwise.interpret.motifs_db import benjamini_hochberg

    if not motifs:
        raise ValueError("motifs is empty")
    pos, neg = _to_onehot(pos), _to_onehot(neg)
    if pos.shape[0] == 0 or neg.shape[0] == 0:
        raise ValueError(f"need positives and negatives; got {pos.shape[0]} and {neg.shape[0]}")
    names = list(motifs)
    lods = {n: log_odds_matrix(_pfm(motifs[n], n), pseudocount, scale) for n in names}
    thr = np.array([score_threshold(lods[n], p_hit) for n in names], dtype=np.float64)
    hp = (max_motif_scores(pos, lods, chunk) >= thr).sum(axis=0)
    hn = (max_motif_scores(neg, lods, chunk) >= thr).sum(axis=0)
    n_p, n_n = pos.shape[0], neg.shape[0]
    pvals = np.array([fisher_exact([[a, n_p - a], [b, n_n - b]], alternative="greater")[1]
                      for a, b in zip(hp, hn)])
    q = benjamini_hochberg(pvals)
    recs = []
    for j, n in enumerate(names):
        a, b = int(hp[j]), int(hn[j])
        odds = ((a + 0.5) * (n_n - b + 0.5)) / ((n_p - a + 0.5) * (b + 0.5))
        recs.append({
            "motif": n, "width": int(lods[n].shape[1]), "threshold": thr[j] / scale,
            "frac_pos": a / n_p, "frac_neg": b / n_n, "odds_ratio": float(odds),
            "log2_enrichment": float(np.log2(((a + 0.5) / n_p) / ((b + 0.5) / n_n))),
            "p_value": float(pvals[j]), "q_value": float(q[j]),
        })
    recs.sort(key=lambda r: (r["p_value"], -r["odds_ratio"]))
    return recs


def motif_hit_attribution(X, attr, motifs: Mapping[str, np.ndarray], p_hit: float = 1e-4,
                          pseudocount: float = 0.01, scale: int = DEFAULT_SCALE,
                          non_overlapping: bool = True) -> list[dict]:
    """How much attribution a model puts on the hits of each motif.

    Every window (either strand) whose log-odds score reaches the ``p_hit`` threshold of
    :func:`score_threshold` is a hit. The per-base contribution is ``(X · attr).sum(channels)``
    (so hypothetical and actual attributions both work). For each motif the mean contribution per
    base inside its hits is divided by the mean absolute contribution per base over all positions:
    ``ratio`` ≈ 0 means the model ignores the motif where it occurs, ``ratio`` > 1 means its
    hits carry more than a typical base's share, and a negative ratio means the motif lowers the
    output.

    Parameters
    ----------
    X : tensor or array, shape (N, 4, L)
        One-hot sequences the attributions were computed for.
    attr : tensor or array, shape (N, 4, L)
        Attributions (e.g. ``strandwise attribute``'s ``attr.npz``).
    motifs : dict
        ``{name: PFM (4, w)}``.
    p_hit : float
        Per-window background p-value of a hit.
    non_overlapping : bool
        Keep only the best hit among overlapping windows of the same motif (palindromes otherwise
        count twice).

    Returns
    -------
    list of dict, largest ``ratio`` first (motifs without hits last)
        ``motif``, ``n_hits``, ``n_sequences`` (with at least one hit), ``mean_contribution``
        (per base, in hits), ``ratio``, ``frac_positive`` (hits whose summed contribution is > 0).
    """
    X = _to_onehot(X)
    A = attr if isinstance(attr, torch.Tensor) else torch.from_numpy(np.asarray(attr))
    A = A.float()
    if A.shape != X.shape:
        raise ValueError(f"attr shape {tuple(A.shape)} does not match sequences {tuple(X.shape)}")
    if not motifs:
        raise ValueError("motifs is empty")
    contrib = (X * A).sum(dim=1)  # (N, L)
    norm = float(contrib.abs().mean())
    if norm == 0.0:
        raise ValueError("attributions are all zero")
    csum = torch.nn.functional.pad(contrib.double().cumsum(dim=1), (1, 0))  # window sums by difference
    recs = []
    for name, pfm in motifs.items():
        lod = log_odds_matrix(_pfm(pfm, name), pseudocount, scale)
        w = lod.shape[1]
        rec = {"motif": name, "n_hits": 0, "n_sequences": 0, "mean_contribution": float("nan"),
               "ratio": float("nan"), "frac_positive": float("nan")}
        if w <= X.shape[-1]:
            thr = score_threshold(lod, p_hit)
            W = torch.tensor(lod, dtype=torch.float32)[None]
            with torch.no_grad():
                s = torch.maximum(torch.nn.functional.conv1d(X, W), torch.nn.functional.conv1d(X, W.flip(1, 2)))[:, 0]
            sums = (csum[:, w:] - csum[:, :-w])  # (N, L - w + 1): contribution summed over each window
            hit = s >= thr
            if non_overlapping and hit.any():
                # keep a window only if it is the best-scoring one within ±(w-1)
                pooled = torch.nn.functional.max_pool1d(s[:, None], 2 * w - 1, stride=1, padding=w - 1)[:, 0]
                hit &= s >= pooled
                # ties (equal scores within reach): keep the leftmost
                prev = torch.zeros_like(hit)
                for k in range(1, w):
                    prev[:, k:] |= hit[:, :-k]
                hit &= ~prev
            vals = sums[hit]
            if vals.numel():
                rec.update(n_hits=int(vals.numel()), n_sequences=int(hit.any(dim=1).sum()),
                           mean_contribution=float(vals.mean() / w), ratio=float(vals.mean() / w / norm),
                           frac_positive=float((vals > 0).double().mean()))
        recs.append(rec)
    recs.sort(key=lambda r: (np.isnan(r["ratio"]), -np.nan_to_num(r["ratio"], nan=0.0)))
    return recs
