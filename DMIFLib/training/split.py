"""Patient-level splits: every slice of a patient lies on the same side (train, validation or test).

The paper (Chen et al. 2022, §2.1) puts 1/4 of each class in the test set; :func:`patient_split` does the
same per class, so that the class ratio is kept. A cohort's ``split`` column, when filled for every patient,
is honoured instead.

``groups`` (patient id -> subject, the cohort's ``subject`` column) keeps every timepoint of a subject on one
side: the draw is made over subjects (a subject's label is its rows' label), then expanded to their rows. Without
``groups``, or with one row per subject, the result is the same as a draw over patients.
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


def _subjects(labels: Mapping[str, int], groups: Mapping[str, str] | None
              ) -> tuple[dict[str, int], dict[str, list[str]]]:
    """(subject -> label, subject -> its patient ids); raises ``ValueError`` for a subject with both labels."""
    members: dict[str, list[str]] = {}
    for pid in sorted(labels):
        members.setdefault((groups or {}).get(pid) or pid, []).append(pid)
    subject_labels = {}
    for subject, pids in members.items():
        found = {labels[pid] for pid in pids}
        if len(found) > 1:
            raise ValueError(f"subject '{subject}' has rows labelled 0 and 1 ({', '.join(pids)}); a subject's "
                             "timepoints need one label")
        subject_labels[subject] = found.pop()
    return subject_labels, members


def _grouped_holdout(labels: Mapping[str, int], fraction: float, rng: np.random.Generator,
                     groups: Mapping[str, str] | None) -> list[str]:
    """:func:`_stratified_holdout` over subjects, returned as their (sorted) patient ids."""
    subject_labels, members = _subjects(labels, groups)
    return sorted(pid for subject in _stratified_holdout(subject_labels, fraction, rng) for pid in members[subject])


def patient_split(labels: Mapping[str, int], test_fraction: float = TEST_FRACTION, seed: int = 0,
                  fixed: Mapping[str, str | None] | None = None,
                  groups: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Split patients into (train, test) ids, stratified by label.

    ``labels``: patient id -> 0/1. ``fixed``: patient id -> ``"train"``/``"test"``/None (a cohort's ``split``
    column); when every patient has one it is used as-is, otherwise ``test_fraction`` of each class goes to
    test, drawn with ``seed`` (over subjects when ``groups`` is given). Both lists are sorted; raises
    ``ValueError`` when a side would lack a class or a subject would lie on both sides.
    """
    if fixed and all(fixed.get(pid) for pid in labels):
        test = sorted(pid for pid in labels if fixed[pid] == "test")
        _, members = _subjects(labels, groups)
        for subject, pids in members.items():
            if len({fixed[pid] for pid in pids}) > 1:
                raise ValueError(f"the split column puts subject '{subject}' on both sides ({', '.join(pids)})")
    else:
        test = _grouped_holdout(labels, test_fraction, np.random.default_rng(seed), groups)
    test_set = set(test)
    train = sorted(pid for pid in labels if pid not in test_set)
    for name, side in (("train", train), ("test", test)):
        classes = {labels[pid] for pid in side}
        if classes != {0, 1}:
            raise ValueError(f"the {name} split has {len(side)} patient(s) and lacks class(es) "
                             f"{sorted({0, 1} - classes)}; a cohort needs both labels on both sides")
    return train, test


def validation_split(labels: Mapping[str, int], fraction: float, seed: int = 0,
                     groups: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Carve a stratified validation set out of training patients: (train, validation) ids.

    With ``fraction`` 0, or fewer than two patients (subjects, with ``groups``) in a class, the validation list
    is empty.
    """
    subject_labels, _ = _subjects(labels, groups)
    if fraction <= 0 or min(sum(1 for v in subject_labels.values() if v == c) for c in (0, 1)) < 2:
        return sorted(labels), []
    val = _grouped_holdout(labels, fraction, np.random.default_rng(seed + 1), groups)
    val_set = set(val)
    return sorted(pid for pid in labels if pid not in val_set), val


def patient_kfold(labels: Mapping[str, int], k: int = 4, seed: int = 0,
                  groups: Mapping[str, str] | None = None) -> list[tuple[list[str], list[str]]]:
    """Stratified k-fold over patients (scikit-learn ``StratifiedKFold``, shuffled with ``seed``), over subjects
    when ``groups`` is given (a subject's rows share a fold).

    Returns ``k`` pairs (train ids, test ids); every patient is in exactly one test fold.
    """
    subject_labels, members = _subjects(labels, groups)
    ids: Sequence[str] = sorted(subject_labels)
    y = np.array([subject_labels[s] for s in ids])
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(ids)), y)
    return [(sorted(p for i in tr for p in members[ids[i]]), sorted(p for i in te for p in members[ids[i]]))
            for tr, te in folds]
