"""cohort.csv from a TCIA LGG-1p19qDeletion-style download (BraTS family: test_datasets_brats.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from DMIFLib.cohort import CohortError, read_cohort
from DMIFLib.preprocessing.adapters import read_labels, tcia_lgg_1p19q_cohort


def touch_image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 4), np.int16)), str(path))


def test_tcia_layout_with_labels(tmp_path):
    root = tmp_path / "LGG-1p19qDeletion"
    for patient in ("LGG-104", "LGG-203"):
        touch_image(root / patient / "1-T1C" / f"{patient}_T1C.nii.gz")
        touch_image(root / patient / "2-T2" / f"{patient}_T2.nii.gz")
        touch_image(root / patient / "3-Segmentation" / f"{patient}_Seg.nii.gz")
    touch_image(root / "LGG-999" / "1-T2" / "LGG-999_T2.nii.gz")  # no T1C, no segmentation
    labels = tmp_path / "labels.csv"
    labels.write_text("Filename,1p/19q,IDH1\nLGG-104,d/d,Mutant\nLGG-203,n/d,Mutant\nLGG-999,n/n,Wild\n",
                      encoding="utf-8")
    out, skipped = tcia_lgg_1p19q_cohort(root, tmp_path / "cohort.csv", labels)
    cases = {c.patient_id: c for c in read_cohort(out, require_labels=True)}
    assert set(cases) == {"LGG-104", "LGG-203"} and skipped == ["LGG-999: no t1c or roi found"]
    assert cases["LGG-104"].label == 1 and cases["LGG-203"].label == 0
    assert cases["LGG-104"].images["t1c"].name == "LGG-104_T1C.nii.gz"
    assert cases["LGG-104"].images["t2w"].name == "LGG-104_T2.nii.gz"
    assert cases["LGG-104"].roi.endswith("LGG-104_Seg.nii.gz")


def test_bad_label_code(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("Filename,1p/19q\nLGG-1,maybe\n", encoding="utf-8")
    with pytest.raises(CohortError, match=r"line 2 \(LGG-1\): 'maybe' is not a 1p/19q code"):
        read_labels(labels)
