"""Marginalization: the model's response to a motif inserted into background sequences (spec §7.2).

For each motif, its consensus is written over the centre of ``n_loci`` background sequences and the
model predicts before and after; the mean Δ log counts and the mean change of the expected-count
profile are the motif's marginal effect, free of the genomic context it usually sits in.

Backgrounds should be **negatives** (GC-matched non-peak loci), not peaks: peaks already contain the
motifs being tested (spec §7.4 #7). When ``shuffle`` is set the backgrounds are permuted with a fixed
``random_state`` **before** the ``n_loci`` cap, so the subset is a random sample of all backgrounds
and the same on every run.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import torch

from strandwise.evaluate.predict import expected_counts, predict

__all__ = [
    "select_backgrounds",
    "motif_consensus",
    "insert_motif",
    "marginalize",
    "MARGINALIZE_COLUMNS",
]

#: TSV columns written by :func:`marginalize`.
MARGINALIZE_COLUMNS = ("motif", "consensus", "delta_log_counts", "delta_log_counts_sd",
                       "max_abs_delta_profile", "n_loci")


def select_backgrounds(n_backgrounds: int, n_loci: int | None = 100, shuffle: bool = True,
                       random_state: int = 0) -> np.ndarray:
    """Indices of the background sequences to use: shuffle (seeded) first, then cap at ``n_loci``.

    Parameters
    ----------
    n_backgrounds : int
        Number of available backgrounds.
    n_loci : int or None
        Cap (``None``: all).
    shuffle : bool
        Permute with ``numpy.random.RandomState(random_state)`` before capping.

    Returns
    -------
    numpy.ndarray of int64, shape (min(n_loci, n_backgrounds),)
    """
    if n_backgrounds <= 0:
        raise ValueError("no background sequences given (pass the negatives)")
    order = np.random.RandomState(random_state).permutation(n_backgrounds) if shuffle else np.arange(n_backgrounds)
    return order if n_loci is None else order[: int(n_loci)]


def motif_consensus(motif) -> str:
    """Consensus string of a motif: a DNA string as is, or the argmax base of each PWM column."""
    if isinstance(motif, str):
        bad = set(motif.upper()) - set("ACGTN")
        if not motif or bad:
            raise ValueError(f"motif string must be non-empty ACGTN; got {motif!r}")
        return motif.upper()
    pwm = np.asarray(motif, dtype=np.float64)
    if pwm.ndim != 2 or pwm.shape[0] != 4 or pwm.shape[1] == 0:
        raise ValueError(f"a motif matrix must have shape (4, w); got {pwm.shape}")
    return "".join("ACGT"[i] for i in pwm.argmax(axis=0))


def insert_motif(X: torch.Tensor, motif, start: int | None = None) -> torch.Tensor:
    """Copy of ``X (N, 4, L)`` with ``motif``'s consensus written at ``start`` (default: centred).

    Centred means ``start = L//2 − w//2``. ``N`` characters leave the background base in place.
    """
    seq = motif_consensus(motif)
    L = X.shape[-1]
    w = len(seq)
    start = L // 2 - w // 2 if start is None else int(start)
    if start < 0 or start + w > L:
        raise ValueError(f"motif of width {w} does not fit at {start} in sequences of {L} bp")
    out = X.clone()
    for j, ch in enumerate(seq):
        if ch == "N":
            continue
        out[:, :, start + j] = 0
        out[:, "ACGT".index(ch), start + j] = 1
    return out


def marginalize(
    model,
    backgrounds: torch.Tensor,
    motifs,
    X_ctl: torch.Tensor | None = None,
    n_loci: int | None = 100,
    shuffle: bool = True,
    random_state: int = 0,
    group: int = 0,
    batch_size: int = 512,
    device=None,
    reverse_complement_average: bool = False,
    output_dir=None,
    name: str = "marginalize",
    progress: bool = False,
) -> list[dict]:
    """Marginal effect of each motif on predicted counts and profiles.

    Parameters
    ----------
    model : Cherimoya
    backgrounds : torch.Tensor, shape (n, 4, L)
        Background sequences — the negatives.
    motifs : dict, str or path
        ``{name: PWM (4, w) or DNA string}`` or a MEME file.
    X_ctl : torch.Tensor, shape (n, K, L), optional
        Controls of the backgrounds (same selection is applied).
    n_loci, shuffle, random_state
        See :func:`select_backgrounds`.
    group : int
        Signal group whose Δ log counts ranks the motifs (all groups are reported).
    batch_size, device, reverse_complement_average
        Passed to :func:`~strandwise.evaluate.predict`.
    output_dir : str, optional
        Write ``{name}.tsv``, one PNG per motif and ``{name}.html`` linking them.

    Returns
    -------
    list of dict, sorted by ``delta_log_counts`` (group ``group``), largest first
        Keys: ``motif``, ``consensus``, ``delta_log_counts`` (mean), ``delta_log_counts_sd``,
        ``delta_log_counts_by_group`` (list), ``max_abs_delta_profile``, ``n_loci``,
        ``profile_before`` and ``profile_after`` (``(O, L_out)`` mean expected counts),
        ``plot`` (PNG path, with ``output_dir``).
    """
    from strandwise.interpret.seqlets import _motif_dict

    if not isinstance(backgrounds, torch.Tensor) or backgrounds.ndim != 3 or backgrounds.shape[1] != 4:
        raise ValueError("backgrounds must be one-hot sequences of shape (n, 4, L)")
    if isinstance(motifs, Mapping):
        motifs = {str(k): v for k, v in motifs.items()}
        if not motifs:
            raise ValueError("no motifs given")
    else:
        motifs = _motif_dict(motifs)
    G = len(model.signal_groups)
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < G:
        raise ValueError(f"group must be an int in [0, {G}); got {group!r}")
    idx = torch.from_numpy(select_backgrounds(backgrounds.shape[0], n_loci, shuffle, random_state))
    X = backgrounds[idx].float()
    ctl = None if X_ctl is None else X_ctl[idx].float()
    kw = dict(batch_size=batch_size, device=device, reverse_complement_average=reverse_complement_average)
    p0, c0 = predict(model, X, ctl, **kw)
    e0 = expected_counts(p0, c0, model.signal_groups)
    before = e0.mean(dim=0)
    records = []
    from tqdm.auto import tqdm

    for mname, motif in tqdm(motifs.items(), disable=not progress, desc="marginalize", unit="motif"):
        Xm = insert_motif(X, motif)
        p1, c1 = predict(model, Xm, ctl, **kw)
        e1 = expected_counts(p1, c1, model.signal_groups)
        dlc = c1 - c0
        after = e1.mean(dim=0)
        records.append({
            "motif": mname,
            "consensus": motif_consensus(motif),
            "delta_log_counts": float(dlc[:, group].mean()),
            "delta_log_counts_sd": float(dlc[:, group].std(unbiased=False)),
            "delta_log_counts_by_group": [float(v) for v in dlc.mean(dim=0)],
            "max_abs_delta_profile": float((after - before).abs().max()),
            "n_loci": int(X.shape[0]),
            "profile_before": before.numpy(),
            "profile_after": after.numpy(),
        })
    records.sort(key=lambda r: -r["delta_log_counts"])
    if output_dir is not None:
        _write_outputs(records, output_dir, name)
    return records


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:80]


def _write_outputs(records, output_dir, name):
    from strandwise.interpret.plots import plot_marginalization
    from strandwise.interpret.report import HTMLReport, write_tsv

    os.makedirs(output_dir, exist_ok=True)
    tsv = os.path.join(output_dir, f"{name}.tsv")
    write_tsv(records, tsv, MARGINALIZE_COLUMNS)
    rep = HTMLReport(f"Marginalization: motifs inserted into {records[0]['n_loci'] if records else 0} backgrounds")
    rep.add_text("Each motif's consensus is written over the centre of every background (negative) "
                 "sequence; rows are sorted by the mean change in predicted log counts.")
    rep.add_table(records, list(MARGINALIZE_COLUMNS), tsv=tsv)
    fig_dir = os.path.join(output_dir, "figures")
    for i, r in enumerate(records):
        png = os.path.join(fig_dir, f"{i:03d}_{_safe(r['motif'])}.png")
        plot_marginalization(r["profile_before"], r["profile_after"], title=r["motif"],
                             delta_log_counts=r["delta_log_counts"], path=png)
        r["plot"] = png
        rep.add_image(png, caption=f"{r['motif']} ({r['consensus']})")
    rep.write(os.path.join(output_dir, f"{name}.html"))
