"""BraTS-family discovery on tiny trees that copy the real layouts (folder and file names), written as NIfTI.

Every image holds a constant that says what it is (``VALUE``), every mask its own label values, so that reading
back each chosen file proves it is the right modality or mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cli import main
from DMIFLib.cohort import CohortError, read_cohort
from DMIFLib.datasets.brats import brats_family_cases, parse_file_name, subject_of

VALUE = {"t1c": 11, "t1": 12, "t2w": 13, "flair": 14, "brain_mask": 1}


def write(path: Path, value: int | np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((4, 5, 6), value, np.int16) if np.isscalar(value) else value.astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def mask(labels: tuple[int, ...]) -> np.ndarray:
    """A (4, 5, 6) label image holding each of ``labels`` in its own column."""
    array = np.zeros((4, 5, 6), np.int16)
    for i, label in enumerate(labels):
        array[1, 1, i] = label
    return array


def values(path) -> set[int]:
    return set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).tolist())


def check(case, expected_mask: tuple[int, ...]) -> None:
    """Every image of ``case`` holds its modality's VALUE; the ROI holds ``expected_mask``."""
    for modality, path in case.images.items():
        assert values(path) == {VALUE[modality]}, (case.patient_id, modality, path)
    assert values(case.roi) == {0, *expected_mask}, (case.patient_id, case.roi)


def case_files(folder: Path, case_id: str, tags: dict[str, str], sep: str, ext: str = ".nii.gz") -> None:
    for tag, modality in tags.items():
        write(folder / f"{case_id}{sep}{tag}{ext}", VALUE[modality])


BRATS_2018 = {"t1": "t1", "t1ce": "t1c", "t2": "t2w", "flair": "flair"}
BRATS_2023 = {"t1n": "t1", "t1c": "t1c", "t2w": "t2w", "t2f": "flair"}


def test_brats_2018_2019_hgg_lgg_nesting(tmp_path):
    root = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    for grade, case_id in (("HGG", "BraTS19_2013_2_1"), ("HGG", "BraTS19_CBICA_AAB_1"), ("LGG", "BraTS19_2013_0_1")):
        case_files(root / grade / case_id, case_id, BRATS_2018, "_", ".nii")
        write(root / grade / case_id / f"{case_id}_seg.nii", mask((1, 2, 4)))
    (root / "name_mapping.csv").write_text("BraTS_2019_subject_ID\n", encoding="utf-8")
    cases, skipped = brats_family_cases(root)
    assert [c.patient_id for c in cases] == ["BraTS19_2013_2_1", "BraTS19_CBICA_AAB_1", "BraTS19_2013_0_1"]
    assert not skipped
    for case in cases:
        assert case.modalities == ("t1c", "t2w", "flair", "t1") and case.subject == case.patient_id
        check(case, (1, 2, 4))


def test_brats_2020_kaggle_2021_2023_2024(tmp_path):
    root = tmp_path / "downloads"
    kaggle = root / "BraTS2020_TrainingData" / "MICCAI_BraTS2020_TrainingData"
    case_files(kaggle / "BraTS20_Training_001", "BraTS20_Training_001", BRATS_2018, "_", ".nii")
    write(kaggle / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii", mask((1, 2, 4)))
    # the real Kaggle 2020 case 355 carries its mask under another case's name: refused, with the reason
    case_files(kaggle / "BraTS20_Training_355", "BraTS20_Training_355", BRATS_2018, "_", ".nii")
    write(kaggle / "BraTS20_Training_355" / "W39_1998.09.19_Segm.nii", mask((1, 2, 4)))
    case_files(root / "RSNA_ASNR_MICCAI_BraTS2021" / "BraTS2021_00000", "BraTS2021_00000", BRATS_2018, "_")
    write(root / "RSNA_ASNR_MICCAI_BraTS2021" / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz", mask((1, 2, 4)))
    gli = root / "BraTS2024-BraTS-GLI-TrainingData" / "training_data1_v2"
    for case_id in ("BraTS-GLI-02073-100", "BraTS-GLI-02073-101"):
        case_files(gli / case_id, case_id, BRATS_2023, "-")
        write(gli / case_id / f"{case_id}-seg.nii.gz", mask((1, 2, 3, 4)))
    cases, skipped = brats_family_cases(root, roi_labels=(1, 2, 3))
    by_id = {c.patient_id: c for c in cases}
    assert set(by_id) == {"BraTS20_Training_001", "BraTS2021_00000", "BraTS-GLI-02073-100", "BraTS-GLI-02073-101"}
    assert len(skipped) == 1 and skipped[0].startswith("BraTS2020_TrainingData/MICCAI_BraTS2020_TrainingData/"
                                                        "BraTS20_Training_355: its files belong to 2 cases")
    assert "W39_1998.09.19: W39_1998.09.19_Segm.nii" in skipped[0]
    check(by_id["BraTS20_Training_001"], (1, 2, 4))
    check(by_id["BraTS2021_00000"], (1, 2, 4))
    for case_id in ("BraTS-GLI-02073-100", "BraTS-GLI-02073-101"):
        check(by_id[case_id], (1, 2, 3, 4))
        assert by_id[case_id].subject == "BraTS-GLI-02073" and by_id[case_id].roi_labels == (1, 2, 3)


def test_upenn_gbm_sibling_mask_folders(tmp_path):
    root = tmp_path / "UPENN-GBM" / "NIfTI-files"
    upenn = {"T1": "t1", "T1GD": "t1c", "T2": "t2w", "FLAIR": "flair"}
    for scan in ("UPENN-GBM-00001_11", "UPENN-GBM-00001_21", "UPENN-GBM-00002_11", "UPENN-GBM-00003_11"):
        case_files(root / "images_structural" / scan, scan, upenn, "_")
        write(root / "images_structural_unstripped" / scan / f"{scan}_T1_unstripped.nii.gz", 99)
        write(root / "images_DTI" / "images_DTI" / scan / f"{scan}_DTI_FA.nii.gz", 98)
    write(root / "images_segm" / "UPENN-GBM-00001_11_segm.nii.gz", mask((1, 2, 4)))  # expert
    write(root / "automated_segm" / "UPENN-GBM-00001_11_automated_approx_segm.nii.gz", mask((1,)))
    write(root / "automated_segm" / "UPENN-GBM-00002_11_automated_approx_segm.nii.gz", mask((2, 4)))
    cases, skipped = brats_family_cases(root)
    by_id = {c.patient_id: c for c in cases}
    assert set(by_id) == {"UPENN-GBM-00001_11", "UPENN-GBM-00002_11"}
    assert sorted(s.split(":")[0] for s in skipped) == ["UPENN-GBM-00001_21", "UPENN-GBM-00003_11"]
    assert all("no tumour segmentation" in s for s in skipped)
    check(by_id["UPENN-GBM-00001_11"], (1, 2, 4))  # the expert mask wins over the automated one
    check(by_id["UPENN-GBM-00002_11"], (2, 4))
    assert by_id["UPENN-GBM-00002_11"].extra["roi_source"] == "automated"
    assert "roi_source" not in by_id["UPENN-GBM-00001_11"].extra
    assert {c.subject for c in cases} == {"UPENN-GBM-00001", "UPENN-GBM-00002"}


def test_ucsf_pdgm_with_bias_files_and_follow_up(tmp_path):
    root = tmp_path / "PKG - UCSF-PDGM Version 5" / "UCSF-PDGM-v5"
    ucsf = {"T1": "t1", "T1c": "t1c", "T2": "t2w", "FLAIR": "flair"}
    for exam in ("UCSF-PDGM-0004", "UCSF-PDGM-0433_FU007d"):
        folder = root / f"{exam}_nifti"
        case_files(folder, exam, ucsf, "_")
        for other in ("T1c_bias", "T2_bias", "DWI", "ADC", "SWI", "brain_parenchyma_segmentation"):
            write(folder / f"{exam}_{other}.nii.gz", 97)
        write(folder / f"{exam}_brain_segmentation.nii.gz", VALUE["brain_mask"])
        write(folder / f"{exam}_tumor_segmentation.nii.gz", mask((1, 2, 4)))
    cases, skipped = brats_family_cases(root)
    assert [c.patient_id for c in cases] == ["UCSF-PDGM-0004", "UCSF-PDGM-0433_FU007d"] and not skipped
    for case in cases:
        check(case, (1, 2, 4))
        assert values(case.brain_mask) == {1} and case.brain_mask.name.endswith("_brain_segmentation.nii.gz")
    assert [c.subject for c in cases] == ["UCSF-PDGM-0004", "UCSF-PDGM-0433"]


def test_refusals(tmp_path):
    root = tmp_path / "root"
    case_files(root / "A", "BraTS2021_00001", BRATS_2018, "_")
    write(root / "A" / "BraTS2021_00001_seg.nii.gz", mask((1,)))
    write(root / "A" / "BraTS2021_00001_t1ce.nii", VALUE["t1c"])  # a second T1C file
    case_files(root / "B" / "BraTS2021_00002", "BraTS2021_00002", BRATS_2018, "_")
    write(root / "B" / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz", mask((1,)))
    case_files(root / "C" / "BraTS2021_00002", "BraTS2021_00002", BRATS_2018, "_")  # the same case again
    write(root / "C" / "BraTS2021_00002" / "BraTS2021_00002_seg.nii.gz", mask((1,)))
    cases, skipped = brats_family_cases(root)
    assert [c.patient_id for c in cases] == ["BraTS2021_00002"] and "B" in str(cases[0].images["t1c"])
    assert skipped[0].startswith("BraTS2021_00001: 2 t1c files")
    assert skipped[1] == "BraTS2021_00002: found again in C/BraTS2021_00002; the one in B/BraTS2021_00002 is kept"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match="no BraTS-family case found"):
        brats_family_cases(tmp_path / "empty")


def test_file_names_and_subjects():
    assert parse_file_name("BraTS-GLI-00000-000-t2f.nii.gz") == ("BraTS-GLI-00000-000", "flair")
    assert parse_file_name("UPENN-GBM-00001_11_automated_approx_segm.nii.gz") == ("UPENN-GBM-00001_11",
                                                                                  "roi_automated")
    assert parse_file_name("UCSF-PDGM-0004_T1c_bias.nii.gz") is None
    assert parse_file_name("UPENN-GBM-00001_11_T1_unstripped.nii.gz") is None
    assert parse_file_name("Brats18_2013_2_1_t1.nii.gz") == ("Brats18_2013_2_1", "t1")
    assert subject_of("BraTS-GLI-00000-001") == "BraTS-GLI-00000" and subject_of("BraTS2021_00000") == "BraTS2021_00000"


def test_command_adapt_only_writes_source_cohort(tmp_path, capsys):
    root = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    for grade, case_id in (("HGG", "Brats18_2013_2_1"), ("LGG", "Brats18_2013_0_1")):
        case_files(root / grade / case_id, case_id, BRATS_2018, "_")
        write(root / grade / case_id / f"{case_id}_seg.nii.gz", mask((1, 2, 4)))
    labels = tmp_path / "labels.csv"
    labels.write_text("ID,label\nBrats18_2013_2_1,1\nBrats18_2013_0_1,0\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["preprocess", "--brats", str(root), "--labels", str(labels), "--roi-labels", "1,4",
                 "--adapt-only", "--out", str(out)]) == 0
    cases = read_cohort(out / "source_cohort.csv", require_labels=True)
    assert [(c.patient_id, c.label, c.roi_labels) for c in cases] == [("Brats18_2013_2_1", 1, (1, 4)),
                                                                      ("Brats18_2013_0_1", 0, (1, 4))]
    for case in cases:
        check(case, (1, 2, 4))
    assert main(["preprocess", "--brats", str(root), "--roi-labels", "1,x", "--adapt-only",
                 "--out", str(tmp_path / "out2")]) == 2
    assert "roi labels '1,x' are not comma-separated whole numbers" in capsys.readouterr().err


def test_box_from_chosen_labels_only(tmp_path):
    """BraTS 2024: label 4 (resection cavity) far from the tumour is left out of the box when asked."""
    from DMIFLib.preprocessing.errors import PreprocessingError
    from DMIFLib.preprocessing.roi import load_roi

    array = np.zeros((10, 10, 10), np.int16)
    array[2:4, 2:4, 2:4] = 1
    array[3, 3, 3] = 3
    array[8, 8, 8] = 4
    label = sitk.GetImageFromArray(array)
    path = tmp_path / "seg.nii.gz"
    sitk.WriteImage(label, str(path))
    everything = load_roi(str(path), label)
    tumour = load_roi(str(path), label, labels=(1, 2, 3))
    assert np.allclose(everything.size_mm, 7.0) and np.allclose(tumour.size_mm, 2.0)
    with pytest.raises(PreprocessingError, match=r"no voxel with label 2 .*its values: 0, 1, 3, 4"):
        load_roi(str(path), label, labels=(2,))


def test_brats_2023_tree_of_synthetic_heads_preprocesses(tmp_path):
    """Discovery → `dmif preprocess --brats` runs every case through the pipeline (T1C is the reference)."""
    import shutil

    from DMIFLib.synth import synthesize_cohort

    synth = read_cohort(synthesize_cohort(tmp_path / "synth", 2, seed=0, scale=0.4,
                                          modalities=("t1c", "t2w", "flair", "t1")))
    root = tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    for number, case in enumerate(synth):
        case_id = f"BraTS-GLI-0000{number}-000"
        for modality, tag in (("t1c", "t1c"), ("t1", "t1n"), ("t2w", "t2w"), ("flair", "t2f")):
            (root / case_id).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(case.images[modality], root / case_id / f"{case_id}-{tag}.nii.gz")
        shutil.copyfile(case.roi, root / case_id / f"{case_id}-seg.nii.gz")
    out = tmp_path / "prep"
    assert main(["preprocess", "--brats", str(root), "--out", str(out), "--no-n4", "--skull-strip", "none",
                 "--no-qa", "--roi-labels", "1,2,3"]) == 0
    prepared = read_cohort(out / "cohort.csv")
    assert [c.patient_id for c in prepared] == ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000"]
    for case in prepared:
        assert case.modalities == ("t1c", "t2w", "flair", "t1") and case.roi_labels == (1, 2, 3)
        assert (out / "cases" / case.patient_id / "flair_to_t1c.tfm").is_file()
