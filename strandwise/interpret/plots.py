"""Pictures for interpretation: attribution logos, predicted vs observed profiles, motif matches.

All functions draw with matplotlib (Agg backend, no display needed) and, given ``path``, write a PNG
atomically and close the figure; without ``path`` they return the figure.
"""

from __future__ import annotations

import os

import numpy as np

from strandwise.io.atomic import atomic_path

__all__ = [
    "draw_logo",
    "plot_attribution_logo",
    "plot_profiles",
    "plot_motif_match",
    "plot_marginalization",
    "plot_variant_profiles",
    "BASE_COLORS",
]

#: Conventional logo colours for A, C, G, T.
BASE_COLORS = {"A": "#109648", "C": "#255C99", "G": "#F7B32B", "T": "#D62839"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    if path is None:
        return fig
    plt = _plt()
    path = os.fspath(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _glyph_paths():
    # Cache one glyph outline per base, normalised to the unit square.
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    font = FontProperties(family="DejaVu Sans", weight="bold")
    out = {}
    for base in "ACGT":
        path = TextPath((0, 0), base, size=1, prop=font)
        ext = path.get_extents()
        out[base] = (path, ext)
    return out


_GLYPHS = None


def draw_logo(ax, matrix, start: int = 0, alphabet: str = "ACGT") -> None:
    """Draw a logo of ``matrix (4, W)`` on ``ax``: each letter's height is its signed value.

    Positive letters stack upwards from 0 (smallest at the bottom), negative ones downwards. The
    x axis runs from ``start`` to ``start + W``.
    """
    global _GLYPHS
    from matplotlib.patches import PathPatch
    from matplotlib.transforms import Affine2D

    if _GLYPHS is None:
        _GLYPHS = _glyph_paths()
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != len(alphabet):
        raise ValueError(f"logo matrix must have shape ({len(alphabet)}, W); got {m.shape}")
    for j in range(m.shape[1]):
        col = m[:, j]
        pos_base = neg_base = 0.0
        for i in np.argsort(np.abs(col)):
            h = col[i]
            if h == 0 or not np.isfinite(h):
                continue
            path, ext = _GLYPHS[alphabet[i]]
            y0 = pos_base if h > 0 else neg_base + h
            t = (Affine2D()
                 .translate(-ext.x0, -ext.y0)
                 .scale(0.9 / ext.width, abs(h) / ext.height)
                 .translate(start + j + 0.05, y0))
            ax.add_patch(PathPatch(t.transform_path(path), facecolor=BASE_COLORS[alphabet[i]], edgecolor="none"))
            if h > 0:
                pos_base += h
            else:
                neg_base += h
    lo = min(0.0, float(np.minimum(m, 0).sum(0).min())) if m.size else 0.0
    hi = max(0.0, float(np.maximum(m, 0).sum(0).max())) if m.size else 1.0
    pad = 0.05 * (hi - lo or 1.0)
    ax.set_xlim(start, start + m.shape[1])
    ax.set_ylim(lo - pad, hi + pad)
    ax.axhline(0, color="0.6", lw=0.5)


def plot_attribution_logo(ohe, attr, start: int = 0, end: int | None = None, title: str = "",
                          offset: int = 0, seqlets=None, path=None):
    """Attribution logo (contributions ``attr × ohe``) over ``[start, end)`` of one locus.

    Parameters
    ----------
    ohe, attr : array, shape (4, W)
    start, end : int
        Window offsets to draw.
    offset : int
        Added to the x labels (e.g. the genome coordinate of offset 0).
    seqlets : list of dict, optional
        Seqlets of this locus (``start``, ``end``, optional ``motif``) shaded on the logo.
    path : str, optional
    """
    plt = _plt()
    ohe = np.asarray(ohe, dtype=np.float64)
    attr = np.asarray(attr, dtype=np.float64)
    end = ohe.shape[-1] if end is None else end
    contrib = (ohe * attr)[:, start:end]
    fig, ax = plt.subplots(figsize=(max(6, 0.12 * (end - start)), 2.2))
    draw_logo(ax, contrib, start=start + offset)
    for s in seqlets or ():
        if s["end"] <= start or s["start"] >= end:
            continue
        ax.axvspan(s["start"] + offset, s["end"] + offset, color="0.85", zorder=-1)
        label = s.get("motif")
        if label and label != "NA":
            ax.text((s["start"] + s["end"]) / 2 + offset, ax.get_ylim()[1], label, ha="center",
                    va="bottom", fontsize=7)
    ax.set_ylabel("contribution")
    ax.set_title(title, fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _finish(fig, path)


def plot_profiles(predicted, observed=None, title: str = "", labels=None, offset: int = 0, path=None):
    """Predicted (and observed) profiles, one panel per channel.

    Parameters
    ----------
    predicted : array, shape (O, L_out)
        Expected counts (or probabilities) per position.
    observed : array, shape (O, L_out), optional
        Read counts on the same positions.
    labels : list of str, optional
        Channel names.
    offset : int
        Added to the x axis.
    """
    plt = _plt()
    pred = np.atleast_2d(np.asarray(predicted, dtype=np.float64))
    obs = None if observed is None else np.atleast_2d(np.asarray(observed, dtype=np.float64))
    n = pred.shape[0]
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n), sharex=True, squeeze=False)
    x = np.arange(pred.shape[1]) + offset
    for c in range(n):
        ax = axes[c, 0]
        if obs is not None:
            ax.bar(x, obs[c], width=1.0, color="0.7", label="observed")
        ax.plot(x, pred[c], color="#D62839", lw=1.0, label="predicted")
        ax.set_ylabel(labels[c] if labels else f"channel {c}", fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0, 0].legend(fontsize=7, frameon=False, loc="upper right")
    axes[0, 0].set_title(title, fontsize=9)
    return _finish(fig, path)


def plot_motif_match(query, target, query_name: str = "seqlets", target_name: str = "motif",
                     p_value: float | None = None, path=None):
    """Two logos one above the other: a query CWM/PWM and its database match.

    ``query`` and ``target`` are ``(4, w)``; PWMs (columns summing to 1) are drawn in bits.
    """
    plt = _plt()

    def _bits(m):
        m = np.asarray(m, dtype=np.float64)
        if np.all(m >= 0) and np.allclose(m.sum(0), 1, atol=1e-3):
            p = np.clip(m, 1e-9, 1)
            ic = 2 + (p * np.log2(p)).sum(0)
            return m * ic
        return m

    fig, axes = plt.subplots(2, 1, figsize=(max(4, 0.35 * max(np.shape(query)[1], np.shape(target)[1])), 3.2))
    draw_logo(axes[0], _bits(query))
    axes[0].set_title(query_name, fontsize=9)
    draw_logo(axes[1], _bits(target))
    t = target_name if p_value is None else f"{target_name}  (tomtom p = {p_value:.2g})"
    axes[1].set_title(t, fontsize=9)
    for ax in axes:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    return _finish(fig, path)


def plot_marginalization(before, after, title: str = "", delta_log_counts: float | None = None, path=None):
    """Mean predicted profile of background sequences before and after inserting a motif.

    ``before``, ``after``: ``(O, L_out)`` mean expected counts.
    """
    plt = _plt()
    before = np.atleast_2d(np.asarray(before, dtype=np.float64))
    after = np.atleast_2d(np.asarray(after, dtype=np.float64))
    n = before.shape[0]
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.8 * n), sharex=True, squeeze=False)
    x = np.arange(before.shape[1]) - before.shape[1] // 2
    for c in range(n):
        ax = axes[c, 0]
        ax.plot(x, before[c], color="0.5", lw=1, label="background")
        ax.plot(x, after[c], color="#255C99", lw=1, label="with motif")
        ax.set_ylabel(f"channel {c}", fontsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1, 0].set_xlabel("position relative to the inserted motif (bp)")
    axes[0, 0].legend(fontsize=7, frameon=False)
    if delta_log_counts is not None:
        title = f"{title}  (Δ log counts = {delta_log_counts:+.3f})"
    axes[0, 0].set_title(title, fontsize=9)
    return _finish(fig, path)


def plot_variant_profiles(ref, alt, title: str = "", variant_index: int | None = None, path=None):
    """Predicted profiles for the reference and the alternate allele, with their difference."""
    plt = _plt()
    ref = np.atleast_2d(np.asarray(ref, dtype=np.float64))
    alt = np.atleast_2d(np.asarray(alt, dtype=np.float64))
    n = ref.shape[0]
    fig, axes = plt.subplots(n + 1, 1, figsize=(8, 1.6 * (n + 1)), sharex=True, squeeze=False)
    x = np.arange(ref.shape[1])
    for c in range(n):
        ax = axes[c, 0]
        ax.plot(x, ref[c], color="0.4", lw=1, label="ref")
        ax.plot(x, alt[c], color="#D62839", lw=1, label="alt")
        ax.set_ylabel(f"channel {c}", fontsize=8)
    axes[-1, 0].plot(x, (alt - ref).sum(0), color="k", lw=1)
    axes[-1, 0].set_ylabel("alt − ref", fontsize=8)
    if variant_index is not None:
        for ax in axes[:, 0]:
            ax.axvline(variant_index, color="#255C99", lw=0.6, ls="--")
    axes[0, 0].legend(fontsize=7, frameon=False)
    axes[0, 0].set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("output position")
    return _finish(fig, path)
