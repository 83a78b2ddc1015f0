"""Image readers that keep the physical geometry: NIfTI, NRRD, MHA/MHD and DICOM series folders (SimpleITK).

SimpleITK reads every format into LPS physical space (origin, spacing, direction): a NIfTI's RAS-signed
qform/sform and an NRRD's ``space`` field are both converted on reading, so images from different formats
share one physical frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.atomic import atomic_path
from DMIFLib.preprocessing.errors import PreprocessingError


def read_image(path: str | os.PathLike, what: str = "image", case: str | None = None,
               check_finite: bool = True) -> sitk.Image:
    """Read a 3-D scalar image (a file, or a folder holding one DICOM series) as float32 or its label type.

    Raises :class:`PreprocessingError` naming ``case`` and ``path`` for a missing or unreadable file, a folder
    without exactly one DICOM series, an image that is not 3-D (2-D, or 4-D with more than one volume), a vector
    image, or NaN/inf voxels (when ``check_finite``).
    """
    path = Path(path)
    if not path.exists():
        raise PreprocessingError(f"{what} file not found", case=case, file=path)
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
