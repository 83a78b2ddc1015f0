"""DICOM series found by their headers, wherever the files lie, and classified by series (never by study).

:func:`scan_dicom` reads the headers (no pixels) of every DICOM file under a folder (``metadata/`` folders and
hidden files skipped; a file is DICOM when it has the ``DICM`` preamble) and groups them by SeriesInstanceUID.
:func:`classify_series` names a series' contrast from its own SeriesDescription, ImageType, ContrastBolusAgent
(0018,0010) and TR/TE - the StudyDescription is never used, so a study named "MRI Hd W WO GAD" does not make
its T2 a T1C:

1. ``SEG`` modality or the Segmentation Storage SOP class → ``seg``; other non-MR series and localizers → none.
2. FLAIR keyword → ``flair``.
3. a T2 keyword (``T2``, ``T2W``; not ``T2*``) → ``t2w``, before any contrast keyword: "Gad Ax T2 Straight" is T2W.
4. a T1-family keyword (``T1``, ``SPGR``, ``BRAVO``, ``FLASH``, ``MPRAGE``, ``TFE``) → ``t1c`` with a contrast
   keyword (``gad``, ``gd``, ``+C``, ``C+``, ``post``, ``contrast``, ``CE``) or a ContrastBolusAgent, unless the
   description says ``pre``/``without``/``WO``; else ``t1``.
5. no family keyword: ``FSE``/``TSE``/``K2`` → ``t2w``; else TR/TE decide (TE ≥ 60 ms and TR ≥ 1500 ms → ``t2w``;
   TE ≤ 30 ms and TR ≤ 1000 ms → T1 family, as in 4); else a contrast keyword together with a contrast agent
   tag → ``t1c``; else none.

A dual-echo series (PD + T2 in one SeriesInstanceUID: two EchoTimes) is split by echo; :func:`series_image`
takes the longer-TE echo for T2. Slices at one position without distinct echo times are refused.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.preprocessing.errors import PreprocessingError

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
"""Segmentation Storage."""

SKIPPED_FOLDERS = ("metadata",)
"""Folder names never descended into (the TCIA retrievers' metadata caches)."""

_HEADER_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
                "SeriesDescription", "StudyDescription", "SeriesNumber", "ImageType", "ContrastBolusAgent",
                "RepetitionTime", "EchoTime", "EchoNumbers", "ImagePositionPatient", "ImageOrientationPatient",
                "FrameOfReferenceUID", "Rows", "Columns")

_FLAIR = re.compile(r"flair|dark.?fluid")
_T2 = re.compile(r"(?<![a-z0-9])t2(?:w|wi)?(?![a-z0-9*]|\s*\*|_?star)")
_T1 = re.compile(r"(?<![a-z0-9])t1(?:w|wi)?(?![a-z0-9])|spgr|bravo|flash|mp.?rage|(?<![a-z])tfe(?![a-z])")
_T2_SEQUENCE = re.compile(r"(?<![a-z])(fse|tse|k2)(?![a-z])")
_CONTRAST = re.compile(r"(?<![a-z])(gad\w*|gd|post|contrast|ce|mdc)(?![a-z])|\+\s*c(?![a-z])|c\s*\+|\+\s*gd")
_PRE = re.compile(r"(?<![a-z])(pre|without|wo)(?![a-z])")


@dataclass
class DicomSeries:
    """One SeriesInstanceUID: its files and the header values the classification uses (TR/TE in ms)."""

    uid: str
    patient_id: str
    study_uid: str
    modality: str
    sop_class_uid: str
    description: str
    files: list[Path] = field(default_factory=list)
    study_description: str = ""
    series_number: int | None = None
    image_type: tuple[str, ...] = ()
    contrast_agent: str = ""
    repetition_time: float | None = None
    echo_times: tuple[float, ...] = ()
    frame_of_reference_uid: str = ""

    @property
    def is_seg(self) -> bool:
        return self.modality.upper() == "SEG" or self.sop_class_uid == SEG_SOP_CLASS

    def label(self) -> str:
        """``#<number> '<description>'`` for messages."""
        number = f"#{self.series_number} " if self.series_number is not None else ""
        return f"{number}'{self.description or self.uid}'"


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` has the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(root: Path) -> list[Path]:
    """Every DICOM file under ``root`` (sorted), skipping :data:`SKIPPED_FOLDERS` and hidden entries."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d.lower() not in SKIPPED_FOLDERS)
        for name in sorted(files):
            path = Path(folder) / name
            if not name.startswith(".") and is_dicom_file(path):
                found.append(path)
    return found


def _text(dataset, tag: str) -> str:
    value = dataset.get(tag, "")
    return "" if value is None else str(value).strip()


def _float(dataset, tag: str) -> float | None:
    try:
        value = dataset.get(tag)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def retriever_descriptions(root: Path) -> dict[str, str]:
    """SeriesInstanceUID → SeriesDescription from the TCIA retrievers' metadata files under ``root``.

    NBIA Data Retriever: ``metadata.csv`` (columns ``Series UID``, ``Series Description``); the TCIA data
    retriever CLI: ``metadata/<manifest>-metadata.csv`` (``SeriesInstanceUID``, ``SeriesDescription``) and
    ``metadata/<SeriesUID>.json`` (``Series UID``, ``Series Description``).
    """
    descriptions: dict[str, str] = {}
    for path in sorted(root.rglob("*metadata*.csv")):
        try:
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
                for row in csv.DictReader(handle):
                    uid = (row.get("SeriesInstanceUID") or row.get("Series UID") or "").strip()
                    text = (row.get("SeriesDescription") or row.get("Series Description") or "").strip()
                    if uid and text:
                        descriptions[uid] = text
        except (OSError, csv.Error):
            continue
    for path in sorted(root.rglob("metadata/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("Series UID") and data.get("Series Description"):
            descriptions[str(data["Series UID"])] = str(data["Series Description"])
    return descriptions


def scan_dicom(root: str | os.PathLike, descriptions: Mapping[str, str] | None = None) -> list[DicomSeries]:
    """Group the DICOM files under ``root`` by SeriesInstanceUID (headers only).

    ``descriptions`` (e.g. :func:`retriever_descriptions`) fills a missing SeriesDescription. Files that cannot be
    parsed are ignored; a file without SeriesInstanceUID is ignored.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(root)
    descriptions = descriptions or {}
    series: dict[str, DicomSeries] = {}
    echoes: dict[str, set[float]] = defaultdict(set)
    for path in dicom_files(root):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        uid = _text(ds, "SeriesInstanceUID")
        if not uid:
            continue
        if uid not in series:
            number = _text(ds, "SeriesNumber")
            series[uid] = DicomSeries(
                uid=uid, patient_id=_text(ds, "PatientID"), study_uid=_text(ds, "StudyInstanceUID"),
                modality=_text(ds, "Modality"), sop_class_uid=_text(ds, "SOPClassUID"),
                description=_text(ds, "SeriesDescription") or descriptions.get(uid, ""),
                study_description=_text(ds, "StudyDescription"),
                series_number=int(float(number)) if re.fullmatch(r"-?\d+(\.0*)?", number) else None,
                image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or ())),
                contrast_agent=_text(ds, "ContrastBolusAgent"), repetition_time=_float(ds, "RepetitionTime"),
                frame_of_reference_uid=_text(ds, "FrameOfReferenceUID"))
        entry = series[uid]
        entry.files.append(path)
        echo = _float(ds, "EchoTime")
        if echo is not None:
            echoes[uid].add(round(echo, 3))
        if not entry.contrast_agent:
            entry.contrast_agent = _text(ds, "ContrastBolusAgent")
    for uid, entry in series.items():
        entry.echo_times = tuple(sorted(echoes[uid]))
    return sorted(series.values(), key=lambda s: (s.patient_id, s.study_uid, s.series_number or 0, s.uid))


def _family_from_timing(series: DicomSeries) -> str | None:
    tr, te = series.repetition_time, (max(series.echo_times) if series.echo_times else None)
    if tr is None or te is None:
        return None
    if te >= 60 and tr >= 1500:
        return "t2"
    if te <= 30 and tr <= 1000:
        return "t1"
    return None


def has_contrast(series: DicomSeries) -> bool:
    """A contrast keyword in the series' own description or a contrast agent tag - unless the description says
    "pre" / "without" (and not "post")."""
    text = series.description.lower()
    if _PRE.search(text) and "post" not in text:
        return False
    return bool(_CONTRAST.search(text)) or bool(series.contrast_agent)


def classify_series(series: DicomSeries) -> str | None:
    """``seg``, ``flair``, ``t2w``, ``t1c``, ``t1`` or None (see the module docstring for the rules)."""
    if series.is_seg:
        return "seg"
    if series.modality.upper() != "MR" or "LOCALIZER" in series.image_type:
        return None
    text = series.description.lower()
    if _FLAIR.search(text):
        return "flair"
    if _T2.search(text):
        return "t2w"
    family = "t1" if _T1.search(text) else None
    if family is None and _T2_SEQUENCE.search(text):
        return "t2w"
    family = family or _family_from_timing(series)
    if family == "t2":
        return "t2w"
    if family == "t1":
        return "t1c" if has_contrast(series) else "t1"
    if _CONTRAST.search(text) and series.contrast_agent:
        return "t1c"
    return None


def _slice_headers(files: Sequence[Path]) -> list[tuple[Path, np.ndarray, np.ndarray, float | None]]:
    import pydicom

    rows = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["ImagePositionPatient", "ImageOrientationPatient", "EchoTime"])
        position = np.asarray([float(v) for v in ds.get("ImagePositionPatient") or (0, 0, 0)])
        orientation = np.asarray([float(v) for v in ds.get("ImageOrientationPatient") or (1, 0, 0, 0, 1, 0)])
        echo = _float(ds, "EchoTime")
        rows.append((path, position, orientation, None if echo is None else round(echo, 3)))
    return rows


def echo_files(series: DicomSeries, echo: float | None = None) -> list[Path]:
    """The files of one echo of ``series`` sorted along the slice normal (all files when ``echo`` is None).

    Raises :class:`PreprocessingError` when two slices share a position (an interleaved multi-echo or repeated
    acquisition that the echo times do not tell apart).
    """
    rows = [r for r in _slice_headers(series.files) if echo is None or r[3] == echo]
    normal = np.cross(rows[0][2][:3], rows[0][2][3:])
    rows.sort(key=lambda r: float(r[1] @ normal))
    depths = np.round([float(r[1] @ normal) for r in rows], 3)
    if len(set(depths.tolist())) != len(depths):
        where = f"echo {echo} ms of " if echo is not None else ""
        raise PreprocessingError(f"{where}series {series.label()} has several slices at one position "
                                 f"(echo times {list(series.echo_times) or 'not given'}); it cannot be read as one "
                                 "volume", file=series.files[0].parent)
    return [r[0] for r in rows]


def read_series(files: Sequence[Path]) -> sitk.Image:
    """Read the given slice files (already in slice order) as one 3-D image (LPS)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    try:
        return reader.Execute()
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise PreprocessingError(f"cannot read the DICOM series ({first})", file=files[0].parent) from error


def series_image(series: DicomSeries, modality: str, out_file: Path) -> Path:
    """A path SimpleITK reads as ``series``: its folder when the folder holds exactly this one single-echo
    series, else ``out_file`` (written, NIfTI) holding the slices of the right echo.

    For a dual-echo series the ``t2w`` volume is the longer echo time (the shorter is proton density); other
    modalities refuse a multi-echo series. Raises :class:`PreprocessingError`.
    """
    from DMIFLib.preprocessing.io import write_image

    echo = None
    if len(series.echo_times) > 1:
        if modality != "t2w":
            raise PreprocessingError(f"series {series.label()} holds {len(series.echo_times)} echoes "
                                     f"({list(series.echo_times)} ms); only a T2 dual echo is split",
                                     file=series.files[0].parent)
        echo = max(series.echo_times)
    files = echo_files(series, echo)
    folder = series.files[0].parent
    folder_files = {p for p in folder.iterdir() if p.is_file() and is_dicom_file(p)}
    if echo is None and all(f.parent == folder for f in series.files) and folder_files == set(series.files):
        return folder
    write_image(read_series(files), out_file)
    return out_file


def choose(candidates: Iterable[DicomSeries], prefer_uid: str | None = None) -> DicomSeries | None:
    """The series to use among candidates of one modality: ``prefer_uid`` (the one the SEG references), else the
    one with the most slices, then the lowest series number."""
    candidates = list(candidates)
    for series in candidates:
        if series.uid == prefer_uid:
            return series
    if not candidates:
        return None
    return sorted(candidates, key=lambda s: (-len(s.files), s.series_number or 0))[0]
