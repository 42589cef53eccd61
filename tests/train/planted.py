"""Synthetic profile data with planted motifs (for training tests)."""

import numpy as np
import torch

MOTIF = "TGACTCA"


def planted_dataset(n, L=240, trimming=40, seed=0):
    """Random DNA with 0–3 copies of MOTIF; counts peak at each copy, totals grow with copies."""
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, 4, size=(n, L))
    out_len = L - 2 * trimming
    rate = np.full((n, out_len), 0.02)
    motif = np.array(["ACGT".index(c) for c in MOTIF])
    pos_grid = np.arange(out_len)
    for i in range(n):
        k = rng.randint(0, 4)
        starts = rng.choice(np.arange(trimming + 5, L - trimming - 5 - len(motif), 9), size=k, replace=False)
        for s in starts:
            idx[i, s : s + len(motif)] = motif
            centre = s + len(motif) // 2 - trimming
            rate[i] += 1.5 * np.exp(-0.5 * ((pos_grid - centre) / 3.0) ** 2)
    X = torch.zeros(n, 4, L)
    X.scatter_(1, torch.from_numpy(idx)[:, None], 1.0)
    y = torch.from_numpy(rng.poisson(rate)).float()[:, None]
    return X, y
