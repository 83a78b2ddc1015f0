"""TCIA LGG-1p19qDeletion in each downloaded layout → ``dmif preprocess --tcia DIR --adapt-only``.

The trees copy the real folder names and series descriptions (NBIA Data Retriever descriptive names, the TCIA data
retriever CLI with its metadata CSV, the 2017 DOI tree, the 2017 NIfTI zip), with real DICOM files (pydicom's
MR_small.dcm, headers edited) and DICOM SEGs written by highdicom. Every chosen file is read back: it must be the
series of the right contrast (told by its pixel values), and the mask must be the SEG's block on the right grid.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from dicom_trees import write_seg, write_series
from pydicom.uid import generate_uid

from DMIFLib.cli import main
from DMIFLib.cohort import CohortError, read_cohort
from DMIFLib.datasets.dicom_series import DicomSeries, classify_series
from DMIFLib.datasets.tcia import tcia_cases
from DMIFLib.preprocessing.io import read_image

T1C, T2, PD, T1PRE = 1000, 2000, 3000, 4000
"""Pixel value of each written contrast, to tell on read-back which series a path holds."""


def value_of(path: Path) -> int:
    """The constant a written series was filled with (the median minus the ramp's median, rounded)."""
    array = sitk.GetArrayFromImage(read_image(path))
    return int(round(float(np.median(array)) - 31.5, -2))


def mask_voxels(path: Path) -> np.ndarray:
    return np.argwhere(sitk.GetArrayFromImage(read_image(path)) > 0)


def adapt(tmp_path: Path, root: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "out"
    code = main(["preprocess", "--tcia", str(root), "--adapt-only", "--out", str(out), *extra])
    cases = {c.patient_id: c for c in read_cohort(out / "source_cohort.csv")} if code == 0 else {}
    return code, cases, out


def nbia_descriptive_tree(root: Path) -> Path:
    """manifest-<ts>/LGG-1p19qDeletion/<ID>/<date>-<study>-<n>/<n>-<series description>-<n>/1-NN.dcm + metadata.csv"""
    collection = root / "manifest-1608266769419" / "LGG-1p19qDeletion"
    study = generate_uid()
    t2 = write_series(collection / "LGG-104" / "06-26-2000-MRI Hd wow-05523" / "4-Gad Ax T2 Straight-38151",
                      "LGG-104", study, "Gad Ax T2 Straight", T2, tr=4000, te=102, number=4)
    write_series(collection / "LGG-104" / "06-26-2000-MRI Hd wow-05523" / "5-Gad Ax SPGR Straight-62002",
                 "LGG-104", study, "Gad Ax SPGR Straight", T1C, tr=30, te=8, number=5)
    write_seg(collection / "LGG-104" / "06-26-2000-MRI Hd wow-05523" / "300.000000-Tumor segmentation-91604", t2)
    # LGG-1040: a study named "W WO GAD" whose post-contrast series all carry the agent; an older study without SEG
    study = generate_uid()
    folder = collection / "LGG-1040" / "03-14-2001-MRI BRAIN W WO GAD-77310"
    t2 = write_series(folder / "3-AX T2 FSE-11111", "LGG-1040", study, "AX T2 FSE", T2, tr=3500, te=95, agent="GAD",
                      number=3, study_description="MRI BRAIN W WO GAD")
    write_series(folder / "2-AX T1 PRE-22222", "LGG-1040", study, "AX T1 PRE", T1PRE, tr=500, te=12, number=2,
                 study_description="MRI BRAIN W WO GAD")
    write_series(folder / "7-AX T1 SPGR +C-33333", "LGG-1040", study, "AX T1 SPGR +C", T1C, tr=25, te=6,
                 agent="GAD", number=7, study_description="MRI BRAIN W WO GAD")
    write_seg(folder / "300.000000-Tumor segmentation-44444", t2, slices=(1,))
    write_series(collection / "LGG-1040" / "01-02-1999-MRI Hd-10101" / "2-Ax T2 FSE-55555", "LGG-1040",
                 generate_uid(), "Ax T2 FSE", T2 + 5000, tr=3500, te=95, number=2)
    (collection.parent / "metadata.csv").write_text(
        "Series UID,Collection,3rd Party Analysis,Data Description URI,Subject ID,Study UID,Study Description,"
        "Study Date,Series Description,Manufacturer,Modality,SOP Class Name,SOP Class UID,Number of Images,"
        "File Size,File Location,Download Timestamp\n", encoding="utf-8")
    return root


def test_nbia_descriptive_names_from_above_the_manifest(tmp_path):
    root = nbia_descriptive_tree(tmp_path / "download")
    code, cases, out = adapt(tmp_path, root)
    assert code == 0 and set(cases) == {"LGG-104", "LGG-1040"}
    for case in cases.values():
        assert value_of(case.images["t1c"]) == T1C, case.patient_id  # "Gad Ax SPGR" / "AX T1 SPGR +C", not T1 PRE
        assert value_of(case.images["t2w"]) == T2, case.patient_id  # "Gad Ax T2 Straight" / post-gad T2 is T2W
        assert case.images["t2w"].is_dir()  # the series folder itself
        assert case.extra["roi_space"] == "t2w"
        roi = read_image(case.roi)
        assert roi.GetSize() == read_image(case.images["t2w"]).GetSize()
    voxels = mask_voxels(Path(cases["LGG-104"].roi))
    assert len(voxels) == 240 and voxels.min(0).tolist() == [2, 20, 30] and voxels.max(0).tolist() == [3, 29, 41]
    assert sorted(set(mask_voxels(Path(cases["LGG-1040"].roi))[:, 0])) == [1]
    assert Path(cases["LGG-104"].roi).is_relative_to(out)


def test_new_retriever_layout_with_metadata_csv(tmp_path):
    root = tmp_path / "tcia-out"
    study = generate_uid()
    t2 = write_series(root / "LGG-660" / study / "1.3.6.1.4.1.14519.5.2.1.3344.2526.1", "LGG-660", study, None, T2,
                      tr=4000, te=100, number=3)
    write_series(root / "LGG-660" / study / "1.3.6.1.4.1.14519.5.2.1.3344.2526.2", "LGG-660", study,
                 "T1_FLASH_3D_AXIAL", T1C, tr=20, te=5, number=4)
    write_seg(root / "LGG-660" / study / "1.3.6.1.4.1.14519.5.2.1.3344.2526.3", t2)
    (root / "metadata").mkdir()
    uid = str(t2[0].SeriesInstanceUID)
    with open(root / "metadata" / "manifest-metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["SeriesInstanceUID", "SubjectID", "Collection", "Modality", "StudyInstanceUID",
                         "SeriesDescription", "SeriesNumber", "Manufacturer", "NumberOfImages", "FileSize",
                         "MD5Hash", "OriginalS5cmdURI"])
        writer.writerow([uid, "LGG-660", "LGG-1p19qDeletion", "MR", study, "TSE_T2_RST_AXIAL", "3", "SIEMENS", "6",
                         "1", "", ""])
    (root / "metadata" / f"{uid}.json").write_text(json.dumps({"Series UID": uid}), encoding="utf-8")
    code, cases, _ = adapt(tmp_path, root)
    case = cases["LGG-660"]
    assert code == 0 and case.extra["t2w_series"] == "TSE_T2_RST_AXIAL"  # the description came from metadata.csv
    assert value_of(case.images["t1c"]) == T1C and value_of(case.images["t2w"]) == T2
    assert "taken as T1C" in case.extra["note"]  # T1_FLASH without contrast mark: the collection's T1 is post-gad


def test_2017_doi_tree_dual_echo_split_and_no_seg(tmp_path, capsys):
    doi = tmp_path / "LGG-1p19qDeletion" / "DOI"
    study = generate_uid()
    t2 = write_series(doi / "LGG-210" / study / generate_uid(), "LGG-210", study, "AX PD/T2 FSE", PD, tr=3000, te=20,
                      second_echo=(100.0, T2), name="{:06d}.dcm")
    write_series(doi / "LGG-210" / study / generate_uid(), "LGG-210", study, "AX T1 POST GAD", T1C, name="{:06d}.dcm")
    write_seg(doi / "LGG-210" / study / generate_uid(), t2, slices=(4,), name="000000.dcm")
    study = generate_uid()
    write_series(doi / "LGG-229" / study / generate_uid(), "LGG-229", study, "AX T2", T2, tr=4000, te=100)
    write_series(doi / "LGG-229" / study / generate_uid(), "LGG-229", study, "AX T1 +C", T1C)
    code, cases, out = adapt(tmp_path, tmp_path / "LGG-1p19qDeletion")
    case = cases["LGG-210"]
    assert code == 0 and set(cases) == {"LGG-210"}
    t2w = case.images["t2w"]
    assert t2w.name == "t2w.nii.gz" and t2w.is_relative_to(out)  # the T2 echo, written as a file
    assert value_of(t2w) == T2 and read_image(t2w).GetSize() == (64, 64, 6)
    assert sorted(set(mask_voxels(Path(case.roi))[:, 0])) == [4]
    err = capsys.readouterr().err
    assert "skipped LGG-229: no DICOM SEG (tumour segmentation) in any study" in err
    assert "NiFTiSegmentationsEdited.zip" in err


def write_nifti(path: Path, array: np.ndarray, spacing=(0.94, 0.94, 3.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_2017_nifti_zip_with_lgg223_swapped(tmp_path):
    root = tmp_path / "NiFTiSegmentationsEdited"
    rng = np.random.default_rng(0)
    mask = np.zeros((4, 16, 16), np.uint8)
    mask[1:3, 4:9, 5:11] = 1
    t1 = (rng.random((4, 16, 16)) * 900 + 100).astype(np.int16)
    t2 = (rng.random((4, 16, 16)) * 900 + 1100).astype(np.int16)
    for patient, names in (("LGG-104", ("LGG-104_T1.nii.gz", "LGG-104_T2.nii.gz", "LGG-104_Segmentation.nii.gz")),
                           ("LGG-223", ("LGG-223_T1.nii.gz", "LGG-223_Segnimentation.nii.gz", "LGG-223-T2.nii.gz"))):
        for name, array in zip(names, (t1, t2, mask), strict=True):
            write_nifti(root / patient / name, array)
    for name, array in (("LGG-301_T1.nii.gz", t1), ("LGG-301_T2.nii.gz", t2), ("LGG-301_Segmentation.nii.gz", mask)):
        write_nifti(root / "LGG-301" / name, array, (1.0, 1.0, 5.0) if "T1" in name else (0.94, 0.94, 3.0))
    code, cases, _ = adapt(tmp_path, tmp_path)
    assert code == 0 and set(cases) == {"LGG-104", "LGG-223", "LGG-301"}
    for case in cases.values():
        assert sitk.GetArrayFromImage(read_image(case.images["t1c"])).min() >= 100
        assert sitk.GetArrayFromImage(read_image(case.images["t2w"])).min() >= 1100
        assert len(mask_voxels(Path(case.roi))) == mask.sum()
    assert not cases["LGG-104"].extra["roi_space"]  # T1 is registered to T2 in this release: one grid
    assert cases["LGG-301"].extra["roi_space"] == "t2w"  # a T1 on its own grid: the T2 mask is carried to it
    assert cases["LGG-223"].images["t2w"].name == "LGG-223_Segnimentation.nii.gz"
    assert cases["LGG-223"].roi.endswith("LGG-223-T2.nii.gz") and "swapped" in cases["LGG-223"].extra["note"]


@pytest.mark.shared_data
def test_real_nifti_triplet_from_shared_data(tmp_path, shared_data):
    sri24 = shared_data / "TCGA-FG-6692" / "sri24"
    folder = tmp_path / "NiFTiSegmentationsEdited" / "TCGA-FG-6692"
    folder.mkdir(parents=True)
    for source, name in (("TCGA-FG-6692_t1c_bet.nii.gz", "TCGA-FG-6692_T1.nii.gz"),
                         ("TCGA-FG-6692_t2_bet.nii.gz", "TCGA-FG-6692_T2.nii.gz"),
                         ("TCGA-FG-6692_seg_auto.nii.gz", "TCGA-FG-6692_Segmentation.nii.gz")):
        (folder / name).symlink_to(sri24 / source)
    cases, skipped = tcia_cases(tmp_path, tmp_path / "images")
    assert not skipped and cases[0].roi.endswith("_Segmentation.nii.gz")  # labels 0, 1, 2, 4: a mask by content
    assert cases[0].images["t1c"].name.endswith("_T1.nii.gz") and cases[0].images["t2w"].name.endswith("_T2.nii.gz")


def test_labels_exact_ids_unknown_and_mismatch_report(tmp_path, capsys):
    root = nbia_descriptive_tree(tmp_path / "download")
    sheet = tmp_path / "labels.csv"
    sheet.write_text("Filename;1p/19q;Grade;Type\nLGG-104;n/n;2;astrocytoma\nLGG-999;d/d;2;oligodendroglioma\n",
                     encoding="cp1252")
    code, cases, _ = adapt(tmp_path, root, "--labels", str(sheet))
    err = capsys.readouterr().err
    assert code == 0 and set(cases) == {"LGG-104"} and cases["LGG-104"].label == 0
    assert "skipped LGG-1040: not in labels.csv" in err  # no prefix match onto LGG-104
    assert "1 id(s) in labels.csv have no case on disk: LGG-999" in err


def test_series_classification_rules():
    def kind(description: str, tr: float | None = None, te: float | None = None, agent: str = "") -> str | None:
        return classify_series(DicomSeries("1", "P", "S", "MR", "1.2.840.10008.5.1.4.1.1.4", description,
                                           contrast_agent=agent, repetition_time=tr,
                                           echo_times=(te,) if te is not None else ()))

    assert kind("Gad Ax T2 Straight") == "t2w"
    assert kind("AX T1 SPGR +C") == "t1c" and kind("Gad Ax SPGR Straight") == "t1c"
    assert kind("AX T1", agent="GAD") == "t1c"  # the contrast agent tag marks a post-contrast T1
    assert kind("AX T1 PRE", agent="GAD") == "t1"  # ... unless the description says pre-contrast
    assert kind("AX T1") == "t1" and kind("AX T2*") is None and kind("AX T2 FLAIR") == "flair"
    assert kind("AX FSE") == "t2w" and kind("SAG 3D", tr=2500, te=110) == "t2w"
    assert kind("AX POST", agent="MAGNEVIST") == "t1c" and kind("AX POST") is None


def test_missing_root_and_nothing_usable(tmp_path, capsys):
    assert main(["preprocess", "--tcia", str(tmp_path / "nope"), "--adapt-only", "--out", str(tmp_path / "o")]) == 2
    assert "folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match="no usable patient"):
        tcia_cases(tmp_path / "empty", tmp_path / "images")


def test_seg_segment_choice_gaps_and_grid_check(tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from DMIFLib.datasets.dicom_seg import seg_to_label
    from DMIFLib.datasets.dicom_series import read_series
    from DMIFLib.preprocessing.errors import PreprocessingError

    study = generate_uid()
    source = write_series(tmp_path / "t2", "LGG-1", study, "AX T2", T2, tr=4000, te=100)
    files = sorted((tmp_path / "t2").iterdir())
    grid = read_series(files)
    masks = np.zeros((6, 64, 64, 2), dtype=bool)
    masks[1, 5:9, 5:9, 0] = True  # segment 1: "Edema"
    masks[(1, 4), 20:24, 30:33, 1] = True  # segment 2: "Neoplasm" on two slices with a gap
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, label, prop in ((1, "Edema", codes.SCT.Edema), (2, "Neoplasm", codes.SCT.Neoplasm))]
    seg = hd.seg.Segmentation(
        source_images=source, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=300,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1")
    seg.save_as(tmp_path / "seg.dcm")
    voxels = np.argwhere(sitk.GetArrayFromImage(seg_to_label(tmp_path / "seg.dcm", grid)) > 0)
    assert len(voxels) == 24 and sorted(set(voxels[:, 0])) == [1, 4]
    shifted = sitk.Image(grid)
    shifted.SetOrigin(tuple(np.add(grid.GetOrigin(), (0.0, 0.0, 1.5))))  # half a slice off
    with pytest.raises(PreprocessingError, match="does not lie on the referenced series' voxel grid"):
        seg_to_label(tmp_path / "seg.dcm", shifted, case="LGG-1")
    with pytest.raises(PreprocessingError, match="frame of reference"):
        seg_to_label(tmp_path / "seg.dcm", grid, frame_of_reference_uid="1.2.3")
