"""Choosing the decision cut-off on training data (Youden's J) to apply unchanged to the test data."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve


def youden_cutoff(y_true, score) -> float:
    """The score threshold maximising Youden's J = sensitivity + specificity - 1 (call positive if score >= it).

    Ties in J go to the highest threshold (fewest positive calls). Raises ValueError when one class is absent.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("Youden cut-off needs both classes in the data")
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1   # thresholds[0] is +inf (nothing called positive)
    return float(thresholds[best])
