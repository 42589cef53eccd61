"""Seqlets, motif annotation and TF-MoDISco (spec §7.2).

* :func:`call_seqlets` — tangermeme's recursive seqlet caller on per-position importance
  ``Σ_channels(attr × one-hot)``; spec thresholds (p 0.01, length 4–25, 3 extra flank bp).
* :func:`seqlets_to_genome` — window offsets → genome coordinates with the **attribution window**
  width (``genomic = locus_mid − attr_window//2 + offset``; upstream ≤0.2 used the input width and
  shifted every seqlet by 857 bp, spec §7.4 #1).
* :func:`annotate_seqlets` — best tomtom (memelite) match of each seqlet's sequence in a motif
  database; :func:`motif_seqlet_counts` counts them per motif.
* :func:`run_modisco` — modisco-lite's ``TFMoDISco`` on ``(ohe, hypothetical attr)``, its HDF5 and
  its HTML report kept.

Records are lists of dicts (one per seqlet), easy to turn into a DataFrame or a BED/TSV file.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from strandwise.io.atomic import atomic_path, atomic_write_text

__all__ = [
    "SEQLET_DEFAULTS",
    "importance_scores",
    "call_seqlets",
    "seqlets_to_genome",
    "seqlets_bed_text",
    "write_seqlets_bed",
    "read_meme",
    "write_meme",
    "annotate_seqlets",
    "motif_seqlet_counts",
    "write_motif_counts",
    "seqlet_cwm",
    "motif_aligned_cwm",
    "run_modisco",
]

#: Recursive seqlet caller defaults (spec §7.2).
SEQLET_DEFAULTS = {"threshold": 0.01, "min_seqlet_len": 4, "max_seqlet_len": 25, "additional_flanks": 3}


def _as_tensor(a, name):
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(a)
    if not isinstance(a, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or array; got {type(a).__name__}")
    return a


def importance_scores(attr, ohe=None) -> torch.Tensor:
    """Per-position importance ``Σ_channels(attr × ohe)`` ``(n, W)``; ``attr (n, 4, W)``.

    Without ``ohe`` the attributions are taken as already projected (summed over channels).
    """
    attr = _as_tensor(attr, "attr").float()
    if attr.ndim != 3 or attr.shape[1] != 4:
        raise ValueError(f"attr must have shape (n, 4, W); got {tuple(attr.shape)}")
    if ohe is None:
        return attr.sum(dim=1)
    ohe = _as_tensor(ohe, "ohe").float()
    if ohe.shape != attr.shape:
        raise ValueError(f"ohe {tuple(ohe.shape)} and attr {tuple(attr.shape)} must have the same shape")
    return (attr * ohe).sum(dim=1)


def call_seqlets(
    attr,
    ohe=None,
    threshold: float = SEQLET_DEFAULTS["threshold"],
    min_seqlet_len: int = SEQLET_DEFAULTS["min_seqlet_len"],
    max_seqlet_len: int = SEQLET_DEFAULTS["max_seqlet_len"],
    additional_flanks: int = SEQLET_DEFAULTS["additional_flanks"],
) -> list[dict]:
    """Call positive seqlets with tangermeme's recursive seqlet caller.

    Parameters
    ----------
    attr : tensor or array, shape (n, 4, W)
        (Hypothetical) attributions over the attribution window.
    ohe : tensor or array, shape (n, 4, W), optional
        One-hot sequence; importance is ``Σ_channels(attr × ohe)``.
    threshold, min_seqlet_len, max_seqlet_len, additional_flanks
        Caller settings (spec defaults 0.01, 4, 25, 3). Flanks are clipped to the window.

    Returns
    -------
    list of dict
        ``{"example_idx", "start", "end", "attribution", "p_value"}`` with window offsets
        (0-based, end exclusive), sorted by attribution, highest first.
    """
    try:
        from tangermeme.seqlet import recursive_seqlets
    except ImportError:
        raise ImportError("seqlet calling needs tangermeme: pip install 'strandwise[interpret]'") from None
    scores = importance_scores(attr, ohe)
    W = scores.shape[1]
    if scores.shape[0] == 0:
        return []
    frame = recursive_seqlets(
        scores.numpy().astype(np.float32), threshold=threshold, min_seqlet_len=min_seqlet_len,
        max_seqlet_len=max_seqlet_len, additional_flanks=additional_flanks,
    )
    records = []
    for ex, s, e, a, p in frame[["example_idx", "start", "end", "attribution", "p-value"]].itertuples(index=False):
        records.append({
            "example_idx": int(ex),
            "start": max(0, int(s)),
            "end": min(W, int(e)),
            "attribution": float(a),
            "p_value": float(p),
        })
    records.sort(key=lambda r: -r["attribution"])
    return records


def seqlets_to_genome(
    seqlets: Iterable[Mapping], chroms: Sequence[str], mids: Sequence[int], attr_window: int
) -> list[dict]:
    """Add genome coordinates to seqlet records.

    ``genome_start = mids[i] − attr_window//2 + start`` (same for the end), where ``i`` is the
    seqlet's ``example_idx``, ``mids[i]`` the 0-based centre of locus ``i`` (the base at index
    ``L//2`` of its input window) and ``attr_window`` the width of the attribution window the
    offsets refer to — not the model input width.

    Parameters
    ----------
    seqlets : iterable of dict
        From :func:`call_seqlets`.
    chroms, mids : sequences indexed by ``example_idx``
    attr_window : int

    Returns
    -------
    list of dict
        Copies of the records with ``chrom``, ``genome_start``, ``genome_end`` added.
    """
    if len(chroms) != len(mids):
        raise ValueError(f"chroms ({len(chroms)}) and mids ({len(mids)}) differ in length")
    out = []
    for rec in seqlets:
        i = int(rec["example_idx"])
        if not 0 <= i < len(mids):
            raise IndexError(f"seqlet example_idx {i} has no locus (got {len(mids)} loci)")
        origin = int(mids[i]) - attr_window // 2
        out.append({**rec, "chrom": str(chroms[i]), "genome_start": origin + int(rec["start"]),
                    "genome_end": origin + int(rec["end"])})
    return out


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


#: Columns of the seqlet BED (no header): BED3 + example index, attribution, p-value.
SEQLET_BED_COLUMNS = ("chrom", "genome_start", "genome_end", "example_idx", "attribution", "p_value")
#: Extra columns of the annotated BED.
ANNOTATION_COLUMNS = ("motif", "motif_p_value")


def seqlets_bed_text(seqlets: Iterable[Mapping], columns=SEQLET_BED_COLUMNS) -> str:
    """Tab-separated BED lines (no header) for genome-placed seqlets."""
    lines = []
    for rec in seqlets:
        missing = [c for c in columns if c not in rec]
        if missing:
            raise KeyError(f"seqlet record lacks {missing}; place seqlets with seqlets_to_genome first")
        lines.append("\t".join(_fmt(rec[c]) for c in columns))
    return "".join(line + "\n" for line in lines)


def write_seqlets_bed(seqlets: Iterable[Mapping], path, annotated: bool = False) -> None:
    """Write seqlets as a headerless BED (atomically); ``annotated`` adds motif and p-value."""
    cols = SEQLET_BED_COLUMNS + (ANNOTATION_COLUMNS if annotated else ())
    atomic_write_text(path, seqlets_bed_text(seqlets, cols))


# ------------------------------------------------------------------------------- motifs
def read_meme(path) -> dict[str, np.ndarray]:
    """Read a MEME motif file (memelite): ``{name: PWM (4, w)}`` in A, C, G, T order."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"MEME file not found: {path}")
    try:
        from memelite.io import read_meme as _read
    except ImportError:
        raise ImportError("reading MEME files needs memelite: pip install 'strandwise[interpret]'") from None
    motifs = _read(path)
    if not motifs:
        raise ValueError(f"no motifs found in {path} (is it a MEME-format file?)")
    return {name: np.asarray(pwm, dtype=np.float64) for name, pwm in motifs.items()}


def write_meme(motifs: Mapping[str, np.ndarray], path) -> None:
    """Write ``{name: PWM (4, w)}`` as a MEME v4 file (atomically)."""
    lines = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "",
             "Background letter frequencies", "A 0.25 C 0.25 G 0.25 T 0.25", ""]
    for name, pwm in motifs.items():
        pwm = np.asarray(pwm, dtype=np.float64)
        if pwm.ndim != 2 or pwm.shape[0] != 4:
            raise ValueError(f"motif {name!r} must be a (4, w) matrix; got {pwm.shape}")
        lines += [f"MOTIF {name}", f"letter-probability matrix: alength= 4 w= {pwm.shape[1]} nsites= 20 E= 0"]
        lines += [" ".join(f"{v:.6f}" for v in col) for col in pwm.T]
        lines.append("")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _motif_dict(motifs) -> dict[str, np.ndarray]:
    if isinstance(motifs, (str, os.PathLike)):
        return read_meme(motifs)
    if not isinstance(motifs, Mapping) or not motifs:
        raise ValueError("motifs must be a MEME file path or a non-empty {name: PWM (4, w)} dict")
    return {str(k): np.asarray(v, dtype=np.float64) for k, v in motifs.items()}


def annotate_seqlets(
    seqlets: Sequence[Mapping], ohe, motifs, p_threshold: float = 0.05, n_score_bins: int = 100,
    n_median_bins: int = 1000, n_target_bins: int = 100, n_cache: int = 250, n_jobs: int = -1,
) -> list[dict]:
    """Best tomtom match of each seqlet's sequence against a motif database.

    Runs tangermeme's ``annotate_seqlets`` (memelite tomtom on the seqlet one-hot vs the PWMs,
    both strands) with the spec's settings (``-s 100 -m 1000 -a 100 -c 250``).

    Parameters
    ----------
    seqlets : list of dict
        Records with ``example_idx``, ``start``, ``end`` (window offsets).
    ohe : tensor or array, shape (n, 4, W)
    motifs : str or dict
        MEME file path or ``{name: PWM (4, w)}``.
    p_threshold : float
        Matches with a larger p-value get ``motif = "NA"``.

    Returns
    -------
    list of dict
        Copies with ``motif`` (name or ``"NA"``), ``motif_p_value`` and ``motif_idx`` (−1 if none).
    """
    try:
        import pandas as pd
        from tangermeme.annotate import annotate_seqlets as _annotate
    except ImportError:
        raise ImportError("annotation needs tangermeme: pip install 'strandwise[interpret]'") from None
    motifs = _motif_dict(motifs)
    names = list(motifs)
    if not seqlets:
        return []
    ohe = _as_tensor(ohe, "ohe").float()
    frame = pd.DataFrame({"example_idx": [int(r["example_idx"]) for r in seqlets],
                          "start": [int(r["start"]) for r in seqlets],
                          "end": [int(r["end"]) for r in seqlets]})
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="tomtom was given")
        idxs, pvals = _annotate(ohe, frame, {n: torch.from_numpy(motifs[n]).float() for n in names},
                                n_nearest=1, n_jobs=n_jobs, n_score_bins=n_score_bins,
                                n_median_bins=n_median_bins, n_target_bins=n_target_bins, n_cache=n_cache)
    out = []
    for rec, i, p in zip(seqlets, idxs[:, 0].tolist(), pvals[:, 0].tolist()):
        i = int(i)
        ok = i >= 0 and p <= p_threshold and not math.isnan(p)
        out.append({**rec, "motif": names[i] if ok else "NA", "motif_p_value": float(p),
                    "motif_idx": i if ok else -1})
    return out


def motif_seqlet_counts(annotated: Iterable[Mapping]) -> list[dict]:
    """Seqlets per matched motif, most frequent first (``"NA"`` = no significant match)."""
    counts = Counter(r["motif"] for r in annotated)
    return [{"motif": m, "n_seqlets": n} for m, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def write_motif_counts(counts: Iterable[Mapping], path) -> None:
    """Write :func:`motif_seqlet_counts` as a TSV with header ``motif  n_seqlets`` (atomically)."""
    lines = ["motif\tn_seqlets"] + [f"{r['motif']}\t{r['n_seqlets']}" for r in counts]
    atomic_write_text(path, "\n".join(lines) + "\n")


def seqlet_cwm(seqlets: Sequence[Mapping], ohe, attr, width: int | None = None) -> np.ndarray:
    """Contribution-weighted matrix: mean ``attr × ohe`` over seqlets, aligned at their centres.

    Returns
    -------
    numpy.ndarray, shape (4, width) (default: the longest seqlet)
    """
    ohe = _as_tensor(ohe, "ohe").float().numpy()
    attr = _as_tensor(attr, "attr").float().numpy()
    if not seqlets:
        raise ValueError("no seqlets to average")
    width = width or max(int(r["end"]) - int(r["start"]) for r in seqlets)
    W = ohe.shape[-1]
    acc = np.zeros((4, width))
    for r in seqlets:
        c = (int(r["start"]) + int(r["end"])) // 2
        s = c - width // 2
        lo, hi = max(0, s), min(W, s + width)
        i = int(r["example_idx"])
        acc[:, lo - s : hi - s] += (ohe[i] * attr[i])[:, lo:hi]
    return acc / len(seqlets)


# ------------------------------------------------------------------------------- MoDISco
def run_modisco(
    ohe, attr, output_dir, name: str = "modisco", max_seqlets: int = 100_000, motifs_meme=None,
    report: bool = True, **modisco_kwargs,
) -> dict:
    """TF-MoDISco (modisco-lite) on hypothetical attributions; keep its HDF5 and HTML report.

    Parameters
    ----------
    ohe, attr : tensor or array, shape (n, 4, W)
        One-hot and hypothetical attributions (as from :func:`~strandwise.interpret.attribute`).
    output_dir : str
        Receives ``{name}_modisco_results.h5`` and, with ``report``, ``{name}_modisco/`` (its
        earlier page and logos are removed first, so a run without patterns leaves none).
    max_seqlets : int
        ``max_seqlets_per_metacluster`` (spec ``-n 100000``).
    motifs_meme : str, optional
        MEME database for the report's tomtom matches.
    **modisco_kwargs
        Passed to ``modiscolite.tfmodisco.TFMoDISco``.

    Returns
    -------
    dict
        ``h5`` path, ``report_dir`` (or None) and ``patterns``: list of
        ``{"pattern", "n_seqlets", "cwm" (4, w), "ppm" (4, w)}`` for positive and negative patterns
        (``ppm``: base frequencies of the pattern's seqlets).
    """
    try:
        import h5py
        from modiscolite import io as mio, tfmodisco
    except ImportError:
        raise ImportError("TF-MoDISco needs modisco-lite: pip install 'strandwise[interpret]'") from None
    ohe = _as_tensor(ohe, "ohe").float().numpy()
    attr = _as_tensor(attr, "attr").float().numpy()
    if ohe.shape != attr.shape or ohe.ndim != 3 or ohe.shape[1] != 4:
        raise ValueError(f"ohe and attr must both be (n, 4, W); got {ohe.shape} and {attr.shape}")
    if not np.isfinite(attr).all():
        raise ValueError("TF-MoDISco: the attributions contain NaN or infinite values")
    if not (attr * ohe).any():
        # modisco-lite fails deep inside with an IndexError on an all-zero input (a dead model).
        raise ValueError(
            "TF-MoDISco: every contribution (attribution x one-hot) is zero; the model's output "
            "does not depend on the sequence (untrained or collapsed model?)"
        )
    os.makedirs(output_dir, exist_ok=True)
    # modisco-lite wants (n, W, 4).
    o = np.ascontiguousarray(ohe.transpose(0, 2, 1)).astype(np.float32)
    a = np.ascontiguousarray(attr.transpose(0, 2, 1)).astype(np.float32)
    kwargs = {"max_seqlets_per_metacluster": max_seqlets, **modisco_kwargs}
    pos, neg = tfmodisco.TFMoDISco(one_hot=o, hypothetical_contribs=a, **kwargs)
    h5 = os.path.join(output_dir, f"{name}_modisco_results.h5")
    with atomic_path(h5, suffix=".h5") as tmp:
        mio.save_hdf5(tmp, pos, neg, kwargs.get("sliding_window_size", 21))
    patterns = []
    with h5py.File(h5, "r") as fh:
        for group in ("pos_patterns", "neg_patterns"):
            if group not in fh:
                continue
            for pname in sorted(fh[group], key=lambda s: int(s.split("_")[-1])):
                pat = fh[group][pname]
                patterns.append({
                    "pattern": f"{group}.{pname}",
                    "n_seqlets": int(pat["seqlets"]["n_seqlets"][:][0]),
                    "cwm": np.asarray(pat["contrib_scores"][:]).T,
                    "ppm": np.asarray(pat["sequence"][:]).T,
                })
    report_dir = None
    if report:
        # an earlier run's page and logos must not pass for this run's (e.g. when it finds none)
        _clear_modisco_report(os.path.join(output_dir, f"{name}_modisco"))
    if report and patterns:
        from modiscolite import report as mreport

        report_dir = os.path.join(output_dir, f"{name}_modisco")
        mreport.report_motifs(h5, report_dir, img_path_suffix="./", meme_motif_db=motifs_meme,
                              is_writing_tomtom_matrix=False, ttl=True)
    return {"h5": h5, "report_dir": report_dir, "patterns": patterns}


def _clear_modisco_report(report_dir) -> None:
    """Remove what modisco-lite's report writes into ``report_dir`` (``motifs.html``, match logos,
    ``trimmed_logos/*.png``); other files are left alone."""
    for folder in (report_dir, os.path.join(report_dir, "trimmed_logos")):
        if not os.path.isdir(folder):
            continue
        for f in os.listdir(folder):
            if f == "motifs.html" or f.endswith(".png"):
                os.remove(os.path.join(folder, f))


def motif_aligned_cwm(seqlets: Sequence[Mapping], ohe, attr, pfm, flank: int = 3,
                      pseudocount: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Contribution and sequence matrices of seqlets aligned on a motif.

    Each seqlet is placed where the motif's log-odds ``log((pfm + pseudocount) / 0.25)`` scores
    best over the seqlet's bases (either strand, the motif overlapping the seqlet by at least half
    its width); the window ``[pos − flank, pos + w + flank)`` is taken, reverse-complemented for
    minus-strand hits, and averaged.

    Parameters
    ----------
    seqlets : list of dict
        ``example_idx``, ``start``, ``end`` (window offsets).
    ohe, attr : array, shape (n, 4, W)
    pfm : array, shape (4, w)
    flank : int

    Returns
    -------
    cwm : numpy.ndarray, shape (4, w + 2·flank)
        Mean contribution ``attr × ohe`` (zeros where a window leaves the sequence).
    ppm : numpy.ndarray, shape (4, w + 2·flank)
        Base frequencies of the aligned windows.
    """
    ohe = _as_tensor(ohe, "ohe").float().numpy()
    attr = _as_tensor(attr, "attr").float().numpy()
    pfm = np.asarray(pfm, dtype=np.float64)
    if pfm.ndim != 2 or pfm.shape[0] != 4:
        raise ValueError(f"pfm must be (4, w); got {pfm.shape}")
    if not seqlets:
        raise ValueError("no seqlets to align")
    w, W = pfm.shape[1], ohe.shape[-1]
    lod = np.log((pfm + pseudocount) / (1 + 4 * pseudocount) / 0.25)
    lod_rc = lod[::-1, ::-1]
    width = w + 2 * flank
    acc_c, acc_s = np.zeros((4, width)), np.zeros((4, width))
    for r in seqlets:
        i, s, e = int(r["example_idx"]), int(r["start"]), int(r["end"])
        best = (-np.inf, 0, False)
        lo, hi = max(0, s - w // 2), min(W - w, e - (w + 1) // 2)
        for pos in range(lo, max(lo, hi) + 1):
            if pos + w > W:
                break
            x = ohe[i, :, pos : pos + w]
            for rc, m in ((False, lod), (True, lod_rc)):
                sc = float((x * m).sum())
                if sc > best[0]:
                    best = (sc, pos, rc)
        _, pos, rc = best
        a, b = pos - flank, pos + w + flank
        c = np.zeros((4, width))
        q = np.zeros((4, width))
        ca, cb = max(0, a), min(W, b)
        c[:, ca - a : cb - a] = (ohe[i] * attr[i])[:, ca:cb]
        q[:, ca - a : cb - a] = ohe[i][:, ca:cb]
        if rc:
            c, q = c[::-1, ::-1], q[::-1, ::-1]
        acc_c += c
        acc_s += q
    n = len(seqlets)
    return acc_c / n, acc_s / n
