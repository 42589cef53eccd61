"""Pictures a person would rather look at than read: training curves, profiles, count scatter.

All writers use matplotlib's Agg backend (no display needed) and write PNGs atomically.
"""

from __future__ import annotations

import math

import numpy as np

from strandwise.io.atomic import atomic_path

__all__ = ["plot_training_curves", "plot_profiles", "plot_count_scatter"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_training_curves(history: list[dict], path) -> None:
    """Losses and validation Pearsons per epoch, from the ``fit`` history rows."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["train_mnll"] for h in history], "o-", label="train")
    axes[0].plot(epochs, [h.get("val_mnll", math.nan) for h in history], "o-", label="validation")
    axes[0].set_title("profile MNLL")
    axes[1].plot(epochs, [h["train_count_mse"] for h in history], "o-", label="train")
    axes[1].plot(epochs, [h.get("val_count_mse", math.nan) for h in history], "o-", label="validation")
    axes[1].set_title("count MSE (log1p)")
    axes[2].plot(epochs, [h.get("val_profile_pearson", math.nan) for h in history], "o-", label="profile Pearson")
    axes[2].plot(epochs, [h.get("val_count_pearson", math.nan) for h in history], "o-", label="count Pearson")
    axes[2].set_title("validation (peaks)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_profiles(observed, predicted, titles, path, track_names=None) -> None:
    """Observed counts vs predicted expected counts for a few loci.

    Parameters
    ----------
    observed, predicted : array, shape (n, O, L)
    titles : list of str, length n
    """
    plt = _pyplot()
    observed = np.asarray(observed)
    predicted = np.asarray(predicted)
    n, O, _ = observed.shape
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.1 * n), squeeze=False)
    fig.subplots_adjust(hspace=0.55)
    for i in range(n):
        ax = axes[i, 0]
        for o in range(O):
            sign = -1.0 if (O == 2 and o == 1) else 1.0  # draw a stranded pair above/below zero
            name = track_names[o] if track_names else f"track {o}"
            ax.plot(sign * observed[i, o], lw=0.8, color="0.35", label=f"observed {name}" if i == 0 else None)
            ax.plot(sign * predicted[i, o], lw=1.1, color=f"C{o}", label=f"predicted {name}" if i == 0 else None)
        ax.set_title(titles[i], fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("position in output window (bp)")
    _save(fig, path)


def plot_count_scatter(observed_log, predicted_log, path, title="") -> None:
    """Scatter of predicted vs observed ``log(1 + counts)`` with the Pearson r in the title."""
    plt = _pyplot()
    x = np.asarray(observed_log, dtype=float).ravel()
    y = np.asarray(predicted_log, dtype=float).ravel()
    r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else math.nan
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.scatter(x, y, s=4, alpha=0.5)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
    ax.set_xlabel("observed log(1 + count)")
    ax.set_ylabel("predicted log(1 + count)")
    ax.set_title(f"{title} Pearson r = {r:.3f}".strip())
    _save(fig, path)
