"""`dmif preprocess --shard i/n` and `--merge`: the halves merge to the whole cohort; gaps and doubles refused."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from test_training_e2e import make_tiny_cohort

from DMIFLib.cli import main
from DMIFLib.cohort import read_cohort
from DMIFLib.preprocessing.shards import parse_shard, shard_cases

FAST = ["--no-register", "--no-n4", "--skull-strip", "none", "--no-qa"]


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The tiny cohort preprocessed whole and as two shards, and the shards merged."""
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    base = tmp_path_factory.mktemp("shards")
    assert main(["preprocess", "--cohort", str(cohort), "--out", str(base / "whole"), *FAST]) == 0
    for i in (1, 2):
        assert main(["preprocess", "--cohort", str(cohort), "--out", str(base / f"s{i}"), "--shard", f"{i}/2",
                     *FAST]) == 0
    assert main(["preprocess", "--merge", str(base / "s2"), str(base / "s1"), "--out", str(base / "merged")]) == 0
    return cohort, base


def test_the_halves_merge_to_the_whole_cohort(shards):
    cohort, base = shards
    whole, merged = read_cohort(base / "whole" / "cohort.csv"), read_cohort(base / "merged" / "cohort.csv")
    assert [c.patient_id for c in merged] == [c.patient_id for c in read_cohort(cohort)]
    halves = [{c.patient_id for c in read_cohort(base / f"s{i}" / "cohort.csv")} for i in (1, 2)]
    assert halves[0] and halves[1] and not halves[0] & halves[1]  # disjoint, both used
    for a, b in zip(whole, merged, strict=True):
        assert (a.label, a.split, a.modalities) == (b.label, b.split, b.modalities)
        assert b.images["t1c"].parent.parent.parent.name in ("s1", "s2")  # paths into the shard folders
        assert b.images["t1c"].read_bytes() == a.images["t1c"].read_bytes()  # the same preprocessing
    assert rows(base / "merged" / "cohort.csv")[0].keys() == rows(base / "whole" / "cohort.csv")[0].keys()
    assert (base / "merged" / "failures.tsv").read_text(encoding="utf-8").splitlines() == ["patient_id\tfile\tproblem"]
    info = json.loads((base / "s1" / "shard.json").read_text(encoding="utf-8"))
    assert (info["shard"], info["shards"], len(info["patients"])) == (1, 2, 8)


def test_the_split_follows_subjects_not_row_order(shards):
    cohort, _ = shards
    cases = read_cohort(cohort)
    for case, subject in zip(cases, ["A", "A", "B", "C", "C", "C", "D", "E"], strict=True):
        case.extra["subject"] = subject
    for n in (1, 2, 3, 5):
        parts = [shard_cases(cases, i, n) for i in range(1, n + 1)]
        assert sorted(c.patient_id for p in parts for c in p) == sorted(c.patient_id for c in cases)
        for part in parts:  # a subject's timepoints in one shard
            assert all(c.subject not in {d.subject for q in parts if q is not part for d in q} for c in part)
        assert [[c.patient_id for c in p] for p in parts] == \
            [[c.patient_id for c in sorted(p, key=cases.index)] for p in
             (shard_cases(list(reversed(cases)), i, n) for i in range(1, n + 1))]  # same split, any order
    with pytest.raises(ValueError, match="expected i/n"):
        parse_shard("2")
    with pytest.raises(ValueError, match="between 1 and n"):
        parse_shard("0/2")


def refused(args: list[str], capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_missing_doubled_and_foreign_shards_are_refused(shards, tmp_path, capsys):
    cohort, base = shards
    s1, s2 = str(base / "s1"), str(base / "s2")
    assert "shard 2/2 missing" in refused(["preprocess", "--merge", s1, "--out", str(tmp_path / "a")], capsys)
    assert "given twice" in refused(["preprocess", "--merge", s1, s1, s2, "--out", str(tmp_path / "b")], capsys)
    assert "not a folder written by dmif preprocess --shard" in refused(
        ["preprocess", "--merge", s1, str(base / "whole"), "--out", str(tmp_path / "c")], capsys)
    # a shard whose cohort.csv also lists a patient of the other shard: a duplicate
    doubled = tmp_path / "s2-doubled"
    shutil.copytree(s2, doubled)
    lines = (doubled / "cohort.csv").read_text(encoding="utf-8").splitlines()
    other = next(line for line in (base / "s1" / "cohort.csv").read_text(encoding="utf-8").splitlines()[1:])
    (doubled / "cohort.csv").write_text("\n".join([*lines, other.replace("cases/", f"{s1}/cases/")]) + "\n",
                                        encoding="utf-8")
    assert "is also in" in refused(["preprocess", "--merge", s1, str(doubled), "--out", str(tmp_path / "d")], capsys)
    # a shard that did not finish (a patient neither preprocessed nor failed): missing
    cut = tmp_path / "s2-cut"
    shutil.copytree(s2, cut)
    (cut / "cohort.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    assert "is incomplete" in refused(["preprocess", "--merge", s1, str(cut), "--out", str(tmp_path / "e")], capsys)
    # a shard of the same cohort made with other settings
    other_settings = tmp_path / "s2-margin"
    assert main(["preprocess", "--cohort", str(cohort), "--out", str(other_settings), "--shard", "2/2", *FAST,
                 "--margin-mm", "7"]) == 0
    capsys.readouterr()
    assert "differ from those of" in refused(["preprocess", "--merge", s1, str(other_settings), "--out",
                                              str(tmp_path / "f")], capsys)
    assert "between 1 and n" in refused(["preprocess", "--cohort", str(cohort), "--out", str(tmp_path / "g"),
                                         "--shard", "3/2"], capsys)
    assert not (tmp_path / "a" / "cohort.csv").exists()


def test_brats_adapter_input_is_sharded_too(tmp_path):
    from DMIFLib.synth import synthesize_cohort

    synth = read_cohort(synthesize_cohort(tmp_path / "synth", 3, seed=0, scale=0.4))
    root = tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    for number, case in enumerate(synth):
        case_id = f"BraTS-GLI-0000{number}-000"
        (root / case_id).mkdir(parents=True)
        for modality, tag in (("t1c", "t1c"), ("t2w", "t2w")):
            shutil.copyfile(case.images[modality], root / case_id / f"{case_id}-{tag}.nii.gz")
        shutil.copyfile(case.roi, root / case_id / f"{case_id}-seg.nii.gz")
    for i in (1, 2):
        assert main(["preprocess", "--brats", str(root), "--out", str(tmp_path / f"b{i}"), "--shard", f"{i}/2",
                     *FAST]) == 0
    assert [len(read_cohort(tmp_path / f"b{i}" / "cohort.csv")) for i in (1, 2)] == [2, 1]
    assert main(["preprocess", "--merge", str(tmp_path / "b1"), str(tmp_path / "b2"), "--out",
                 str(tmp_path / "bm")]) == 0
    assert [c.patient_id for c in read_cohort(tmp_path / "bm" / "cohort.csv")] == \
        [f"BraTS-GLI-0000{k}-000" for k in range(3)]
