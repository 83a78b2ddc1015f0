"""Tiny real-DICOM trees for the dataset tests: series made from pydicom's bundled ``MR_small.dcm`` (64×64, 0.3125
mm pixels) with edited headers, and DICOM SEGs written by highdicom on them.

Each written series has a constant ``value`` (plus a small ramp) so that a test can tell which series it read back.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SLICE_MM = 3.0


def write_series(folder: Path, patient: str, study_uid: str, description: str | None, value: int, *,
                 n: int = 6, tr: float = 500.0, te: float = 15.0, agent: str = "", second_echo: tuple | None = None,
                 number: int = 1, name: str = "1-{:02d}.dcm", frame_uid: str = "1.2.826.0.1.3680043.8.498.1",
                 study_description: str = "MRI Hd wow") -> list[pydicom.Dataset]:
    """Write ``n`` slices (and, with ``second_echo=(te, value)``, a second echo at the same positions, interleaved
    in one SeriesInstanceUID) into ``folder``; returns the datasets of the first echo."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    series_uid = generate_uid()
    echoes = [(te, value)] + ([second_echo] if second_echo else [])
    first: list[pydicom.Dataset] = []
    instance = 0
    for k in range(n):
        for e, (echo_te, echo_value) in enumerate(echoes):
            ds = copy.deepcopy(template)
            ds.PatientID, ds.PatientName = patient, f"{patient}^"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.FrameOfReferenceUID = frame_uid
            ds.StudyDescription = study_description
            if description is None:
                ds.pop("SeriesDescription", None)
            else:
                ds.SeriesDescription = description
            ds.SeriesNumber, ds.InstanceNumber = number, instance + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            ds.RepetitionTime, ds.EchoTime, ds.EchoNumbers = tr, echo_te, e + 1
            ds.SliceThickness = SLICE_MM
            ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + SLICE_MM * k]
            if agent:
                ds.ContrastBolusAgent = agent
            pixels = np.full((64, 64), echo_value, dtype=np.int16) + np.arange(64, dtype=np.int16)[None, :]
            ds.PixelData = pixels.tobytes()
            ds.save_as(folder / name.format(instance), enforce_file_format=True)
            instance += 1
            if e == 0:
                first.append(ds)
    return first


def write_seg(folder: Path, source: list[pydicom.Dataset], slices: tuple[int, ...] = (2, 3),
              label: str = "Neoplasm", name: str = "1-1.dcm") -> Path:
    """A binary DICOM SEG (one segment ``label``) on ``source``: a 10×12 pixel block on ``slices``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.zeros((len(source), 64, 64), dtype=bool)
    for k in slices:
        mask[k, 20:30, 30:42] = True
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=source, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=300,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1", series_description="Tumor segmentation")
    folder.mkdir(parents=True, exist_ok=True)
    seg.save_as(folder / name)
    return folder / name
