"""Patient-level splits: stratified 1/4 test per class, the cohort's split column, k-fold, validation."""

import pytest

from DMIFLib.training.split import patient_kfold, patient_split, validation_split


def _labels(n_pos, n_neg):
    return {**{f"P{i:03d}": 1 for i in range(n_pos)}, **{f"N{i:03d}": 0 for i in range(n_neg)}}


def test_paper_split_holds_out_a_quarter_of_each_class():
    labels = _labels(126, 141)  # the paper's cohort: 31 of 126 and 35 of 141 go to test
    train, test = patient_split(labels, seed=3)
    assert sum(labels[p] for p in test) == 31 and sum(1 - labels[p] for p in test) == 35
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(labels)
    assert patient_split(labels, seed=3) == (train, test)
    assert patient_split(labels, seed=4)[1] != test


def test_split_column_is_honoured_and_both_classes_are_required():
    labels = _labels(3, 3)
    fixed = {pid: "test" if pid in ("P000", "N000") else "train" for pid in labels}
    assert patient_split(labels, fixed=fixed)[1] == ["N000", "P000"]
    with pytest.raises(ValueError, match="lacks class"):
        patient_split(labels, fixed={pid: "test" if pid.startswith("P") else "train" for pid in labels})


def test_kfold_puts_every_patient_in_exactly_one_test_fold():
    labels = _labels(10, 14)
    folds = patient_kfold(labels, k=4, seed=0)
    tests = [pid for _, test in folds for pid in test]
    assert sorted(tests) == sorted(labels)
    for train, test in folds:
        assert set(train).isdisjoint(test)
        assert {labels[p] for p in test} == {0, 1}


def test_validation_split_is_carved_from_training_patients():
    labels = _labels(12, 12)
    train, val = validation_split(labels, 0.25, seed=0)
    assert len(val) == 6 and set(train).isdisjoint(val) and sum(labels[p] for p in val) == 3
    assert validation_split(_labels(1, 5), 0.25) == (sorted(_labels(1, 5)), [])
