"""Profile and count metrics (spec ``cherimoya.md`` §6), exactly as defined there.

Profile metrics use a per-channel softmax over length and are returned per (example, channel);
count metrics are per signal group, across examples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from strandwise.train.losses import count_targets, mnll
from strandwise.train.stats import ordinal_ranks, pearson_corr, spearman_corr

__all__ = [
    "pearson_corr",
    "spearman_corr",
    "ordinal_ranks",
    "profile_mnll",
    "profile_jsd",
    "profile_pearson",
    "profile_spearman",
    "count_pearson",
    "count_spearman",
    "count_mse",
    "gaussian_smooth",
    "auroc",
    "auprc",
    "calculate_performance_measures",
    "GROUP_METRIC_COLUMNS",
    "group_performance_table",
]


def profile_mnll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-channel MNLL of counts under ``log_softmax(logits)`` over length → ``(n, O)``."""
    return mnll(torch.log_softmax(logits.float(), dim=-1), y.float())


def profile_jsd(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence (natural log, no square root) → ``(n, O)``; NaN for zero rows."""
    p = torch.softmax(logits.double(), dim=-1)
    y = y.double()
    tot = y.sum(dim=-1, keepdim=True)
    q = y / tot  # NaN where tot == 0, which propagates to the row's JSD as documented
    m = 0.5 * (p + q)

    def kl(a, b):
        terms = torch.where((a > 0) & (b > 0), a * torch.log(a / b), torch.zeros_like(a))
        return terms.sum(dim=-1)

    jsd = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    jsd = torch.where(tot.squeeze(-1) > 0, jsd, torch.full_like(jsd, math.nan))
    return jsd.float()


def profile_pearson(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson over length between ``softmax(logits)`` and ``y`` → ``(n, O)``."""
    return pearson_corr(torch.softmax(logits.float(), dim=-1), y.float(), dim=-1)


def profile_spearman(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman over length between ``softmax(logits)`` and ``y`` → ``(n, O)``."""
    return spearman_corr(torch.softmax(logits.float(), dim=-1), y.float(), dim=-1)


def _count_pair(logcounts, y, signal_groups):
    if signal_groups is not None and len(signal_groups) == logcounts.shape[1]:
        target = count_targets(y, signal_groups)
    else:  # legacy: total over all channels compared with every output
        total = torch.log1p(y.float().sum(dim=(1, 2)))
        target = total[:, None].expand_as(logcounts)
    return logcounts.float(), target


def count_pearson(logcounts, y, signal_groups=None) -> torch.Tensor:
    """Per group, across examples: Pearson(ŷ_g, log(T_g + 1)) → ``(G,)``."""
    pred, target = _count_pair(logcounts, y, signal_groups)
    return pearson_corr(pred.T, target.T, dim=-1)


def count_spearman(logcounts, y, signal_groups=None) -> torch.Tensor:
    """Per group, across examples: Spearman(ŷ_g, log(T_g + 1)) → ``(G,)``."""
    pred, target = _count_pair(logcounts, y, signal_groups)
    return spearman_corr(pred.T, target.T, dim=-1)


def count_mse(logcounts, y, signal_groups=None) -> torch.Tensor:
    """Per group: mean over examples of ``(ŷ_g − log(T_g + 1))²`` → ``(G,)``."""
    pred, target = _count_pair(logcounts, y, signal_groups)
    return ((pred - target) ** 2).mean(dim=0)


def gaussian_smooth(x: torch.Tensor, sigma: float = 7.0, width: int = 81, batch_size: int = 200) -> torch.Tensor:
    """Normalised Gaussian smoothing along length (``padding='same'``, depthwise), in batches."""
    half = width // 2
    t = torch.arange(width, dtype=torch.float64) - half
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).float()
    out = []
    for chunk in torch.split(x.float(), batch_size):
        n, c, L = chunk.shape
        w = k.to(chunk.device).view(1, 1, width).expand(c, 1, width)
        out.append(F.conv1d(chunk, w, padding="same", groups=c))
    return torch.cat(out) if out else x.float()


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (ties handled by average ranks); NaN if one class is absent."""
    scores = scores.double().reshape(-1)
    labels = labels.reshape(-1).bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    from scipy.stats import rankdata

    ranks = torch.from_numpy(rankdata(scores.cpu().numpy()))
    return float((ranks[labels.cpu()].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision (step-wise area under precision–recall); NaN if no positives."""
    scores = scores.double().reshape(-1).cpu()
    labels = labels.reshape(-1).bool().cpu()
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.numel():
        return math.nan if n_pos == 0 else 1.0
    order = torch.argsort(scores, descending=True, stable=True)
    hits = labels[order].double()
    tp = torch.cumsum(hits, 0)
    precision = tp / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision * hits).sum() / n_pos)


def calculate_performance_measures(logits, y, logcounts, signal_groups=None, labels=None,
                                   smooth_true=False, smooth_pred=False):
    """All §6 measures as a dict of tensors.

    Profile measures are ``(n, O)``, count measures ``(G,)``. With ``labels`` the same measures are
    also computed on peaks only (``within_peak_`` prefix) plus ``auroc``/``auprc`` of ``ŷ[:, 0]``.
    """
    y_eval = gaussian_smooth(y) if smooth_true else y.float()
    logits_eval = logits.float()
    if smooth_pred:
        logits_eval = torch.log(gaussian_smooth(torch.softmax(logits_eval, dim=-1)).clamp_min(1e-30))
    out = {
        "profile_mnll": profile_mnll(logits.float(), y.float()),
        "profile_jsd": profile_jsd(logits_eval, y_eval),
        "profile_pearson": profile_pearson(logits_eval, y_eval),
        "profile_spearman": profile_spearman(logits_eval, y_eval),
        "count_pearson": count_pearson(logcounts, y, signal_groups),
        "count_spearman": count_spearman(logcounts, y, signal_groups),
        "count_mse": count_mse(logcounts, y, signal_groups),
    }
    if labels is not None:
        mask = labels.reshape(-1).bool()
        if mask.any():
            inner = calculate_performance_measures(
                logits[mask], y[mask], logcounts[mask], signal_groups, None, smooth_true, smooth_pred
            )
            out.update({f"within_peak_{k}": v for k, v in inner.items()})
        out["auroc"] = auroc(logcounts[:, 0], labels)
        out["auprc"] = auprc(logcounts[:, 0], labels)
    return out


#: Columns of the per-group evaluation table (spec §6, "Output").
GROUP_METRIC_COLUMNS = (
    "profile_mnll", "profile_jsd", "profile_pearson", "profile_spearman",
    "count_pearson", "count_spearman", "count_mse",
    "all_count_pearson", "all_count_spearman", "all_count_mse", "auroc", "auprc",
)


def group_performance_table(logits, y, logcounts, signal_groups, labels=None) -> list[dict]:
    """One row per signal group, as in the ``evaluate`` TSV.

    Profile and count columns are computed on peaks (``labels == 1``; all rows without labels);
    ``all_count_*`` on peaks + negatives; ``auroc``/``auprc`` of each group's ``ŷ_g`` vs labels
    (NaN without negatives). Profile columns are the mean over loci × the group's channels, NaN
    rows (zero-count loci for JSD) ignored.
    """
    groups = list(signal_groups)
    n = y.shape[0]
    mask = torch.ones(n, dtype=torch.bool) if labels is None else labels.reshape(-1).bool().cpu()
    peaks = calculate_performance_measures(logits[mask], y[mask], logcounts[mask], groups)
    everything = calculate_performance_measures(logits, y, logcounts, groups)
    rows, start = [], 0
    for gi, size in enumerate(groups):
        chans = slice(start, start + size)
        row = {"group": gi}
        for key in ("profile_mnll", "profile_jsd", "profile_pearson", "profile_spearman"):
            row[key] = float(torch.nanmean(peaks[key][:, chans].double())) if mask.any() else math.nan
        for key in ("count_pearson", "count_spearman", "count_mse"):
            row[key] = float(peaks[key][gi]) if mask.any() else math.nan
            row["all_" + key] = float(everything[key][gi])
        has_both = labels is not None and bool(mask.any()) and bool((~mask).any())
        row["auroc"] = auroc(logcounts[:, gi], mask) if has_both else math.nan
        row["auprc"] = auprc(logcounts[:, gi], mask) if has_both else math.nan
        rows.append(row)
        start += size
    return rows
