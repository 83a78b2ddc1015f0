"""Out-of-distribution warning: how a case's slices and geometry compare with the training cohort's.

Features of one case (:func:`case_features`, from its ``SliceStack``): per modality the mean and s.d. of the
slice intensities the net sees (z-scored units, over the whole S×S crops), the box's longest and shortest side
(mm), the slice count and the reference grid's in-plane and through-plane spacing (mm; absent for slice stacks
cached before the spacing was recorded). The training cohort's profile (:func:`cohort_profile`) keeps, per
feature, n, min, median and max over the training patients (train + validation); it is the model file's
``training_cohort`` entry (plain types).

A feature is *far* when it lies outside [min − margin, max + margin], margin = max(½·(max − min),
relative·|median|, absolute): relative 0.25 for geometry (25 % of the typical box side, slice count or spacing),
absolute 0.5 z-units for intensities. So a doubled spacing or box fires even when every training case had the
same one, while a case inside the training range never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

GEOMETRY_RELATIVE = 0.25
INTENSITY_ABSOLUTE = 0.5
_LABELS = {"box_max_mm": ("longest box side", "mm"), "box_min_mm": ("shortest box side", "mm"),
           "n_slices": ("slice count", ""), "spacing_inplane_mm": ("in-plane spacing", "mm"),
           "spacing_slice_mm": ("slice spacing", "mm")}


def case_features(stack) -> dict[str, float]:
    """The features of one ``SliceStack`` (module docstring); keys like ``mean_t1c``, ``box_max_mm``."""
    out: dict[str, float] = {}
    for m, images in stack.images.items():
        values = np.asarray(images, dtype=np.float64)
        out[f"mean_{m}"] = float(values.mean())
        out[f"sd_{m}"] = float(values.std())
    if stack.box is not None:
        size = np.asarray(stack.box.size_mm, dtype=float)
        out["box_max_mm"], out["box_min_mm"] = float(size.max()), float(size.min())
    out["n_slices"] = float(stack.n_slices)
    spacing = stack.info.get("spacing_mm")
    if spacing is not None:
        spacing = [float(v) for v in spacing]
        axis = int(stack.slice_axis)
        out["spacing_slice_mm"] = spacing[axis]
        out["spacing_inplane_mm"] = float(np.mean([s for a, s in enumerate(spacing) if a != axis]))
    return out


def cohort_profile(features: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per feature ``{"n", "min", "median", "max"}`` over the training cases' :func:`case_features`."""
    values: dict[str, list[float]] = {}
    for case in features:
        for key, value in case.items():
            values.setdefault(key, []).append(float(value))
    return {key: {"n": len(v), "min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v))}
            for key, v in values.items()}


def merge_profiles(profiles: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """One profile of the union of several training cohorts (the fold models of a cross-validation): min of the
    minima, max of the maxima, n the largest n (the folds share patients), median the mean of the medians
    (an approximation; only the margin uses it)."""
    keys = set.intersection(*(set(p) for p in profiles)) if profiles else set()
    return {key: {"n": int(max(p[key]["n"] for p in profiles)), "min": min(p[key]["min"] for p in profiles),
                  "median": float(np.mean([p[key]["median"] for p in profiles])),
                  "max": max(p[key]["max"] for p in profiles)} for key in sorted(keys)}


def _margin(key: str, entry: Mapping[str, float]) -> float:
    spread = 0.5 * (entry["max"] - entry["min"])
    if key.startswith(("mean_", "sd_")):
        return max(spread, INTENSITY_ABSOLUTE)
    return max(spread, GEOMETRY_RELATIVE * abs(entry["median"]))


def _describe(key: str, value: float, entry: Mapping[str, float]) -> str:
    if key.startswith(("mean_", "sd_")):
        what, modality = key.split("_", 1)
        name = f"{modality.upper()} intensity {'mean' if what == 'mean' else 's.d.'}"
        return f"{name} {value:.2f} (training {entry['min']:.2f} to {entry['max']:.2f})"
    name, unit = _LABELS.get(key, (key, ""))
    fmt = ".0f" if key == "n_slices" else ".3g"
    unit = f" {unit}" if unit else ""
    return f"{name} {value:{fmt}}{unit} (training {entry['min']:{fmt}}–{entry['max']:{fmt}}{unit})"


def ood_warning(features: Mapping[str, float], profile: Mapping[str, Mapping[str, float]] | None) -> str:
    """``""`` when every feature the profile knows lies within its training range (with margin), otherwise a
    short text naming each far feature, e.g. ``"outside the training cohort: slice spacing 6 mm (training
    2.9–3.1 mm)"``. No profile (an old model file): ``""``."""
    if not profile:
        return ""
    far = []
    for key, entry in profile.items():
        value = features.get(key)
        if value is None or not np.isfinite(value):
            continue
        margin = _margin(key, entry)
        if value < entry["min"] - margin or value > entry["max"] + margin:
            far.append(_describe(key, float(value), entry))
    return "outside the training cohort: " + "; ".join(far) if far else ""


def check_profile(profile) -> dict | None:
    """A model file's ``training_cohort`` entry, checked (ValueError naming the problem); None stays None."""
    if profile is None:
        return None
    if not isinstance(profile, dict) or not all(
            isinstance(e, dict) and {"n", "min", "median", "max"} <= set(e) for e in profile.values()):
        raise ValueError("training_cohort entry: per feature a dict with n, min, median, max is needed")
    return profile
