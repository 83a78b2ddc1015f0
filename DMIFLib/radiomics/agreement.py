"""Agreement of computed radiomics features with a stored reference (pyradiomics' own baseline values).

Standard library only, so that the agreement bench can run in a throwaway environment of any candidate library.
Feature keys are pyradiomics-style ``<image type>_<class>_<Feature>``, e.g. ``original_glcm_Contrast``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLASS_ORDER = ("shape", "firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm")


def read_baseline_csv(path: str | Path, image_type: str = "original") -> dict[str, float]:
    """Read ``feature_class,feature,value`` rows (``#`` lines are notes) into ``{<image type>_<class>_<F>: value}``."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return {f"{image_type}_{row['feature_class']}_{row['feature']}": float(row["value"])
            for row in csv.DictReader(lines)}


def relative_difference(value: float, reference: float) -> float:
    """|value - reference| / |reference| (absolute difference where the reference is 0; inf for NaN)."""
    if math.isnan(value) or math.isnan(reference):
        return math.inf
    scale = abs(reference) if reference != 0 else 1.0
    return abs(value - reference) / scale


@dataclass(frozen=True)
class ClassAgreement:
    """One feature class: how many reference features, how many within each tolerance, the worst one."""

    feature_class: str
    n_features: int
    n_missing: int
    n_within_1e6: int
    n_within_1e3: int
    max_rel_diff: float
    worst_feature: str


def agreement_table(computed: Mapping[str, float], reference: Mapping[str, float]) -> list[ClassAgreement]:
    """Per feature class of ``reference``: features missing from ``computed``, features agreeing within rel. 1e-6
    and 1e-3, and the largest relative difference among the computed ones (NaN when none is computed)."""
    rows = []
    classes = sorted({key.split("_")[1] for key in reference}, key=lambda c: (*CLASS_ORDER, c).index(c))
    for feature_class in classes:
        keys = sorted(key for key in reference if key.split("_")[1] == feature_class)
        diffs = {key: relative_difference(computed[key], reference[key]) for key in keys if key in computed}
        worst = max(diffs, key=lambda key: diffs[key]) if diffs else ""
        rows.append(ClassAgreement(
            feature_class=feature_class, n_features=len(keys), n_missing=len(keys) - len(diffs),
            n_within_1e6=sum(d <= 1e-6 for d in diffs.values()), n_within_1e3=sum(d <= 1e-3 for d in diffs.values()),
            max_rel_diff=diffs[worst] if diffs else math.nan, worst_feature=worst))
    return rows


def format_table(rows: list[ClassAgreement], title: str) -> str:
    """Markdown table of ``agreement_table`` rows plus a total line."""
    out = [f"**{title}**", "", "| class | n | not computed | within 1e-6 | within 1e-3 | max rel. diff (feature) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.feature_class} | {r.n_features} | {r.n_missing} | {r.n_within_1e6} | {r.n_within_1e3} | "
                   f"{r.max_rel_diff:.2e} ({r.worst_feature.split('_', 2)[-1]}) |")
    out.append(f"| all | {sum(r.n_features for r in rows)} | {sum(r.n_missing for r in rows)} | "
               f"{sum(r.n_within_1e6 for r in rows)} | {sum(r.n_within_1e3 for r in rows)} | "
               f"{max((r.max_rel_diff for r in rows if r.worst_feature), default=math.nan):.2e} |")
    return "\n".join(out)
