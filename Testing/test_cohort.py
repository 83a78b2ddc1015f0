from pathlib import Path

import pytest

from DMIFLib.cohort import CohortError, read_cohort, write_cohort


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_paths_resolve_against_csv_folder_and_round_trip(tmp_path):
    csv_path = write(tmp_path / "cohort.csv",
                     "patient_id,t1c,t2w,roi,label,site\nP1,img/p1_t1c.nii.gz,img/p1_t2w.nii.gz,p1.mrk.json,1,A\n"
                     "P2,/abs/p2_t1c.nii.gz,,ras:0,0,0,10,10,10,0,B\n")
    cases = read_cohort(csv_path)
    assert cases[0].images["t1c"] == (tmp_path / "img/p1_t1c.nii.gz").resolve()
    assert cases[0].roi == str((tmp_path / "p1.mrk.json").resolve())
    assert cases[0].label == 1 and cases[0].extra == {"site": "A"}
    assert cases[1].modalities == ("t1c",)
    assert cases[1].roi_is_inline() and cases[1].label == 0

    out = write_cohort(cases, tmp_path / "copy" / "cohort.csv")
    again = read_cohort(out)
    assert [c.images for c in again] == [c.images for c in cases]
    assert [c.roi for c in again] == [c.roi for c in cases]


@pytest.mark.parametrize(("body", "message"), [
    ("patient_id,t1c,roi,label\nP1,a.nii,r.nii,2\n", "label '2' is not 0 or 1"),
    ("patient_id,t1c,roi\nP1,a.nii,r.nii\nP1,b.nii,r.nii\n", "appears twice"),
    ("patient_id,t1c\nP1,a.nii\n", "missing column(s) roi"),
    ("patient_id,t1c,roi,split\nP1,a.nii,r.nii,validation\n", "split 'validation'"),
    ("patient_id,t1c,roi\nP1,a.nii,\n", "empty 'roi'"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path, body, message):
    csv_path = write(tmp_path / "bad.csv", body)
    with pytest.raises(CohortError) as error:
        read_cohort(csv_path)
    assert message in str(error.value) and str(csv_path) in str(error.value)


def test_required_modalities_and_labels(tmp_path):
    csv_path = write(tmp_path / "c.csv", "patient_id,t1c,roi,label\nP1,a.nii,r.nii,\n")
    with pytest.raises(CohortError, match="modality column 't2w'"):
        read_cohort(csv_path, require_modalities=("t2w",))
    with pytest.raises(CohortError, match="empty label"):
        read_cohort(csv_path, require_labels=True)
