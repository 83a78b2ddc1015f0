"""Which preprocessing steps run, and their parameters (:class:`PreprocessSettings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

SKULL_STRIP_MODES = ("auto", "mask", "none")
RESIZE_MODES = ("square", "stretch")


@dataclass
class PreprocessSettings:
    """Steps and parameters of the pipeline (paper §1.1); every field is a plain JSON type.

    Steps, in order: rigid registration of every modality to T1C (``register``) and resampling onto the T1C
    grid (always), N4 bias-field correction (``n4``), skull stripping (``skull_strip``), per-patient z-score
    over brain voxels (``zscore``), then the slices inside the ROI box, cropped and resized to
    ``slice_size`` × ``slice_size``.

    ``skull_strip``: ``"auto"`` uses the case's brain mask when given, otherwise the built-in fallback
    (:mod:`DMIFLib.preprocessing.skull_strip`); ``"mask"`` requires a user mask; ``"none"`` keeps the skull
    and z-scores over non-background voxels.

    ``resize_mode``: ``"square"`` (default) widens the shorter in-plane side of each crop, in mm, to the
    longer one with real image context around the box, so that 128×128 keeps the physical aspect ratio;
    ``"stretch"`` resizes the box's crop to 128×128 regardless (anisotropic scaling, as a plain resize does).

    ``registration_sampling``: the fraction of voxels Mattes MI samples at each level of
    ``registration_shrink`` (coarse to fine; one number means the same fraction at every level). The
    full-resolution level has the most voxels, so a small fraction there still gives tens of thousands of
    samples.
    """

    register: bool = True
    n4: bool = True
    skull_strip: str = "auto"
    zscore: bool = True
    slice_size: int = 128
    margin_mm: float = 0.0
    resize_mode: str = "square"
    # registration (Mattes MI, rigid, multi-resolution, geometry-centred start)
    registration_bins: int = 50
    registration_sampling: tuple[float, ...] = (0.25, 0.10, 0.03)
    registration_iterations: int = 200
    registration_shrink: tuple[int, ...] = (4, 2, 1)
    registration_smoothing_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    registration_seed: int = 1  # > 0: ITK reads seed 0 as 'seed from the wall clock'
    # N4 bias-field correction
    n4_shrink: int = 4
    n4_iterations: tuple[int, ...] = (50, 50, 30)
    n4_fitting_levels: int = 3

    def __post_init__(self) -> None:
        for name in ("register", "n4", "zscore"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} {getattr(self, name)!r} must be true or false")
        for name in ("slice_size", "registration_bins", "registration_iterations", "registration_seed", "n4_shrink",
                     "n4_fitting_levels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} {value!r} must be a whole number")
            if value < 1 and name not in ("slice_size", "registration_seed"):  # those two: own messages below
                raise ValueError(f"{name} {value} must be at least 1")
        if not isinstance(self.margin_mm, (int, float)) or isinstance(self.margin_mm, bool) \
                or not math.isfinite(self.margin_mm):
            raise ValueError(f"margin_mm {self.margin_mm!r} must be a number (mm)")
        if self.skull_strip not in SKULL_STRIP_MODES:
            raise ValueError(f"skull_strip '{self.skull_strip}' is not one of {', '.join(SKULL_STRIP_MODES)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode '{self.resize_mode}' is not one of {', '.join(RESIZE_MODES)}")
        if self.slice_size < 8:
            raise ValueError(f"slice_size {self.slice_size} is too small (at least 8)")
        if self.margin_mm < 0:
            raise ValueError(f"margin_mm {self.margin_mm} is negative")
        if self.registration_seed < 1:
            raise ValueError(f"registration_seed {self.registration_seed} must be ≥ 1 (0 would seed from the clock)")
        if len(self.registration_shrink) != len(self.registration_smoothing_mm):
            raise ValueError("registration_shrink and registration_smoothing_mm need the same number of levels")
        self.registration_shrink = tuple(int(v) for v in self.registration_shrink)
        if isinstance(self.registration_sampling, (int, float)):
            self.registration_sampling = (float(self.registration_sampling),) * len(self.registration_shrink)
        self.registration_sampling = tuple(float(v) for v in self.registration_sampling)
        if len(self.registration_sampling) != len(self.registration_shrink):
            raise ValueError("registration_sampling needs one fraction per level of registration_shrink")
        if not all(0 < v <= 1 for v in self.registration_sampling):
            raise ValueError(f"registration_sampling {self.registration_sampling}: fractions must be in (0, 1]")
        self.registration_smoothing_mm = tuple(float(v) for v in self.registration_smoothing_mm)
        self.n4_iterations = tuple(int(v) for v in self.n4_iterations)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), for JSON and model files."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSettings:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing setting(s): {', '.join(unknown)}")
        return cls(**data)
