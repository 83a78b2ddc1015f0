"""Image readers that keep the physical geometry: NIfTI, NRRD, MHA/MHD and DICOM series folders (SimpleITK).

SimpleITK reads every format into LPS physical space (origin, spacing, direction): a NIfTI's RAS-signed
qform/sform and an NRRD's ``space`` field are both converted on reading, so images from different formats
share one physical frame.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.atomic import atomic_path
from DMIFLib.preprocessing.errors import PreprocessingError

SPACING_RANGE_MM = (0.05, 20.0)
"""Voxel spacings outside this range (mm) are not a brain MRI: a header in other units, or a broken header."""

_NIFTI_DTYPE_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                      1536: 16, 1792: 16, 2048: 32, 2304: 4}


def _nifti_data_end(header: bytes) -> int | None:
    """Byte offset where a NIfTI-1/2 file's voxel data ends (vox_offset + voxels x bytes), or None if unknown."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(f"{endian}i", header[:4])[0] == 348:
            dims = struct.unpack(f"{endian}8h", header[40:56])
            datatype = struct.unpack(f"{endian}h", header[70:72])[0]
            offset = max(int(struct.unpack(f"{endian}f", header[108:112])[0]), 352)
            break
        if len(header) >= 540 and struct.unpack(f"{endian}i", header[:4])[0] == 540:
            datatype = struct.unpack(f"{endian}h", header[12:14])[0]
            dims = struct.unpack(f"{endian}8q", header[16:80])
            offset = max(struct.unpack(f"{endian}q", header[168:176])[0], 544)
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or datatype not in _NIFTI_DTYPE_BYTES:
        return None
    voxels = 1
    for n in dims[1:dims[0] + 1]:
        voxels *= max(int(n), 1)
    return offset + voxels * _NIFTI_DTYPE_BYTES[datatype]


def check_file_complete(path: str | os.PathLike, what: str = "image", case: str | None = None) -> None:
    """Refuse a truncated or corrupt file that a reader would silently fill with zeros.

    A gzip-compressed ``.gz`` file is decompressed to its end (gzip CRC-32 and length check); a NIfTI file
    (``.nii``, ``.nii.gz``) must hold as many voxel bytes as its header declares. Raises :class:`PreprocessingError`
    naming ``case`` and ``path``.
    """
    path = Path(path)
    name = path.name.lower()
    head = b""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(2)
        if name.endswith(".gz") and magic == b"\x1f\x8b":  # readers also take a plain file named .gz
            size = 0
            with gzip.open(path, "rb") as handle:
                while block := handle.read(1 << 22):
                    if len(head) < 540:
                        head += block[:540 - len(head)]
                    size += len(block)
        elif name.endswith((".nii", ".nii.gz")):
            with open(path, "rb") as handle:
                head = handle.read(540)
            size = path.stat().st_size
        else:
            return
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise PreprocessingError(f"the {what} is truncated or corrupt (gzip: {error}); copy it again",
                                 case=case, file=path) from None
    except OSError as error:
        raise PreprocessingError(f"cannot read the {what} ({error.strerror or error})", case=case, file=path) from None
    if ".nii" in name:
        end = _nifti_data_end(head)
        if end is not None and size < end:
            raise PreprocessingError(f"the {what} is truncated: its header declares {end} bytes, the file holds "
                                     f"{size}; copy it again", case=case, file=path)


def image_problem(image: sitk.Image, what: str = "image") -> str | None:
    """Why a modality image cannot be a scan: every voxel the same (blank) or NaN/inf voxels; None when fine."""
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        return f"the {what} has {int(array.size - np.count_nonzero(finite))} NaN/inf voxels"
    low, high = float(array.min()), float(array.max())
    if low == high:
        return f"the {what} is blank: every voxel is {low:g} (an empty or failed export?)"
    return None


def read_image(path: str | os.PathLike, what: str = "image", case: str | None = None,
               check_finite: bool = True) -> sitk.Image:
    """Read a 3-D scalar image (a file, or a folder holding one DICOM series) as float32 or its label type.

    Raises :class:`PreprocessingError` naming ``case`` and ``path`` for a missing, unreadable, truncated or
    corrupt file (:func:`check_file_complete`), a voxel spacing outside :data:`SPACING_RANGE_MM`, a folder
    without exactly one DICOM series, an image that is not 3-D (2-D, or 4-D with more than one volume), a vector
    image, or NaN/inf voxels (when ``check_finite``).
    """
    path = Path(path)
    if not path.exists():
        raise PreprocessingError(f"{what} file not found", case=case, file=path)
    if not path.is_dir():
        check_file_complete(path, what, case)
    try:
        if path.is_dir():
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise PreprocessingError(f"{what}: the folder holds no DICOM series", case=case, file=path)
            if len(series) > 1:
                raise PreprocessingError(f"{what}: the folder holds {len(series)} DICOM series; give one series "
                                         f"folder (series {', '.join(series)})", case=case, file=path)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise PreprocessingError(f"cannot read the {what} ({first})", case=case, file=path) from error
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise PreprocessingError(f"the {what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                                 "a scalar image is needed", case=case, file=path)
    if image.GetDimension() == 4:
        if image.GetSize()[3] != 1:
            raise PreprocessingError(f"the {what} is 4-D (size {list(image.GetSize())}); a 3-D volume is needed",
                                     case=case, file=path)
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise PreprocessingError(f"the {what} is {image.GetDimension()}-D with size {list(image.GetSize())}; "
                                 "a 3-D volume (at least 2 voxels on each axis) is needed", case=case, file=path)
    spacing = image.GetSpacing()
    if not all(SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in spacing):
        raise PreprocessingError(f"the {what} has voxel spacing {[round(s, 4) for s in spacing]} mm, outside "
                                 f"{SPACING_RANGE_MM[0]}-{SPACING_RANGE_MM[1]} mm: not a brain MRI header (wrong "
                                 "units or a broken header?)", case=case, file=path)
    if check_finite and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        bad = int(np.count_nonzero(~np.isfinite(sitk.GetArrayViewFromImage(image))))
        if bad:
            raise PreprocessingError(f"the {what} has {bad} NaN/inf voxels", case=case, file=path)
    return image


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` atomically (format from the extension); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path
