"""Patient-level splits: every slice of a patient lies on the same side (train, validation or test).

The paper (Chen et al. 2022, §2.1) puts 1/4 of each class in the test set; :func:`patient_split` does the
same per class, so that the class ratio is kept. A cohort's ``split`` column, when filled for every patient,
is honoured instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold

TEST_FRACTION = 0.25
"""Fraction of each class held out for testing (paper: 31 of 126 co-deleted, 35 of 141 not)."""


def _stratified_holdout(labels: Mapping[str, int], fraction: float, rng: np.random.Generator) -> list[str]:
    """Pick ``floor(fraction · n_c)`` patients of each class c (at least one when the class has two or more)."""
    held: list[str] = []
    for value in sorted(set(labels.values())):
        ids = sorted(pid for pid, label in labels.items() if label == value)
        n_held = int(np.floor(fraction * len(ids)))
        if n_held == 0 and len(ids) >= 2 and fraction > 0:
            n_held = 1
        held += [ids[i] for i in rng.permutation(len(ids))[:n_held]]
    return sorted(held)


def patient_split(labels: Mapping[str, int], test_fraction: float = TEST_FRACTION, seed: int = 0,
                  fixed: Mapping[str, str | None] | None = None) -> tuple[list[str], list[str]]:
    """Split patients into (train, test) ids, stratified by label.

    ``labels``: patient id -> 0/1. ``fixed``: patient id -> ``"train"``/``"test"``/None (a cohort's ``split``
    column); when every patient has one it is used as-is, otherwise ``test_fraction`` of each class goes to
    test, drawn with ``seed``. Both lists are sorted; raises ``ValueError`` when a side would lack a class.
    """
    if fixed and all(fixed.get(pid) for pid in labels):
        test = sorted(pid for pid in labels if fixed[pid] == "test")
    else:
        test = _stratified_holdout(labels, test_fraction, np.random.default_rng(seed))
    test_set = set(test)
    train = sorted(pid for pid in labels if pid not in test_set)
    for name, side in (("train", train), ("test", test)):
        classes = {labels[pid] for pid in side}
        if classes != {0, 1}:
            raise ValueError(f"the {name} split has {len(side)} patient(s) and lacks class(es) "
                             f"{sorted({0, 1} - classes)}; a cohort needs both labels on both sides")
    return train, test


def validation_split(labels: Mapping[str, int], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Carve a stratified validation set out of training patients: (train, validation) ids.

    With ``fraction`` 0, or fewer than two patients in a class, the validation list is empty.
    """
    if fraction <= 0 or min(sum(1 for v in labels.values() if v == c) for c in (0, 1)) < 2:
        return sorted(labels), []
    val = _stratified_holdout(labels, fraction, np.random.default_rng(seed + 1))
    val_set = set(val)
    return sorted(pid for pid in labels if pid not in val_set), val


def patient_kfold(labels: Mapping[str, int], k: int = 4, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Stratified k-fold over patients (scikit-learn ``StratifiedKFold``, shuffled with ``seed``).

    Returns ``k`` pairs (train ids, test ids); every patient is in exactly one test fold.
    """
    ids: Sequence[str] = sorted(labels)
    y = np.array([labels[pid] for pid in ids])
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(ids)), y)
    return [(sorted(ids[i] for i in tr), sorted(ids[i] for i in te)) for tr, te in folds]
