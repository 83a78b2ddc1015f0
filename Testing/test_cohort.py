from pathlib import Path

import pytest

from DMIFLib.cohort import CohortError, read_cohort, reference_modality, write_cohort


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
    ("patient_id,dwi,roi\nP1,a.nii,r.nii\n", "no modality column (t1c, t2w, flair, t1)"),
    ("patient_id,t1c,flair,roi\nP1,,,r.nii\n", "(P1): no image path (columns t1c, flair are empty)"),
    ("patient_id,t1c,roi,roi_labels\nP1,a.nii,r.nii,1;x\n", "roi labels '1;x' are not comma-separated"),
    ("patient_id,t1c,roi,roi_labels\nP1,a.nii,r.nii,0\n", "must be positive"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path, body, message):
    csv_path = write(tmp_path / "bad.csv", body)
    with pytest.raises(CohortError) as error:
        read_cohort(csv_path)
    assert message in str(error.value) and str(csv_path) in str(error.value)


def test_required_modalities_and_labels(tmp_path):
    csv_path = write(tmp_path / "c.csv", "patient_id,t1c,roi,label\nP1,a.nii,r.nii,\n")
    with pytest.raises(CohortError, match=r"the model needs modalities t2w; column\(s\) t2w missing \(found t1c\)"):
        read_cohort(csv_path, require_modalities=("t2w",))
    with pytest.raises(CohortError, match="empty label"):
        read_cohort(csv_path, require_labels=True)


def test_any_modality_set_reference_subject_and_roi_labels(tmp_path):
    csv_path = write(tmp_path / "c.csv", "patient_id,flair,t1,roi,subject,roi_labels\n"
                                         "P1-100,f.nii,t.nii,r.nii,P1,\"1,2,3\"\nP2,f2.nii,,r.nii,,\n")
    first, second = read_cohort(csv_path)
    assert first.modalities == ("flair", "t1") and first.reference == "t1" and second.reference == "flair"
    assert (first.subject, second.subject) == ("P1", "P2")  # empty subject: the row's own id
    assert (first.roi_labels, second.roi_labels) == ((1, 2, 3), None)
    again = read_cohort(write_cohort([first, second], tmp_path / "again.csv"))
    assert [(c.subject, c.roi_labels, c.modalities) for c in again] == [("P1", (1, 2, 3), ("flair", "t1")),
                                                                         ("P2", None, ("flair",))]
    assert reference_modality(("t2w", "flair", "t1c")) == "t1c" and reference_modality(("flair", "t2w")) == "t2w"
