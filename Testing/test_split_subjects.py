"""Splits by subject: every timepoint of a patient lies on one side (the cohort's ``subject`` column)."""

from __future__ import annotations

import pytest

from DMIFLib.training.split import patient_kfold, patient_split, validation_split


def cohort(n_subjects: int = 12) -> tuple[dict[str, int], dict[str, str]]:
    """Subjects S00.. with 1-3 timepoints each (BraTS-2024-style ids), alternate labels."""
    labels, groups = {}, {}
    for s in range(n_subjects):
        for t in range(1 + s % 3):
            pid = f"BraTS-GLI-{s:05d}-{100 + t}"
            labels[pid], groups[pid] = s % 2, f"BraTS-GLI-{s:05d}"
    return labels, groups


def sides_of_subjects(groups: dict[str, str], *sides: list[str]) -> dict[str, set[int]]:
    where: dict[str, set[int]] = {}
    for index, side in enumerate(sides):
        for pid in side:
            where.setdefault(groups[pid], set()).add(index)
    return where


@pytest.mark.parametrize("seed", range(5))
def test_no_subject_on_two_sides(seed):
    labels, groups = cohort()
    train, test = patient_split(labels, 0.25, seed, groups=groups)
    fit, val = validation_split({p: labels[p] for p in train}, 0.25, seed, groups=groups)
    assert sorted(fit + val + test) == sorted(labels)
    assert all(len(s) == 1 for s in sides_of_subjects(groups, fit, val, test).values())
    assert len({groups[p] for p in test}) == 2  # floor(0.25 * 6) subjects of each class
    for fold_train, fold_test in patient_kfold(labels, 3, seed, groups=groups):
        assert all(len(s) == 1 for s in sides_of_subjects(groups, fold_train, fold_test).values())


def test_one_row_per_subject_gives_the_patient_split():
    labels = {f"P{i:02d}": i % 2 for i in range(16)}
    singletons = {pid: pid for pid in labels}
    assert patient_split(labels, 0.25, 3, groups=singletons) == patient_split(labels, 0.25, 3)
    assert validation_split(labels, 0.25, 3, groups=singletons) == validation_split(labels, 0.25, 3)
    assert patient_kfold(labels, 4, 3, groups=singletons) == patient_kfold(labels, 4, 3)


def test_mixed_labels_and_split_column_across_a_subject_are_refused():
    labels, groups = cohort()
    with pytest.raises(ValueError, match="subject 'BraTS-GLI-00002' has rows labelled 0 and 1"):
        patient_split({**labels, "BraTS-GLI-00002-101": 1}, groups=groups)
    fixed = {pid: "train" for pid in labels} | {"BraTS-GLI-00002-100": "test"}
    with pytest.raises(ValueError, match="puts subject 'BraTS-GLI-00002' on both sides"):
        patient_split(labels, fixed=fixed, groups=groups)
