"""Sequence-classification metrics: accuracy, MCC, F1, AUROC (from logits or hard labels).

Formulas (K classes, confusion matrix ``C[i, j]`` = true i predicted j, n = Σ C):

* accuracy = trace(C) / n;
* MCC (Gorodkin's K-class form) = (c·s − Σ_k p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)) with
  c = trace(C), s = n, p_k = column sums, t_k = row sums; 0 when a denominator term is 0 (sklearn);
  for K = 2 it equals the usual binary MCC;
* F1: binary = F1 of class 1; K > 2 = macro average of per-class F1;
* AUROC: binary from the class-1 score (softmax), ties by average ranks; K > 2 = macro
  one-vs-rest. NaN when a class is absent.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["confusion_matrix", "mcc", "f1_score", "classification_metrics"]


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mcc(y_true, y_pred, num_classes: int | None = None) -> float:
    """Matthews correlation coefficient (K-class), 0 for a degenerate confusion matrix."""
    k = num_classes or int(max(np.max(y_true), np.max(y_pred)) + 1)
    C = confusion_matrix(y_true, y_pred, k).astype(np.float64)
    t, p, c, s = C.sum(1), C.sum(0), np.trace(C), C.sum()
    den = math.sqrt(max(s * s - (p * p).sum(), 0.0)) * math.sqrt(max(s * s - (t * t).sum(), 0.0))
    return 0.0 if den == 0 else float((c * s - (p * t).sum()) / den)


def f1_score(y_true, y_pred, num_classes: int | None = None) -> float:
    """Binary F1 of class 1, or macro F1 for more classes (0 for a class never predicted nor true)."""
    k = num_classes or int(max(np.max(y_true), np.max(y_pred)) + 1)
    C = confusion_matrix(y_true, y_pred, k).astype(np.float64)
    tp = np.diag(C)
    den = C.sum(0) + C.sum(1)
    f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1e-300), 0.0)
    return float(f1[1]) if k == 2 else float(f1.mean())


def classification_metrics(logits, labels) -> dict:
    """``{accuracy, mcc, f1, auroc, n}`` from logits ``(n, K)`` and integer labels ``(n,)``."""
    from strandwise.evaluate.metrics import auroc

    logits = torch.as_tensor(logits).float()
    labels = torch.as_tensor(labels).long().reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (n, K) with n = len(labels) = {labels.shape[0]}; got {tuple(logits.shape)}")
    k = logits.shape[1]
    pred = logits.argmax(1)
    y, yp = labels.numpy(), pred.numpy()
    prob = torch.softmax(logits, 1)
    if k == 2:
        au = auroc(prob[:, 1], labels == 1)
    else:
        vals = [auroc(prob[:, c], labels == c) for c in range(k)]
        vals = [v for v in vals if not math.isnan(v)]
        au = float(np.mean(vals)) if vals else math.nan
    return {
        "accuracy": float((pred == labels).double().mean()) if len(labels) else math.nan,
        "mcc": mcc(y, yp, k),
        "f1": f1_score(y, yp, k),
        "auroc": au,
        "n": int(len(labels)),
    }
