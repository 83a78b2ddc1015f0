"""BraTS-style case folders → unlabelled cohort cases (superseded by ``DMIFLib.datasets.brats`` when merged).

``<root>/<case>/<case>_t1ce.nii.gz, _t2.nii.gz, _flair.nii.gz, _seg.nii.gz`` (2018–2021) or
``<case>-t1c.nii.gz, -t2w.nii.gz, -t2f.nii.gz, -seg.nii.gz`` (2023+). Labels are attached by
:func:`DMIFLib.datasets.label_sheet.apply_labels`; the TCIA collection is read by :mod:`DMIFLib.datasets.tcia`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from DMIFLib.cohort import CohortCase, CohortError

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_BRATS_SUFFIXES = {"t1c": ("t1ce", "t1c"), "t2w": ("t2", "t2w"), "flair": ("flair", "t2f"), "roi": ("seg",)}


def brats_cases(root: str | os.PathLike) -> tuple[list[CohortCase], list[str]]:
    """Unlabelled cases of the BraTS-style case folders under ``root`` and one ``"case: why"`` line per skip."""
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: folder not found")
    cases, skipped = [], []
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        found: dict[str, Path] = {}
        files = sorted(p for p in case_dir.rglob("*") if p.is_file() and p.name.lower().endswith(_IMAGE_SUFFIXES))
        for file in files:
            stem = file.name.lower()
            for suffix in _IMAGE_SUFFIXES:
                stem = stem.removesuffix(suffix)
            tag = re.split(r"[_-]", stem)[-1]
            for key, tags in _BRATS_SUFFIXES.items():
                if tag in tags and key not in found:
                    found[key] = file
        missing = [k for k in ("t1c", "roi") if k not in found]
        if missing:
            skipped.append(f"{case_dir.name}: no {' or '.join(missing)} file")
            continue
        cases.append(CohortCase(case_dir.name, {m: found[m] for m in ("t1c", "t2w", "flair") if m in found},
                                str(found["roi"])))
    if not cases:
        raise CohortError(f"{root}: no BraTS-style case folder ({'; '.join(skipped[:5]) or 'no sub-folders'})")
    return cases, skipped
