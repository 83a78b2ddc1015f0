"""Statistics: confusion metrics, DeLong AUC variance / CI / paired test, Youden cut-off, clustered bootstrap."""

from DMIFLib.stats.bootstrap import cluster_bootstrap_ci
from DMIFLib.stats.confusion import METRIC_NAMES, binary_metrics, confusion_counts
from DMIFLib.stats.cutoff import youden_cutoff
from DMIFLib.stats.delong import auc_ci, auc_variance, bonferroni, delong_covariance, delong_test

__all__ = [
    "METRIC_NAMES",
    "auc_ci",
    "auc_variance",
    "binary_metrics",
    "bonferroni",
    "cluster_bootstrap_ci",
    "confusion_counts",
    "delong_covariance",
    "delong_test",
    "youden_cutoff",
]
