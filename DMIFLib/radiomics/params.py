"""Radiomics parameter files: the reproducible settings of a feature extraction (JSON, shipped in the package).

``seed001_mri.json`` is the default for MR cohorts; ``pyradiomics_baseline.json`` reproduces the settings of
pyradiomics' stored brain1 baseline. Keys (pyradiomics' setting in brackets):

- ``feature_classes``: subset of shape, firstorder, glcm, gldm, glrlm, glszm, ngtdm.
- ``bin_width`` [binWidth]: fixed bin width in (normalised) intensity units; bins start at the ROI minimum rounded
  down to a multiple of the width, as pyradiomics does.
- ``normalize`` / ``normalize_scale`` [normalize, normalizeScale]: z-score over the whole image, times the scale.
- ``resampled_spacing_mm`` [resampledPixelSpacing]: (x, y, z) mm or null; ``interpolator``: bspline, linear or
  nearest for the image (the mask is always nearest-neighbour).
- ``voxel_array_shift`` [voxelArrayShift]: added to intensities in Energy, TotalEnergy and RootMeanSquared.
- ``wavelet`` [wavelet]: PyWavelets name for the 8 level-1 stationary decompositions, or null for original only.
- ``pad_voxels`` [padDistance]: voxels kept around the ROI's bounding box before filtering.
- ``label`` [label]: the mask value that marks the region; other values are background.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

FEATURE_CLASSES = ("shape", "firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm")
INTERPOLATORS = ("bspline", "linear", "nearest")
BUILTIN_PARAMS = ("seed001_mri", "pyradiomics_baseline")


class RadiomicsError(ValueError):
    """Bad radiomics input or parameters; the message names the file or case and the problem."""


@dataclass(frozen=True)
class RadiomicsParams:
    """One extraction's settings (see the module docstring for each key)."""

    feature_classes: tuple[str, ...] = FEATURE_CLASSES
    bin_width: float = 5.0
    normalize: bool = True
    normalize_scale: float = 100.0
    resampled_spacing_mm: tuple[float, float, float] | None = (1.0, 1.0, 1.0)
    interpolator: str = "bspline"
    voxel_array_shift: float = 300.0
    wavelet: str | None = "coif1"
    pad_voxels: int = 5
    label: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        unknown = [c for c in self.feature_classes if c not in FEATURE_CLASSES]
        if unknown:
            raise RadiomicsError(f"unknown feature class(es) {unknown}; choose from {list(FEATURE_CLASSES)}")
        if not self.bin_width > 0:
            raise RadiomicsError(f"bin_width must be > 0, got {self.bin_width}")
        if self.interpolator not in INTERPOLATORS:
            raise RadiomicsError(f"interpolator must be one of {list(INTERPOLATORS)}, got {self.interpolator!r}")
        if self.resampled_spacing_mm is not None and (
                len(self.resampled_spacing_mm) != 3 or min(self.resampled_spacing_mm) <= 0):
            raise RadiomicsError(f"resampled_spacing_mm must be 3 positive numbers or null, "
                                 f"got {self.resampled_spacing_mm}")
        if self.pad_voxels < 0:
            raise RadiomicsError(f"pad_voxels must be >= 0, got {self.pad_voxels}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "parameters") -> RadiomicsParams:
        """Build from a parameter-file dict; unknown keys or bad values raise :class:`RadiomicsError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RadiomicsError(f"{source}: unknown key(s) {unknown}; known: {sorted(names)}")
        values = dict(data)
        if "feature_classes" in values:
            values["feature_classes"] = tuple(values["feature_classes"])
        if values.get("resampled_spacing_mm") is not None:
            values["resampled_spacing_mm"] = tuple(float(v) for v in values["resampled_spacing_mm"])
        try:
            return cls(**values)
        except (RadiomicsError, TypeError) as error:
            raise RadiomicsError(f"{source}: {error}") from None

    def to_dict(self) -> dict:
        """JSON-ready dict (written next to extracted features for provenance)."""
        data = asdict(self)
        data["feature_classes"] = list(self.feature_classes)
        if self.resampled_spacing_mm is not None:
            data["resampled_spacing_mm"] = list(self.resampled_spacing_mm)
        return data


def load_params(source: str | Path = "seed001_mri") -> RadiomicsParams:
    """A built-in parameter set by name (``BUILTIN_PARAMS``) or a JSON parameter file by path."""
    if str(source) in BUILTIN_PARAMS:
        text = resources.files("DMIFLib.radiomics").joinpath(f"{source}.json").read_text(encoding="utf-8")
        name = f"built-in radiomics parameters {source!r}"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise RadiomicsError(f"{path}: cannot read the radiomics parameter file ({error.strerror})") from None
        name = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RadiomicsError(f"{name}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict):
        raise RadiomicsError(f"{name}: expected a JSON object of settings")
    return RadiomicsParams.from_dict(data, source=name)
