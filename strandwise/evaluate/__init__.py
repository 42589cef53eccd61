"""Evaluation: spec §6 metrics, batched prediction with RC averaging, and plots."""

from strandwise.evaluate.metrics import (
    GROUP_METRIC_COLUMNS,
    auprc,
    auroc,
    calculate_performance_measures,
    count_mse,
    count_pearson,
    count_spearman,
    gaussian_smooth,
    group_performance_table,
    profile_jsd,
    profile_mnll,
    profile_pearson,
    profile_spearman,
)
from strandwise.evaluate.predict import expected_counts, predict, reverse_complement_inputs

__all__ = [
    "GROUP_METRIC_COLUMNS",
    "auprc",
    "auroc",
    "calculate_performance_measures",
    "count_mse",
    "count_pearson",
    "count_spearman",
    "expected_counts",
    "gaussian_smooth",
    "group_performance_table",
    "predict",
    "profile_jsd",
    "profile_mnll",
    "profile_pearson",
    "profile_spearman",
    "reverse_complement_inputs",
]

from strandwise.evaluate.classification import classification_metrics, confusion_matrix, f1_score, mcc

__all__ += ["classification_metrics", "confusion_matrix", "f1_score", "mcc"]
