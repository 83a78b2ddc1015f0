"""Label sheets: one row per patient, an id column and a label column, read from ``.xlsx`` or CSV.

- ``.xlsx`` / ``.xlsm`` are read with openpyxl (first worksheet, first non-empty row is the header). The TCIA
  LGG-1p19qDeletion sheet ``TCIA_LGG_cases_159.xlsx`` has the columns ``Filename, 1p/19q, Grade, Type``.
- CSV / TSV / TXT: the delimiter is sniffed (``,`` ``;`` tab ``|``) and the encoding tried in the order
  UTF-8 (with or without BOM), cp1252, latin-1 (which reads any byte).
- The id column is ``--id-column`` or the first of :data:`ID_COLUMNS`; the label column is ``--label-column``
  or the first of :data:`LABEL_COLUMNS` (header names compared case- and space-insensitively).
- Values go through a value map: :data:`DEFAULT_VALUE_MAP` (1p/19q codes of the TCIA sheet, UCSF-PDGM's
  ``co-deletion`` / ``relative co-deletion`` / ``intact``, 0/1, yes/no) updated by the user's
  ``--label-map "d/d=1,n/n=0,unknown=skip"``. A value mapped to ``skip`` (by default ``unknown``, empty, NA)
  skips the patient with a note; a value the map does not know is an error naming the row.

Ids are matched exactly after :func:`normalize_id` (never by prefix: ``LGG-1040`` does not take ``LGG-104``'s
label).
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from DMIFLib.cohort import CohortCase, CohortError

ID_COLUMNS: tuple[str, ...] = ("patient_id", "Filename", "ID", "Patient", "PatientID", "Patient ID",
                               "Subject ID", "SubjectID", "subject", "case", "case_id", "BraTS21ID",
                               "BraTS2021", "BraTS_2020_subject_ID")
"""Header names taken as the patient id column, in this order, unless ``id_column`` is given."""

LABEL_COLUMNS: tuple[str, ...] = ("label", "1p/19q", "1p19q", "1p/19q status", "codeletion")
"""Header names taken as the label column, in this order, unless ``label_column`` is given."""

SKIP = "skip"
"""The value-map target that skips a patient (with a note) instead of labelling it."""

DEFAULT_VALUE_MAP: dict[str, int | str] = {
    "d/d": 1, "n/n": 0, "n/d": 0, "d/n": 0,  # TCIA LGG-1p19qDeletion: deleted (d) / not (n) on 1p / 19q
    "co-deletion": 1, "codeletion": 1, "relative co-deletion": 1, "co-deleted": 1, "codeleted": 1,
    "intact": 0, "non-deleted": 0, "not deleted": 0,  # UCSF-PDGM metadata, column "1p/19q"
    "1": 1, "0": 0, "yes": 1, "no": 0, "true": 1, "false": 0, "positive": 1, "negative": 0,
    "unknown": SKIP, "": SKIP, "na": SKIP, "n/a": SKIP, "nan": SKIP, "not available": SKIP, "-": SKIP,
}
"""Label value (lower case, spaces collapsed) → 0/1 or :data:`SKIP`."""

_SUFFIXES_XLSX = (".xlsx", ".xlsm")
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


def normalize_id(patient_id: str) -> str:
    """The form two ids are compared in: NFKC, trimmed, lower case, runs of space/``_``/dashes → ``-``, and
    leading zeros dropped from every digit run.

    So ``UCSF-PDGM-004`` = ``UCSF-PDGM-0004`` = ``ucsf_pdgm_4`` and ``LGG-104`` = ``lgg 104``, while ``LGG-104``
    ≠ ``LGG-1040`` (digits are compared as whole numbers, never as prefixes).
    """
    text = unicodedata.normalize("NFKC", str(patient_id)).strip().lower()
    text = re.sub(r"[\s_\-\u2010-\u2015]+", "-", text)
    return re.sub(r"\d+", lambda match: str(int(match.group())), text)


def _value_key(value: str) -> str:
    return " ".join(str(value).strip().lower().split())


def parse_label_map(text: str) -> dict[str, int | str]:
    """``"d/d=1,n/n=0,unknown=skip"`` → ``{"d/d": 1, "n/n": 0, "unknown": "skip"}`` (keys lower case).

    Pairs are separated by ``,`` or ``;``; a target is ``0``, ``1`` or ``skip``. Raises :class:`CohortError`.
    """
    mapping: dict[str, int | str] = {}
    for pair in re.split(r"[,;]", text):
        if not pair.strip():
            continue
        key, sep, target = pair.rpartition("=")
        target = target.strip().lower()
        if not sep or target not in ("0", "1", SKIP):
            raise CohortError(f"--label-map: '{pair.strip()}' is not VALUE=0, VALUE=1 or VALUE=skip")
        mapping[_value_key(key)] = SKIP if target == SKIP else int(target)
    if not mapping:
        raise CohortError("--label-map: no VALUE=0/1/skip pair given")
    return mapping


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_xlsx(path: Path) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises zipfile, KeyError and its own errors for a damaged file
        raise CohortError(f"{path}: cannot read the spreadsheet ({type(error).__name__}: {error})") from error
    try:
        sheet = workbook.worksheets[0]
        return [[_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _decode(path: Path, data: bytes) -> str:
    for encoding in _ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CohortError(f"{path}: cannot decode the text")  # unreachable: latin-1 decodes any byte


def _read_delimited(path: Path) -> list[list[str]]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CohortError(f"{path}: cannot read the label sheet ({error.strerror or error})") from error
    if data[:2] == b"PK":
        raise CohortError(f"{path}: this is a zip/Excel file; give it the .xlsx extension")
    text = _decode(path, data)
    sample = "\n".join(text.splitlines()[:20])
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        delimiter = max(",;\t|", key=first.count)
        dialect = csv.excel_tab if delimiter == "\t" else type("_Dialect", (csv.excel,), {"delimiter": delimiter})
    return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text), dialect)]


def read_table(path: str | os.PathLike) -> list[list[str]]:
    """Rows of text cells from an ``.xlsx`` or a delimited text file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CohortError(f"{path}: label sheet not found")
    rows = _read_xlsx(path) if path.suffix.lower() in _SUFFIXES_XLSX else _read_delimited(path)
    return [row for row in rows if any(cell for cell in row)]


def _header_key(name: str) -> str:
    return "".join(name.lower().split())


def _find_column(header: Sequence[str], wanted: str | None, candidates: Iterable[str], what: str,
                 path: Path) -> int:
    keys = [_header_key(h) for h in header]
    for name in ([wanted] if wanted else list(candidates)):
        if _header_key(name) in keys:
            return keys.index(_header_key(name))
    asked = f"'{wanted}'" if wanted else "one of " + ", ".join(candidates)
    raise CohortError(f"{path}: no {what} column {asked}; the columns are {', '.join(h for h in header if h)}")


@dataclass
class LabelSheet:
    """A read label sheet: ``labels`` and ``skipped`` are keyed by :func:`normalize_id`."""

    path: Path
    id_column: str
    label_column: str
    labels: dict[str, int]
    """Normalised id → 0/1."""
    skipped: dict[str, str]
    """Normalised id → the value that made the patient skipped (e.g. ``unknown``)."""
    ids: dict[str, str] = field(default_factory=dict)
    """Normalised id → the id as written in the sheet."""


def read_label_sheet(path: str | os.PathLike, label_column: str | None = None, id_column: str | None = None,
                     value_map: Mapping[str, int | str] | None = None) -> LabelSheet:
    """Read ``path`` (xlsx or CSV) into a :class:`LabelSheet`.

    ``value_map`` entries (see :func:`parse_label_map`) are added to and override :data:`DEFAULT_VALUE_MAP`.
    Raises :class:`CohortError` naming the file (and row) for a missing column, an unknown value, or one patient
    given two different labels (also after id normalisation, e.g. ``UCSF-PDGM-004`` and ``UCSF-PDGM-0004``).
    """
    path = Path(path)
    rows = read_table(path)
    if not rows:
        raise CohortError(f"{path}: the label sheet is empty")
    header = rows[0]
    id_index = _find_column(header, id_column, ID_COLUMNS, "patient id", path)
    label_index = _find_column(header, label_column, LABEL_COLUMNS, "label", path)
    mapping = {**DEFAULT_VALUE_MAP, **{_value_key(k): v for k, v in (value_map or {}).items()}}
    sheet = LabelSheet(path, header[id_index], header[label_index], {}, {})
    lines: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        patient = row[id_index] if id_index < len(row) else ""
        if not patient:
            continue
        raw = row[label_index] if label_index < len(row) else ""
        key = normalize_id(patient)
        target = mapping.get(_value_key(raw))
        if target is None:
            known = ", ".join(sorted(k for k in mapping if k))
            raise CohortError(f"{path}, row {line} ({patient}): '{raw}' in column '{sheet.label_column}' is not a "
                              f"known label value ({known}); map it with --label-map \"{raw}=1\" (or =0, =skip)")
        if key in lines:
            previous = sheet.labels.get(key, sheet.skipped.get(key))
            if previous != (raw if target == SKIP else target):
                raise CohortError(f"{path}, row {line} ({patient}): the same patient as row {lines[key]} "
                                  f"({sheet.ids[key]}) with another label")
            continue
        lines[key] = line
        sheet.ids[key] = patient
        if target == SKIP:
            sheet.skipped[key] = raw
        else:
            sheet.labels[key] = int(target)
    if not sheet.labels and not sheet.skipped:
        raise CohortError(f"{path}: no patient rows under '{sheet.id_column}'")
    return sheet


@dataclass
class LabelReport:
    """What :func:`apply_labels` did: labelled cases, skipped cases (one line each) and unmatched ids."""

    cases: list[CohortCase]
    skipped: list[str]
    sheet_only: list[str]
    """Ids in the sheet with no case on disk (as written in the sheet)."""
    disk_only: list[str]
    """Case ids on disk that the sheet does not list (these cases are skipped)."""


def apply_labels(cases: Sequence[CohortCase], sheet: LabelSheet) -> LabelReport:
    """Label ``cases`` from ``sheet`` by exact normalised id.

    A case whose id the sheet does not list is looked up by its ``subject`` column (BraTS/UPENN/UCSF follow-up
    time points share their subject's label). A case the sheet does not list, or whose value maps to ``skip``, is
    left out and reported in ``skipped``; every other case is returned with its 0/1 ``label``.
    """
    labelled, skipped, disk_only = [], [], []
    seen: set[str] = set()
    for case in cases:
        key = normalize_id(case.patient_id)
        subject = case.extra.get("subject", "")
        if key not in sheet.ids and subject:
            key = normalize_id(subject)
        seen.add(key)
        if key in sheet.labels:
            labelled.append(replace(case, label=sheet.labels[key]))
        elif key in sheet.skipped:
            skipped.append(f"{case.patient_id}: label '{sheet.skipped[key]}' in {sheet.path.name} "
                           f"(column '{sheet.label_column}') is not usable")
        else:
            disk_only.append(case.patient_id)
            skipped.append(f"{case.patient_id}: not in {sheet.path.name} (column '{sheet.id_column}')")
    sheet_only = [sheet.ids[k] for k in sheet.ids if k not in seen]
    return LabelReport(labelled, skipped, sheet_only, disk_only)
