"""Build ``cohort.csv`` from a TCIA LGG-1p19qDeletion download (BraTS-family folders: :mod:`DMIFLib.datasets.brats`).

It walks one folder per patient and picks each modality by its file or folder name (case-insensitive); a
patient missing T1C or the ROI is skipped and listed in the returned ``skipped`` list with the reason.

- TCIA LGG-1p19qDeletion (NBIA Data Retriever: ``<root>/<patient>/<study>/<series>/*.dcm``, or NIfTI files
  per patient): series / files named like T1C (``t1c``, ``t1+c``, ``t1 post``, ``post``, ``gd``), T2 (``t2``,
  not FLAIR), FLAIR and the tumour segmentation (``seg``, ``mask``, ``label``, ``roi``). The 1p/19q labels come
  from the collection's spreadsheet saved as CSV: a patient column (``Filename``/``patient_id``/``ID``) and a
  ``1p/19q`` column whose ``d/d`` (both arms deleted) is 1 and ``n/n``, ``n/d``, ``d/n`` are 0.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from DMIFLib.cohort import CohortCase, CohortError, write_cohort

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_TCIA_PATTERNS = {
    "roi": r"seg|mask|label|roi",
    "flair": r"flair",
    "t1c": r"t1c|t1\W*\+\W*c|t1\W*post|post\W*(contrast|gad|gd)|\bgd\b|gad|mprage.*post|t1.*ce\b",
    "t2w": r"t2",
}


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(_IMAGE_SUFFIXES))


def _dicom_series_folders(folder: Path) -> list[Path]:
    return sorted({p.parent for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", "")
                   and not p.name.startswith(".")})


def _classify(name: str) -> str | None:
    lowered = name.lower()
    for key, pattern in _TCIA_PATTERNS.items():
        if re.search(pattern, lowered):
            return key
    return None


def _code_to_label(value: str) -> int | None:
    text = value.strip().lower().replace(" ", "")
    if text in ("d/d", "1", "1.0", "yes", "codeleted", "co-deleted", "deleted", "true"):
        return 1
    if text in ("n/n", "n/d", "d/n", "0", "0.0", "no", "intact", "non-deleted", "nondeleted", "false"):
        return 0
    return None


def read_labels(labels_csv: str | os.PathLike, column: str = "1p/19q") -> dict[str, int]:
    """Patient id → 0/1 from a CSV (patient column ``Filename``/``patient_id``/``ID``/``Patient``)."""
    path = Path(labels_csv)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        id_column = next((h for h in header if h.lower() in ("filename", "patient_id", "id", "patient", "case")),
                         None)
        value_column = next((h for h in header if h.lower().replace(" ", "") == column.lower()), None)
        if id_column is None or value_column is None:
            raise CohortError(f"{path}: need a patient column (Filename/patient_id/ID) and a '{column}' column; "
                              f"found {', '.join(header)}")
        labels = {}
        for line, row in enumerate(reader, start=2):
            patient = (row.get(id_column) or "").strip()
            label = _code_to_label(row.get(value_column) or "")
            if not patient:
                continue
            if label is None:
                raise CohortError(f"{path}, line {line} ({patient}): '{row.get(value_column)}' is not a 1p/19q code "
                                  "(d/d = co-deleted; n/n, n/d, d/n = not) or 0/1")
            labels[patient] = label
    return labels


def _find_label(labels: dict[str, int], patient: str) -> int | None:
    if patient in labels:
        return labels[patient]
    for key, value in labels.items():  # spreadsheet ids may carry a suffix or prefix (e.g. LGG-104 vs LGG-104_T1)
        if key.startswith(patient) or patient.startswith(key):
            return value
    return None


def tcia_lgg_1p19q_cohort(root: str | os.PathLike, out_csv: str | os.PathLike,
                          labels_csv: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """Write ``out_csv`` for a TCIA LGG-1p19qDeletion download under ``root``; returns (path, skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: folder not found")
    labels = read_labels(labels_csv) if labels_csv else {}
    cases, skipped = [], []
    for patient_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        found: dict[str, Path] = {}
        candidates = _image_files(patient_dir) or _dicom_series_folders(patient_dir)
        for candidate in candidates:
            relative = str(candidate.relative_to(patient_dir))
            key = _classify(relative)
            if key and key not in found:
                found[key] = candidate
        missing = [k for k in ("t1c", "roi") if k not in found]
        if missing:
            skipped.append(f"{patient_dir.name}: no {' or '.join(missing)} found")
            continue
        label = _find_label(labels, patient_dir.name) if labels else None
        if labels and label is None:
            skipped.append(f"{patient_dir.name}: not in {labels_csv}")
            continue
        cases.append(CohortCase(patient_dir.name, {m: found[m] for m in ("t1c", "t2w", "flair") if m in found},
                                str(found["roi"]), label=label))
    if not cases:
        raise CohortError(f"{root}: no usable patient ({'; '.join(skipped[:5]) or 'no patient folders'})")
    return write_cohort(cases, out_csv), skipped
