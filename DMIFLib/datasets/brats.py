"""BraTS-family downloads → unlabelled cohort cases: BraTS 2018–2024, Kaggle BraTS 2020, UPENN-GBM, UCSF-PDGM.

Every image file is named ``<case id><_ or -><tag>.<ext>`` (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ...), the
tag (any case) saying what it holds (:data:`FILE_TAGS`)::

    t1ce, t1c, t1gd -> t1c     t1, t1n -> t1     t2, t2w -> t2w     flair, t2f -> flair
    seg, segm, tumor_segmentation -> roi (expert)      automated_approx_segm -> roi (automated, UPENN-GBM)
    brain_segmentation -> brain_mask (UCSF-PDGM)

Files with other tags (UCSF ``_T1c_bias``, ``_brain_parenchyma_segmentation``, ``_DWI``; UPENN ``_T1_unstripped``,
``_DTI_FA``; BraTS-2020 ``W39_1998.09.19_Segm`` has tag ``segm`` but a foreign id) are ignored, except as noted.
Folders are searched recursively: a *case folder* is one that holds at least one modality image directly (so
BraTS 2018/2019's ``HGG/`` and ``LGG/`` are descended, not taken as cases). A folder holding only
segmentations (UPENN-GBM's ``images_segm/`` and ``automated_segm/``) is a *mask folder*: a case without a
segmentation of its own takes its case id's expert mask from there, else the automated one (column
``roi_source`` = ``automated``). A case folder whose files carry more than one case id is refused; so are two
files for one modality, and a case id found in two folders (the first, in sorted path order, is kept).

Every case gets a ``subject`` column: the case id without its timepoint (BraTS 2023+ ``BraTS-GLI-00000-001`` ->
``BraTS-GLI-00000``; UPENN-GBM ``UPENN-GBM-00001_21`` -> ``UPENN-GBM-00001``; UCSF-PDGM ``UCSF-PDGM-0433_FU007d``
-> ``UCSF-PDGM-0433``; otherwise the id itself), so that splits keep a patient's timepoints together.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from DMIFLib.cohort import MODALITIES, CohortCase, CohortError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
FILE_TAGS: dict[str, str] = {
    "t1ce": "t1c", "t1c": "t1c", "t1gd": "t1c",
    "t1": "t1", "t1n": "t1",
    "t2": "t2w", "t2w": "t2w",
    "flair": "flair", "t2f": "flair",
    "seg": "roi", "segm": "roi", "tumor_segmentation": "roi",
    "automated_approx_segm": "roi_automated",
    "brain_segmentation": "brain_mask",
}
"""File-name tag (lower case) -> modality, ``roi``, ``roi_automated`` or ``brain_mask``."""

_MASK_KEYS = ("roi", "roi_automated", "brain_mask")
_NAME = re.compile(r"^(?P<id>.+?)[_-](?P<tag>" + "|".join(sorted(FILE_TAGS, key=len, reverse=True)) + r")$",
                   re.IGNORECASE)
_SUBJECT_RULES = (
    re.compile(r"^(BraTS-[A-Za-z]+-\d+)-\d{3}$"),  # BraTS 2023/2024: <subject>-<timepoint>
    re.compile(r"^(UPENN-GBM-\d+)_\d{2}$"),  # UPENN-GBM: _11 pre-operative, _21 follow-up
    re.compile(r"^(UCSF-PDGM-\d+)_FU\w*$", re.IGNORECASE),  # UCSF-PDGM follow-up exams
)


def parse_file_name(name: str) -> tuple[str, str] | None:
    """``"BraTS-GLI-00000-000-t1c.nii.gz"`` -> ("BraTS-GLI-00000-000", "t1c"); None when not a tagged image."""
    lowered = name.lower()
    suffix = next((s for s in IMAGE_SUFFIXES if lowered.endswith(s)), None)
    if suffix is None:
        return None
    match = _NAME.match(name[: -len(suffix)])
    if match is None:
        return None
    return match["id"], FILE_TAGS[match["tag"].lower()]


def subject_of(case_id: str) -> str:
    """The patient a BraTS-family case id belongs to (see the module docstring)."""
    for rule in _SUBJECT_RULES:
        match = rule.match(case_id)
        if match:
            return match[1]
    return case_id


def _scan(root: Path) -> dict[Path, list[tuple[Path, str, str]]]:
    """Folder -> [(file, case id, key)] for every tagged image file under ``root`` (hidden folders skipped)."""
    found: dict[Path, list[tuple[Path, str, str]]] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        entries = []
        for name in sorted(files):
            parsed = parse_file_name(name)
            if parsed is not None and not name.startswith("."):
                entries.append((Path(folder) / name, *parsed))
        if entries:
            found[Path(folder)] = entries
    return found


def _one(files: list[Path], what: str) -> tuple[Path | None, str | None]:
    """(the file, None) for one file, (None, reason) for several."""
    if len(files) > 1:
        return None, f"{len(files)} {what} files ({', '.join(str(f) for f in files)})"
    return (files[0] if files else None), None


def brats_family_cases(root: str | os.PathLike, roi_labels: Sequence[int] | None = None
                       ) -> tuple[list[CohortCase], list[str]]:
    """Find every BraTS-family case under ``root``; returns (unlabelled cases, skipped ``"case: why"`` lines).

    Cases come in sorted folder order with ``extra["subject"]`` set (and ``extra["roi_labels"]`` = e.g.
    ``"1,2,4"`` when ``roi_labels`` is given: the label values that form the tumour box). Raises
    :class:`CohortError` when ``root`` is not a folder or holds no usable case.
    """
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: folder not found")
    scanned = _scan(root)
    mask_index: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for entries in scanned.values():
        if all(key in _MASK_KEYS for _, _, key in entries):
            for path, case_id, key in entries:
                mask_index[(case_id, key)].append(path)
    cases: list[CohortCase] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for folder, entries in scanned.items():
        if all(key in _MASK_KEYS for _, _, key in entries):
            continue
        where = folder.relative_to(root).as_posix() if folder != root else folder.name
        ids = sorted({case_id for _, case_id, _ in entries})
        if len(ids) > 1:
            listing = "; ".join(f"{i}: {', '.join(p.name for p, c, _ in entries if c == i)}" for i in ids[:3])
            skipped.append(f"{where}: its files belong to {len(ids)} cases ({listing}{'; ...' if len(ids) > 3 else ''})"
                           "; a case folder must hold one case's files")
            continue
        case_id = ids[0]
        if case_id in seen:
            skipped.append(f"{case_id}: found again in {where}; the one in {seen[case_id]} is kept")
            continue
        by_key: dict[str, list[Path]] = defaultdict(list)
        for path, _, key in entries:
            by_key[key].append(path)
        chosen: dict[str, Path] = {}
        problems = []
        for key in (*MODALITIES, *_MASK_KEYS):
            path, problem = _one(by_key.get(key, []), key)
            if problem:
                problems.append(problem)
            elif path is not None:
                chosen[key] = path
        for key in ("roi", "roi_automated"):
            if key not in chosen:
                path, problem = _one(mask_index.get((case_id, key), []), key)
                if problem:
                    problems.append(problem)
                elif path is not None:
                    chosen[key] = path
        if problems:
            skipped.append(f"{case_id}: {'; '.join(problems)}")
            continue
        roi = chosen.get("roi") or chosen.get("roi_automated")
        if roi is None:
            skipped.append(f"{case_id}: no tumour segmentation (<id>_seg, _segm, _tumor_segmentation or "
                           f"_automated_approx_segm) in {where} or in a folder of segmentations under {root}")
            continue
        seen[case_id] = where
        extra = {"subject": subject_of(case_id)}
        if "roi" not in chosen:
            extra["roi_source"] = "automated"
        if roi_labels:
            extra["roi_labels"] = ",".join(str(int(v)) for v in roi_labels)
        cases.append(CohortCase(case_id, {m: chosen[m] for m in MODALITIES if m in chosen}, str(roi),
                                brain_mask=chosen.get("brain_mask"), extra=extra))
    if not cases:
        raise CohortError(f"{root}: no BraTS-family case found ({'; '.join(skipped[:5]) or 'no tagged image file'})")
    return cases, skipped
