"""The preprocessing settings a preprocessed cohort was made with, read from each case's ``provenance.json``.

A cohort written by ``dmif preprocess`` holds volumes that already went through registration, N4, skull
stripping and the z-score; only the crop (``slice_size``, ``resize_mode``, and the label box's ``margin_mm``)
happens later. Training must record the settings the volumes were really made with (a model trained on
volumes without N4 must not ask for N4 on raw scans), and prediction must not feed a model volumes made
with other settings than its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from DMIFLib.cohort import CohortCase, CohortError

CROP_FIELDS = ("slice_size", "resize_mode")
"""Settings applied when the slices are cut, after the saved volumes: they may differ from the cohort's."""

_STEP_PARAMETERS = {"register": "registration_", "n4": "n4_"}
"""A step's parameters (by name prefix) that do not matter while the step is off."""


def volume_settings(settings: dict[str, Any], margin: bool = True) -> dict[str, Any]:
    """The fields of a ``PreprocessSettings.to_dict()`` that decide the saved volumes (``margin_mm`` too unless
    ``margin`` is False), without the parameters of steps that are off."""
    out = {k: v for k, v in settings.items() if k not in CROP_FIELDS and (margin or k != "margin_mm")}
    for step, prefix in _STEP_PARAMETERS.items():
        if out.get(step) is False:
            out = {k: v for k, v in out.items() if not k.startswith(prefix)}
    return out


def _differences(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(f"{k}={a.get(k, '(off)')} vs {b.get(k, '(off)')}" for k in keys)


def case_settings(case: CohortCase, cohort_csv: str | Path) -> dict[str, Any] | None:
    """The full settings dict a preprocessed case was made with (its provenance.json), or None when the case is
    raw or marked preprocessed without a provenance file. Raises :class:`CohortError` for an unreadable one."""
    from DMIFLib.preprocessing.pipeline import is_preprocessed

    if not is_preprocessed(case):
        return None
    # the `provenance` column is relative to the CSV it was written in; a cohort copied elsewhere (e.g. the demo's
    # test_cohort.csv) still finds the file beside the case's volumes
    relative = case.extra.get("provenance", "")
    candidates = [Path(cohort_csv).resolve().parent / relative] if relative else []
    candidates.append(Path(case.images[case.reference]).parent / "provenance.json")
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CohortError(f"{path} (case {case.patient_id}): unreadable provenance ({type(error).__name__}: "
                          f"{error}); preprocess the case again") from None
    from DMIFLib.preprocessing.settings import PreprocessSettings

    try:
        return PreprocessSettings.from_dict({**PreprocessSettings().to_dict(), **settings}).to_dict()
    except (ValueError, TypeError) as error:
        raise CohortError(f"{path} (case {case.patient_id}): provenance settings unusable ({error})") from None


def _known_settings(cases: Sequence[CohortCase], cohort_csv: str | Path,
                    unknown: str) -> Iterator[tuple[CohortCase, dict[str, Any]]]:
    """(case, settings) of every preprocessed case (:func:`case_settings`); raw cases are passed over. A case
    marked preprocessed without a provenance file raises :class:`CohortError` ending in ``unknown``."""
    from DMIFLib.preprocessing.pipeline import is_preprocessed

    for case in cases:
        settings = case_settings(case, cohort_csv)
        if settings is None:
            if is_preprocessed(case):
                raise CohortError(f"{cohort_csv} (case {case.patient_id}): marked preprocessed but has no "
                                  f"provenance.json, so {unknown}")
            continue
        yield case, settings


def cohort_settings(cases: Sequence[CohortCase], cohort_csv: str | Path) -> dict[str, Any] | None:
    """The settings every preprocessed case of the cohort shares (:func:`volume_settings`, with ``margin_mm``);
    None when no case is preprocessed.

    Raises :class:`CohortError` naming two cases and the differing settings when cases were preprocessed
    differently, and naming the case when a preprocessed case has no provenance (its settings are unknown).
    """
    first: tuple[str, dict] | None = None
    for case, settings in _known_settings(cases, cohort_csv, "its preprocessing settings are unknown; preprocess it "
                                                              "with dmif preprocess"):
        settings = volume_settings(settings)
        if first is None:
            first = (case.patient_id, settings)
        elif settings != first[1]:
            raise CohortError(f"{cohort_csv}: cases {first[0]} and {case.patient_id} were preprocessed with different "
                              f"settings ({_differences(first[1], settings)}); preprocess the whole cohort with "
                              "one setting")
    return None if first is None else first[1]


def check_model_settings(model_settings: dict[str, Any], cases: Sequence[CohortCase], cohort_csv: str | Path,
                         model_path: str | Path | None) -> None:
    """Refuse preprocessed cases whose volumes were made with other settings than the model's (``to_dict()``).

    The crop settings and ``margin_mm`` come from the model at prediction time, so they are not compared.
    Raises :class:`CohortError` naming the case, the model file and the differing settings.
    """
    wanted = volume_settings(model_settings, margin=False)
    for case, settings in _known_settings(cases, cohort_csv, "it cannot be checked against the model's "
                                                              "preprocessing; predict from the raw scans"):
        found = volume_settings(settings, margin=False)
        if found != wanted:
            raise CohortError(f"{cohort_csv} (case {case.patient_id}): preprocessed with other settings than the "
                              f"model {model_path or ''} was trained on ({_differences(found, wanted)}; cohort vs "
                              "model); predict from the raw scans, or preprocess them with the model's settings")
