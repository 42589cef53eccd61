"""Motif databases and matching query motifs against them.

* :func:`jaspar_motifs` / :func:`jaspar_meme` — JASPAR matrices from the SQLite releases that the
  ``pyjaspar`` package ships (offline; JASPAR 2014 … 2026), as ``{name: PFM (4, w)}`` or a MEME
  file. JASPAR data are distributed under CC BY 4.0 (cite the JASPAR release you use).
* :func:`trim_motif` — cut a contribution-weighted matrix (CWM) to its informative core.
* :func:`tomtom_matches` — tomtom (memelite) of query matrices against a whole database, with the
  best ``top_k`` matches, their p-values and Benjamini–Hochberg q-values.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

__all__ = ["DEFAULT_JASPAR_RELEASE", "jaspar_releases", "jaspar_motifs", "jaspar_meme", "trim_motif",
           "benjamini_hochberg", "tomtom_matches", "orient_like"]

#: JASPAR release used when none is named (pinned so results do not move with pyjaspar updates).
DEFAULT_JASPAR_RELEASE = "JASPAR2024"


def _pyjaspar():
    try:
        import pyjaspar
    except ImportError:
        raise ImportError("JASPAR motifs need pyjaspar: pip install 'strandwise[interpret]'") from None
    return pyjaspar


def jaspar_releases() -> list[str]:
    """JASPAR releases available offline through the installed ``pyjaspar``, newest first."""
    return list(_pyjaspar().jaspardb().get_releases())


def jaspar_motifs(collection: str = "CORE", tax_group: str | Sequence[str] | None = "fungi",
                  release: str = DEFAULT_JASPAR_RELEASE, species=None, tf_name=None,
                  pseudocount: float = 0.0) -> dict[str, np.ndarray]:
    """Position frequency matrices of a JASPAR selection (latest version of each matrix).

    Parameters
    ----------
    collection : str
        JASPAR collection (``"CORE"``, ``"UNVALIDATED"``, ...).
    tax_group : str or list of str or None
        Taxonomic group(s): ``"fungi"``, ``"vertebrates"``, ``"plants"``, ``"insects"``,
        ``"nematodes"``, ``"urochordates"``; ``None`` for all.
    release : str
        E.g. ``"JASPAR2024"``; see :func:`jaspar_releases`.
    species, tf_name : optional
        Further pyjaspar filters (NCBI taxonomy ids, TF names).
    pseudocount : float
        Added to every count before normalising (0 reproduces JASPAR's own MEME files).

    Returns
    -------
    dict
        ``{"MA0265.3 ABF1": PFM (4, w) float64}`` with columns summing to 1, in A, C, G, T order;
        the key is the MEME ``MOTIF`` line (matrix id, then name).

    Raises
    ------
    ValueError
        Unknown release, or nothing matches the selection.
    """
    pj = _pyjaspar()
    releases = jaspar_releases()
    if release not in releases:
        raise ValueError(f"unknown JASPAR release {release!r}; pyjaspar has {', '.join(releases)}")
    if pseudocount < 0:
        raise ValueError(f"pseudocount must be >= 0; got {pseudocount}")
    db = pj.jaspardb(release=release)
    groups = [tax_group] if isinstance(tax_group, str) else tax_group
    records = db.fetch_motifs(collection=collection, tax_group=groups, species=species, tf_name=tf_name)
    if not len(records):
        raise ValueError(f"no JASPAR {release} motifs for collection={collection!r}, tax_group={tax_group!r}")
    out = {}
    for m in records:
        counts = np.array([m.counts[b] for b in "ACGT"], dtype=np.float64) + pseudocount
        out[f"{m.matrix_id} {m.name}"] = counts / counts.sum(axis=0, keepdims=True)
    return out


def jaspar_meme(path, collection: str = "CORE", tax_group: str | Sequence[str] | None = "fungi",
                release: str = DEFAULT_JASPAR_RELEASE, **kwargs) -> str:
    """Write a JASPAR selection (:func:`jaspar_motifs`) as a MEME v4 file; returns the path.

    ``MOTIF`` lines read ``MATRIX_ID NAME`` (e.g. ``MA0264.1 ndt80``), as in JASPAR's downloads.
    """
    from strandwise.interpret.seqlets import write_meme

    path = os.fspath(path)
    write_meme(jaspar_motifs(collection, tax_group, release, **kwargs), path)
    return path


def trim_motif(cwm, threshold: float = 0.3, flank: int = 0) -> tuple[int, int]:
    """Informative core of a contribution matrix: ``[start, end)`` of the columns whose
    ``Σ|cwm|`` reaches ``threshold × max`` (first to last such column), widened by ``flank``.

    Parameters
    ----------
    cwm : array, shape (4, w)
    threshold : float in (0, 1]
    flank : int

    Returns
    -------
    (start, end) : tuple of int
    """
    cwm = np.asarray(cwm, dtype=np.float64)
    if cwm.ndim != 2 or cwm.shape[0] != 4 or cwm.shape[1] == 0:
        raise ValueError(f"cwm must have shape (4, w > 0); got {cwm.shape}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    score = np.abs(cwm).sum(axis=0)
    if score.max() <= 0:
        return 0, cwm.shape[1]
    keep = np.flatnonzero(score >= threshold * score.max())
    return max(0, int(keep[0]) - flank), min(cwm.shape[1], int(keep[-1]) + 1 + flank)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg q-values of the p-values along the last axis (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.reshape(-1, p.shape[-1])
    q = np.full_like(flat, np.nan)
    for r, row in enumerate(flat):
        ok = np.flatnonzero(np.isfinite(row))
        if ok.size == 0:
            continue
        order = ok[np.argsort(row[ok], kind="stable")]
        m = ok.size
        ranked = row[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        q[r, order] = np.minimum(ranked, 1.0)
    return q.reshape(p.shape)


def _to_ppm(m):
    """A motif for tomtom: a PFM as is; a CWM (has negative entries or does not sum to 1) as the
    per-column share of |contribution|, so every query is compared as a probability matrix."""
    m = np.asarray(m, dtype=np.float64)
    col = m.sum(axis=0)
    if (m >= 0).all() and np.allclose(col, 1.0, atol=1e-3):
        return m
    a = np.abs(m)
    s = a.sum(axis=0, keepdims=True)
    return np.where(s > 0, a / np.where(s > 0, s, 1), 0.25)


def tomtom_matches(queries: Mapping[str, np.ndarray], database, top_k: int = 3,
                   n_jobs: int = -1) -> list[dict]:
    """Compare query motifs with every motif of a database by tomtom (memelite, both strands).

    Parameters
    ----------
    queries : dict
        ``{name: (4, w) matrix}``: PFMs, or CWMs (compared as their per-column share of
        |contribution|, i.e. a probability matrix of the contributing bases).
    database : str or dict
        MEME file or ``{name: PFM (4, w)}`` (use a whole database: tomtom's null distribution comes
        from the target columns).
    top_k : int
        Matches kept per query.

    Returns
    -------
    list of dict, one per query in order
        ``query``, and for ``j < top_k``: ``match{j}``, ``p{j}``, ``q{j}`` — the q-values are
        Benjamini–Hochberg over the query's p-values against **all** database motifs (tomtom's
        convention).
    """
    from strandwise.interpret.seqlets import _motif_dict

    try:
        from memelite import tomtom
    except ImportError:
        raise ImportError("motif matching needs memelite: pip install 'strandwise[interpret]'") from None
    db = _motif_dict(database)
    names, targets = list(db), [np.asarray(v, dtype=np.float64) for v in db.values()]
    if not queries:
        return []
    qnames = list(queries)
    Q = [_to_ppm(queries[n]) for n in qnames]
    for n, q in zip(qnames, Q):
        if q.ndim != 2 or q.shape[0] != 4:
            raise ValueError(f"query {n!r} must be a (4, w) matrix; got {q.shape}")
    p = tomtom(Q, targets, n_jobs=n_jobs)[0]
    p = np.asarray(p, dtype=np.float64).reshape(len(Q), len(targets))
    q = benjamini_hochberg(p)
    k = min(int(top_k), len(targets))
    out = []
    for i, name in enumerate(qnames):
        order = np.argsort(np.where(np.isfinite(p[i]), p[i], np.inf), kind="stable")[:k]
        rec = {"query": name}
        for j, t in enumerate(order):
            rec[f"match{j}"] = names[int(t)]
            rec[f"p{j}"] = float(p[i, t])
            rec[f"q{j}"] = float(q[i, t])
        out.append(rec)
    return out


def orient_like(query, target) -> tuple[np.ndarray, bool]:
    """``target`` or its reverse complement, whichever aligns better (best ungapped offset of the
    column-wise dot product) with ``query``; both ``(4, w)`` probability-like matrices.

    Returns
    -------
    (matrix, is_reverse_complement)
    """
    q, t = _to_ppm(query), np.asarray(target, dtype=np.float64)

    def best(m):
        wq, wt = q.shape[1], m.shape[1]
        s = -np.inf
        for off in range(-wt + 1, wq):
            a, b = max(0, off), min(wq, off + wt)
            if b > a:
                s = max(s, float((q[:, a:b] * m[:, a - off : b - off]).sum() - 0.25 * (b - a)))
        return s

    rc = t[::-1, ::-1]
    return (rc, True) if best(rc) > best(t) else (t, False)
