"""Label sheets: the TCIA xlsx, CSV in any delimiter and encoding, value maps, exact ids, the mismatch report."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from openpyxl import Workbook

from DMIFLib.cli import main
from DMIFLib.cohort import CohortCase, CohortError, read_cohort
from DMIFLib.datasets.label_sheet import apply_labels, normalize_id, parse_label_map, read_label_sheet


def tcia_xlsx(path):
    """TCIA_LGG_cases_159.xlsx's layout: Sheet1, columns Filename, 1p/19q, Grade (a number), Type."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    for row in (("Filename", "1p/19q", "Grade", "Type"), ("LGG-104", "d/d", 2, "oligodendroglioma"),
                ("LGG-1040", "n/n", 3, "astrocytoma"), ("LGG-203", "n/d", 2, "oligoastrocytoma")):
        sheet.append(row)
    workbook.save(path)
    return path


def case(patient_id, **extra):
    return CohortCase(patient_id, {}, "ras:0,0,0,1,1,1", extra=extra)


def test_tcia_xlsx_exact_ids_no_prefix_match(tmp_path):
    sheet = read_label_sheet(tcia_xlsx(tmp_path / "TCIA_LGG_cases_159.xlsx"))
    assert (sheet.id_column, sheet.label_column) == ("Filename", "1p/19q")
    report = apply_labels([case("LGG-104"), case("LGG-1040"), case("LGG-10"), case("LGG-203")], sheet)
    assert {c.patient_id: c.label for c in report.cases} == {"LGG-104": 1, "LGG-1040": 0, "LGG-203": 0}
    assert report.disk_only == ["LGG-10"] and report.skipped == ["LGG-10: not in TCIA_LGG_cases_159.xlsx "
                                                                "(column 'Filename')"]
    assert report.sheet_only == []


@pytest.mark.parametrize(("delimiter", "encoding"), [(";", "utf-8-sig"), ("\t", "cp1252"), (",", "latin-1"),
                                                      ("|", "utf-8")])
def test_csv_any_delimiter_and_encoding(tmp_path, delimiter, encoding):
    text = delimiter.join(["Filename", "1p/19q", "Type"]) + "\n"
    text += delimiter.join(["LGG-104", "d/d", "oligodendrogliome anaplasique (é)"]) + "\n"
    text += delimiter.join(["LGG-105", "n/n", "astrocytome"]) + "\n"
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode(encoding))
    assert read_label_sheet(path).labels == {"lgg-104": 1, "lgg-105": 0}


def test_ucsf_values_ids_and_unknown(tmp_path):
    path = tmp_path / "UCSF-PDGM-metadata_v2.csv"
    path.write_text("ID,Sex,1p/19q,IDH\nUCSF-PDGM-004,M,co-deletion,mutated\nUCSF-PDGM-005,F,relative co-deletion,"
                    "mutated\nUCSF-PDGM-007,F,intact,wildtype\nUCSF-PDGM-008,M,unknown,wildtype\n", encoding="utf-8")
    sheet = read_label_sheet(path)
    cases = [case("UCSF-PDGM-0004"), case("UCSF-PDGM-0005"), case("UCSF-PDGM-0007"), case("UCSF-PDGM-0008")]
    report = apply_labels(cases, sheet)
    assert [(c.patient_id, c.label) for c in report.cases] == [("UCSF-PDGM-0004", 1), ("UCSF-PDGM-0005", 1),
                                                               ("UCSF-PDGM-0007", 0)]
    assert report.skipped == ["UCSF-PDGM-0008: label 'unknown' in UCSF-PDGM-metadata_v2.csv (column '1p/19q') is "
                              "not usable"]
    idh = read_label_sheet(path, label_column="IDH", value_map=parse_label_map("mutated=1;wildtype=0"))
    assert idh.labels == {"ucsf-pdgm-4": 1, "ucsf-pdgm-5": 1, "ucsf-pdgm-7": 0, "ucsf-pdgm-8": 0}


def test_subject_fallback_for_follow_up_time_points(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("ID,label\nBraTS-GLI-00002,1\n", encoding="utf-8")
    report = apply_labels([case("BraTS-GLI-00002-001", subject="BraTS-GLI-00002")], read_label_sheet(path))
    assert [c.label for c in report.cases] == [1] and report.sheet_only == []


def test_normalizer_and_errors(tmp_path):
    assert normalize_id(" UCSF_PDGM_0004 ") == normalize_id("UCSF-PDGM-004") == "ucsf-pdgm-4"
    assert normalize_id("LGG-104") != normalize_id("LGG-1040")
    path = tmp_path / "labels.csv"
    path.write_text("Filename,1p/19q\nLGG-1,maybe\n", encoding="utf-8")
    with pytest.raises(CohortError, match=r"row 2 \(LGG-1\): 'maybe' in column '1p/19q' is not a known label value"):
        read_label_sheet(path)
    assert read_label_sheet(path, value_map=parse_label_map("maybe=skip")).skipped == {"lgg-1": "maybe"}
    path.write_text("Filename,1p/19q\nUCSF-PDGM-004,d/d\nUCSF-PDGM-0004,n/n\n", encoding="utf-8")
    with pytest.raises(CohortError, match=r"row 3 \(UCSF-PDGM-0004\): the same patient as row 2"):
        read_label_sheet(path)
    with pytest.raises(CohortError, match="no label column 'IDH'; the columns are Filename, 1p/19q"):
        read_label_sheet(path, label_column="IDH")
    with pytest.raises(CohortError, match="--label-map: 'd/d=yes'"):
        parse_label_map("d/d=yes")
    (tmp_path / "labels.xlsx").write_bytes(b"not a zip")
    with pytest.raises(CohortError, match="cannot read the spreadsheet"):
        read_label_sheet(tmp_path / "labels.xlsx")


def test_brats_command_goes_through_the_same_label_step(tmp_path, capsys):
    root = tmp_path / "brats"
    for name in ("BraTS20_Training_001", "BraTS20_Training_002"):
        for suffix in ("_t1ce", "_t2", "_flair", "_seg"):
            (root / name).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 4), np.int16)), str(root / name / f"{name}"
                                                                                         f"{suffix}.nii.gz"))
    labels = tmp_path / "labels.csv"
    labels.write_text("BraTS_2020_subject_ID;codeletion\nBraTS20_Training_001;1\nBraTS20_Training_009;0\n",
                      encoding="utf-8")
    out = tmp_path / "out"
    assert main(["preprocess", "--brats", str(root), "--labels", str(labels), "--label-column", "codeletion",
                 "--adapt-only", "--out", str(out)]) == 0
    assert [(c.patient_id, c.label) for c in read_cohort(out / "source_cohort.csv")] == [("BraTS20_Training_001", 1)]
    err = capsys.readouterr().err
    assert "skipped BraTS20_Training_002: not in labels.csv" in err and "no case on disk: BraTS20_Training_009" in err
    assert main(["preprocess", "--brats", str(root), "--label-map", "a=1", "--adapt-only", "--out", str(out)]) == 2
    assert "go with --labels FILE" in capsys.readouterr().err
