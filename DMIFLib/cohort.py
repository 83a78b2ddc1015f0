"""The cohort table (``cohort.csv``): one row per patient.

Columns: ``patient_id, t1c[, t2w][, flair], roi[, label][, split][, brain_mask]``; any other column is kept
as-is in :attr:`CohortCase.extra`. Relative paths resolve against the CSV's folder. ``roi`` is a path to a
tumour label image or to a Slicer Markups ROI (``.mrk.json``), or an inline box (see
:mod:`DMIFLib.preprocessing.roi`). ``label`` is 0/1 (1 = marker present, e.g. 1p/19q co-deleted) or empty
for cases to predict. ``split`` is ``train``/``test`` (optional; a patient-level split is made otherwise).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from DMIFLib.atomic import atomic_write_text

MODALITIES: tuple[str, ...] = ("t1c", "t2w", "flair")
"""Known modality columns, in the order the multimodal net concatenates them."""

REFERENCE_MODALITY = "t1c"
"""Every modality is sampled on this modality's (registered) grid."""

INLINE_ROI_PREFIXES: tuple[str, ...] = ("ras:", "ijk:")
"""An ``roi`` value starting with one of these is an inline box, not a path."""

SPLITS = ("train", "test")
_PATH_COLUMNS = (*MODALITIES, "roi", "brain_mask")
_KNOWN_COLUMNS = ("patient_id", *MODALITIES, "roi", "label", "split", "brain_mask")


class CohortError(ValueError):
    """A cohort table that cannot be used; the message names the file, row and problem."""


@dataclass
class CohortCase:
    """One patient: image paths per modality, the tumour ROI, and (optionally) the label and split."""

    patient_id: str
    images: dict[str, Path]
    roi: str
    label: int | None = None
    split: str | None = None
    brain_mask: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.images)

    def roi_is_inline(self) -> bool:
        return self.roi.startswith(INLINE_ROI_PREFIXES)


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def read_cohort(csv_path: str | os.PathLike, require_labels: bool = False,
                require_modalities: Sequence[str] = ()) -> list[CohortCase]:
    """Read and validate ``cohort.csv``.

    Raises :class:`CohortError` naming the file, the row and the problem: a missing column, a duplicate
    patient, a label other than 0/1, an unknown split, a missing modality that ``require_modalities`` asks
    for. Files are not opened here (the preprocessing reports unreadable images per case).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CohortError(f"{csv_path}: cohort file not found")
    base = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [c for c in ("patient_id", REFERENCE_MODALITY, "roi") if c not in header]
        if missing:
            raise CohortError(f"{csv_path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}")
        for column in require_modalities:
            if column not in header:
                raise CohortError(f"{csv_path}: the model needs modality column '{column}', which is missing")
        if require_labels and "label" not in header:
            raise CohortError(f"{csv_path}: a 'label' column (0/1) is needed for training or evaluation")
        cases: list[CohortCase] = []
        seen: set[str] = set()
        for line_number, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{csv_path}, line {line_number}"
            patient_id = row.get("patient_id", "")
            if not patient_id:
                raise CohortError(f"{where}: empty patient_id")
            if patient_id in seen:
                raise CohortError(f"{where}: patient_id '{patient_id}' appears twice")
            seen.add(patient_id)
            images = {m: _resolve(row[m], base) for m in MODALITIES if row.get(m)}
            if REFERENCE_MODALITY not in images:
                raise CohortError(f"{where} ({patient_id}): empty '{REFERENCE_MODALITY}' path")
            for column in require_modalities:
                if column not in images:
                    raise CohortError(f"{where} ({patient_id}): empty '{column}' path, which the model needs")
            roi = row.get("roi", "")
            if not roi:
                raise CohortError(f"{where} ({patient_id}): empty 'roi' (a label image, a .mrk.json or an inline box)")
            if not roi.startswith(INLINE_ROI_PREFIXES):
                roi = str(_resolve(roi, base))
            label_text = row.get("label", "")
            label: int | None = None
            if label_text:
                if label_text not in ("0", "1", "0.0", "1.0"):
                    raise CohortError(f"{where} ({patient_id}): label '{label_text}' is not 0 or 1")
                label = int(float(label_text))
            elif require_labels:
                raise CohortError(f"{where} ({patient_id}): empty label; training and evaluation need 0 or 1")
            split = row.get("split") or None
            if split is not None and split not in SPLITS:
                raise CohortError(f"{where} ({patient_id}): split '{split}' is not one of {', '.join(SPLITS)}")
            mask = row.get("brain_mask")
            cases.append(CohortCase(
                patient_id=patient_id, images=images, roi=roi, label=label, split=split,
                brain_mask=_resolve(mask, base) if mask else None,
                extra={k: v for k, v in row.items() if k not in _KNOWN_COLUMNS},
            ))
    if not cases:
        raise CohortError(f"{csv_path}: no patients")
    return cases


def cohort_to_csv_text(cases: Iterable[CohortCase], base: Path | None = None) -> str:
    """Serialise cases as cohort CSV text; paths are written relative to ``base`` when they lie under it."""
    cases = list(cases)

    def rel(path: Path) -> str:
        if base is not None:
            try:
                return os.path.relpath(path, base)
            except ValueError:  # another drive on Windows
                pass
        return str(path)

    modalities = [m for m in MODALITIES if any(m in c.images for c in cases)]
    extra_columns = sorted({k for c in cases for k in c.extra})
    columns = ["patient_id", *modalities, "roi", "label", "split"]
    if any(c.brain_mask for c in cases):
        columns.append("brain_mask")
    columns += extra_columns
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for case in cases:
        row = {"patient_id": case.patient_id,
               "roi": case.roi if case.roi_is_inline() else rel(Path(case.roi)),
               "label": "" if case.label is None else str(case.label),
               "split": case.split or ""}
        row.update({m: rel(case.images[m]) for m in modalities if m in case.images})
        if "brain_mask" in columns:
            row["brain_mask"] = rel(case.brain_mask) if case.brain_mask else ""
        row.update(case.extra)
        writer.writerow(row)
    return out.getvalue()


def write_cohort(cases: Iterable[CohortCase], csv_path: str | os.PathLike) -> Path:
    """Write ``cohort.csv`` atomically, with paths relative to its folder."""
    csv_path = Path(csv_path)
    atomic_write_text(csv_path, cohort_to_csv_text(cases, base=csv_path.resolve().parent))
    return csv_path
