"""The cohort table (``cohort.csv``): one row per patient.

Columns: ``patient_id``, one or more modality columns (:data:`MODALITIES`: ``t1c``, ``t2w``, ``flair``, ``t1``),
``roi[, label][, split][, brain_mask]``; any other column is kept as-is in :attr:`CohortCase.extra`. Relative
paths resolve against the CSV's folder. ``roi`` is a path to a tumour label image or to a Slicer Markups ROI
(``.mrk.json``), or an inline box (see :mod:`DMIFLib.preprocessing.roi`). ``label`` is 0/1 (1 = marker present,
e.g. 1p/19q co-deleted) or empty for cases to predict. ``split`` is ``train``/``test`` (optional; a patient-level
split is made otherwise).

Two optional extra columns have a meaning: ``subject`` groups rows that are timepoints of one patient (splits keep
a subject's rows on one side; empty = the row's own ``patient_id``), and ``roi_labels`` (e.g. ``1,2,4``) names the
label values of a label-image ROI that form the tumour box (empty = every non-zero voxel).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from DMIFLib.atomic import atomic_write_text

MODALITIES: tuple[str, ...] = ("t1c", "t2w", "flair", "t1")
"""Known modality columns, in the order training concatenates a cohort's modalities as the fused net's channels.

``t1`` (native, pre-contrast T1: BraTS ``t1``/``t1n``, UCSF/UPENN ``T1``) comes last, so that every cohort without
it keeps the channel order it had before ``t1`` was known. A model file stores its own channel order (its
``modalities`` list), which prediction follows whatever this order is.
"""

REFERENCE_PREFERENCE: tuple[str, ...] = ("t1c", "t1", "t2w", "flair")
"""Every modality is sampled on the grid of the first of these that a case has: T1C when present (the paper's
reference), else native T1 (the same 3-D T1 acquisition family), else T2W, else FLAIR."""

INLINE_ROI_PREFIXES: tuple[str, ...] = ("ras:", "ijk:")
"""An ``roi`` value starting with one of these is an inline box, not a path."""

SPLITS = ("train", "test")
_PATH_COLUMNS = (*MODALITIES, "roi", "brain_mask")
_KNOWN_COLUMNS = ("patient_id", *MODALITIES, "roi", "label", "split", "brain_mask")
_MODALITY_ALIASES = {"t1c": ("t1ce", "t1gd", "t1post", "t1contrast", "t1wce", "t1cgd"),
                     "t2w": ("t2", "t2weighted"), "flair": ("t2flair", "flairt2")}
"""Lower-case, letters-and-digits-only spellings of a modality column that are refused as likely typos."""


def reference_modality(names: Iterable[str]) -> str:
    """The reference modality among ``names`` (the first of :data:`REFERENCE_PREFERENCE` present; otherwise the
    first name). Raises ``ValueError`` for an empty ``names``."""
    names = list(names)
    if not names:
        raise ValueError("no modality given")
    return next((m for m in REFERENCE_PREFERENCE if m in names), names[0])


def parse_roi_labels(text: str) -> tuple[int, ...] | None:
    """``"1,2,4"`` -> (1, 2, 4); empty -> None (every non-zero voxel). Raises ``ValueError`` for other text."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        return None
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"roi labels '{text}' are not comma-separated whole numbers (e.g. 1,2,4)") from None
    if any(v <= 0 for v in values):
        raise ValueError(f"roi labels '{text}' must be positive (0 is the background)")
    return values


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

    @property
    def reference(self) -> str:
        """The modality whose grid the others are resampled onto (:func:`reference_modality`)."""
        return reference_modality(self.modalities)

    @property
    def subject(self) -> str:
        """The patient this row is a timepoint of (the ``subject`` column; default: ``patient_id``)."""
        return self.extra.get("subject") or self.patient_id

    @property
    def roi_labels(self) -> tuple[int, ...] | None:
        """The label values that form the box (the ``roi_labels`` column), or None for every non-zero voxel."""
        return parse_roi_labels(self.extra.get("roi_labels", ""))

    def roi_is_inline(self) -> bool:
        return self.roi.startswith(INLINE_ROI_PREFIXES)

    def only(self, modalities: Sequence[str]) -> CohortCase:
        """A copy with only ``modalities`` (e.g. a model's; the case must have them), so that a case's other images
        are neither read nor allowed to change the reference grid. Raises :class:`CohortError` when one is missing."""
        missing = [m for m in modalities if m not in self.images]
        if missing:
            raise CohortError(f"{self.patient_id}: no {', '.join(missing)} image (needed: {', '.join(modalities)})")
        return replace(self, images={m: self.images[m] for m in modalities})


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _decode(csv_path: Path) -> str:
    """The table's text: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252 (Excel's "CSV")."""
    try:
        data = csv_path.read_bytes()
    except OSError as error:
        raise CohortError(f"{csv_path}: cannot read the cohort file ({error.strerror or error})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "cp1252")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CohortError(f"{csv_path}: not a text file in UTF-8, UTF-16 or Windows-1252; save it as UTF-8 CSV")


def _modality_typo(column: str) -> str | None:
    """The modality an unknown column name probably means (``T2``, ``t2_w``, ``T1CE``), or None."""
    key = re.sub(r"[^a-z0-9]", "", column.lower())
    for modality in MODALITIES:
        if key == modality or key in _MODALITY_ALIASES.get(modality, ()):
            return modality
    return None


def _rename_columns(header: list[str], csv_path: Path) -> dict[str, str]:
    """Map of header name -> known column name for names that differ only in case (``T2W``, ``Flair``).

    Raises :class:`CohortError` for an unknown column that looks like a modality (``t2``, ``T1CE``), which would
    otherwise be dropped silently, and for two columns that mean the same known column.
    """
    rename = {}
    for name in header:
        if name in _KNOWN_COLUMNS:
            continue
        if name.lower() in _KNOWN_COLUMNS:
            rename[name] = name.lower()
            continue
        modality = _modality_typo(name)
        if modality is not None:
            raise CohortError(f"{csv_path}: column '{name}' looks like modality '{modality}' but is not its name; "
                              f"rename it to '{modality}' (known columns: {', '.join(_KNOWN_COLUMNS)})")
    targets = [rename.get(name, name) for name in header]
    doubled = sorted({t for t in targets if t and targets.count(t) > 1})  # unnamed columns: trailing commas
    if doubled:
        raise CohortError(f"{csv_path}: column(s) {', '.join(doubled)} appear more than once "
                          "(column names are matched without regard to case)")
    return rename


def _join_split_inline_roi(fields: list[str], header: list[str]) -> list[str] | None:
    """An unquoted inline box (``ras:1,2,3,4,5,6`` split by the CSV commas into 6 fields) joined back, when the row
    has exactly the 5 extra fields that the split made and they are numbers; None otherwise."""
    if "roi" not in header or len(fields) != len(header) + 5:
        return None
    at = header.index("roi")
    parts = fields[at:at + 6]
    if not parts[0].strip().startswith(INLINE_ROI_PREFIXES):
        return None
    try:
        for part in (parts[0].strip()[4:], *parts[1:]):
            float(part)
    except ValueError:
        return None
    return [*fields[:at], ",".join(p.strip() for p in parts), *fields[at + 6:]]


def _inline_roi_problem(roi: str) -> str | None:
    """Why an inline ``roi`` value is unusable, for a value that the CSV commas cut short, else None."""
    numbers = [v for v in roi[4:].replace(";", ",").split(",") if v.strip()]
    if len(numbers) >= 6:
        return None
    return (f"inline ROI '{roi}' has {len(numbers)} of 6 numbers: the commas of an inline box split it into "
            f"several CSV columns; quote it (\"{roi[:4]}X,Y,Z,SX,SY,SZ\") or separate the numbers with ';'")


def read_cohort(csv_path: str | os.PathLike, require_labels: bool = False,
                require_modalities: Sequence[str] = ()) -> list[CohortCase]:
    """Read and validate ``cohort.csv`` (UTF-8, UTF-16 with BOM, or Windows-1252 text).

    Raises :class:`CohortError` naming the file, the row and the problem: an unreadable file, a missing column,
    no modality column, a column that looks like a misspelt modality (``t2``, ``T1CE``; a known name in other
    case, ``T2W``, is accepted), a row without any image, a duplicate patient, a label other than 0/1, an unknown
    split, a bad ``roi_labels``, an inline box cut by unquoted commas, a missing modality that
    ``require_modalities`` (e.g. a model's modalities) asks for. Image files are not opened here (the
    preprocessing reports unreadable images per case).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CohortError(f"{csv_path}: cohort file not found")
    base = csv_path.resolve().parent
    try:
        rows = list(csv.reader(io.StringIO(_decode(csv_path), newline="")))
    except csv.Error as error:
        raise CohortError(f"{csv_path}: not a readable CSV table ({error})") from None
    raw_header = [name.strip() for name in (rows[0] if rows else [])]
    rename = _rename_columns(raw_header, csv_path)
    header = [rename.get(name, name) for name in raw_header]
    missing = [c for c in ("patient_id", "roi") if c not in header]
    if missing:
        raise CohortError(f"{csv_path}: missing column(s) {', '.join(missing)}; found {', '.join(raw_header)}")
    if not any(m in header for m in MODALITIES):
        raise CohortError(f"{csv_path}: no modality column ({', '.join(MODALITIES)}); found {', '.join(raw_header)}")
    absent = [m for m in require_modalities if m not in header]
    if absent:
        raise CohortError(f"{csv_path}: the model needs modalities {', '.join(require_modalities)}; column(s) "
                          f"{', '.join(absent)} missing (found {', '.join(m for m in MODALITIES if m in header)})")
    if require_labels and "label" not in header:
        raise CohortError(f"{csv_path}: a 'label' column (0/1) is needed for training or evaluation")
    cases: list[CohortCase] = []
    seen: set[str] = set()
    for line_number, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue  # a blank line
        fields = _join_split_inline_roi(fields, header) or fields
        row = {k: (v or "").strip() for k, v in zip(header, fields, strict=False) if k}
        where = f"{csv_path}, line {line_number}"
        patient_id = row.get("patient_id", "")
        if not patient_id:
            raise CohortError(f"{where}: empty patient_id")
        if patient_id in seen:
            raise CohortError(f"{where}: patient_id '{patient_id}' appears twice")
        seen.add(patient_id)
        images = {m: _resolve(row[m], base) for m in MODALITIES if row.get(m)}
        if not images:
            raise CohortError(f"{where} ({patient_id}): no image path (columns "
                              f"{', '.join(m for m in MODALITIES if m in header)} are empty)")
        for column in require_modalities:
            if column not in images:
                raise CohortError(f"{where} ({patient_id}): empty '{column}' path, which the model needs")
        roi = row.get("roi", "")
        if not roi:
            raise CohortError(f"{where} ({patient_id}): empty 'roi' (a label image, a .mrk.json or an inline box)")
        if roi.startswith(INLINE_ROI_PREFIXES):
            problem = _inline_roi_problem(roi)
            if problem:
                raise CohortError(f"{where} ({patient_id}): {problem}")
        else:
            roi = str(_resolve(roi, base))
        if any(f.strip() for f in fields[len(header):]):
            raise CohortError(f"{where} ({patient_id}): {len(fields)} fields but {len(header)} columns; quote "
                              "values that contain commas")
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
        try:
            parse_roi_labels(row.get("roi_labels", ""))
        except ValueError as error:
            raise CohortError(f"{where} ({patient_id}): {error}") from None
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
