"""Radiomics features for the seed-001 methods: per case (cached), standardisation and mutual-information selection.

Features are computed by :func:`DMIFLib.radiomics.extractor.extract_features` on each modality's **preprocessed**
volume (the volumes DMIF-Net's slices are cut from: registered to the reference modality, N4, skull strip, z-score;
a cohort written by ``dmif preprocess`` as it is), inside the tumour label when the case has one, else inside the
box. Names are ``<modality>_<pyradiomics name>``, e.g. ``t1c_wavelet-LHL_glcm_DifferenceEntropy``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from DMIFLib.atomic import atomic_write_text
from DMIFLib.methods.case_input import CaseInput
from DMIFLib.radiomics.params import FEATURE_CLASSES, RadiomicsParams, load_params


@dataclass
class RadiomicsSettings:
    """The radiomics part of a seed-001 run (``overrides["radiomics"]``).

    ``params``: a built-in parameter set name (``seed001_mri``: original + 8 coif1 wavelet decompositions, all 7
    classes), a JSON file path, or a dict of :class:`RadiomicsParams` fields applied on top of ``seed001_mri``
    (e.g. ``{"feature_classes": ["firstorder"], "wavelet": null}`` for a fast reduced set in tests).
    ``k``: features kept by SelectKBest on mutual information (the paper: 19); ``reduced``: width of the linear
    layer that reduces the deep features (the paper: 10); ``hidden``: hidden units of the fused head;
    ``epochs`` / ``lr`` / ``weight_decay``: the fused head's training (Adam, full batch); ``baseline``: the
    radiomics-only classifier's L2 strength ``C`` (logistic regression).
    """

    params: str | dict = "seed001_mri"
    k: int = 19
    reduced: int = 10
    hidden: int = 8
    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-3
    baseline_c: float = 1.0

    @classmethod
    def from_dict(cls, data: dict | None) -> RadiomicsSettings:
        """From ``overrides["radiomics"]``; ``ValueError`` naming unknown keys."""
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown radiomics setting(s) {unknown}; known: {sorted(names)}")
        settings = cls(**data)
        if settings.k < 1 or settings.reduced < 1 or settings.hidden < 1 or settings.epochs < 1:
            raise ValueError("radiomics settings k, reduced, hidden and epochs must be >= 1")
        return settings

    def to_dict(self) -> dict:
        return asdict(self)

    def radiomics_params(self) -> RadiomicsParams:
        """The extraction parameters (see ``params``)."""
        if isinstance(self.params, dict):
            return RadiomicsParams.from_dict({**load_params().to_dict(), **self.params}, "radiomics params")
        return load_params(self.params)


def params_for(names: Sequence[str], params: RadiomicsParams) -> RadiomicsParams:
    """``params`` restricted to the feature classes and image types (original / wavelet) that ``names``
    (``<modality>_<image type>_<class>_<feature>``) use: prediction computes only what the model reads."""
    parts = [name.split("_", 3) for name in names]
    classes = tuple(c for c in FEATURE_CLASSES if any(p[2] == c for p in parts))
    wavelet = params.wavelet if any(p[1].startswith("wavelet") for p in parts) else None
    return RadiomicsParams.from_dict({**params.to_dict(), "feature_classes": list(classes), "wavelet": wavelet})


def case_features(case: CaseInput, params: RadiomicsParams, modalities: Sequence[str], settings,
                  features_of: Sequence[str] | None = None) -> tuple[dict[str, float], str]:
    """``({"<modality>_<feature>": value}, "label" | "box")`` of one patient (see the module docstring).

    ``modalities``: the model's (they are preprocessed together, onto the reference modality's grid);
    ``features_of``: the modalities whose features are computed (default: all); ``settings``: the model's
    ``PreprocessSettings``.
    """
    from DMIFLib.radiomics.extractor import extract_features

    volumes = case.prepared(settings, tuple(modalities))
    features, region = {}, "box"
    for modality in (modalities if features_of is None else features_of):
        mask, region = case.region(modality, on=volumes[modality])
        with warnings.catch_warnings():  # ITK's SWIG modules warn on every lazy import under Python >= 3.12
            warnings.filterwarnings("ignore", "builtin type .* has no __module__ attribute", DeprecationWarning)
            values = extract_features(volumes[modality], mask, params, name=f"case {case.patient_id} ({modality})")
        features.update({f"{modality}_{name}": float(value) for name, value in values.items()})
    return features, region


def _cache_key(case, params: RadiomicsParams, modalities: Sequence[str], settings) -> str:
    from DMIFLib.training.data import cache_key

    text = json.dumps({"params": params.to_dict(), "modalities": list(modalities),
                       "slices": cache_key(case, settings)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cohort_features(cases: Sequence, params: RadiomicsParams, modalities: Sequence[str], settings,
                    cache_dir: Path, progress: Callable[[dict], None] | None = None,
                    cancel: threading.Event | None = None
                    ) -> tuple[dict[str, dict[str, float]], dict[str, str], list[tuple[str, str]]]:
    """Features of every cohort case (``CohortCase``): ``(features by patient, region by patient, failures)``.

    Each case's features are cached in ``cache_dir/<patient_id>-<hash>.json`` (reused while the parameters, modalities,
    preprocessing settings and the case's files are unchanged). A case that fails is listed in ``failures``
    (patient_id, one-line message) and the others go on. ``progress`` gets ``{"stage": "radiomics", "case",
    "cases", "patient_id"}``; ``cancel`` is checked before each case (``RunCancelledError``).
    """
    from DMIFLib.training.errors import RunCancelledError

    cache_dir.mkdir(parents=True, exist_ok=True)
    features, regions, failures = {}, {}, []
    for number, case in enumerate(cases, start=1):
        if cancel is not None and cancel.is_set():
            raise RunCancelledError(f"radiomics extraction cancelled before case {case.patient_id}")
        if progress is not None:
            progress({"stage": "radiomics", "case": number, "cases": len(cases), "patient_id": case.patient_id})
        key = _cache_key(case, params, modalities, settings)
        path = cache_dir / f"{re.sub(r'[^A-Za-z0-9._-]', '_', case.patient_id)[:60]}-" \
                           f"{hashlib.sha1(case.patient_id.encode()).hexdigest()[:8]}.json"
        cached = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if cached.get("key") != key:
            try:
                values, region = case_features(CaseInput.from_case(case), params, modalities, settings)
            except (ValueError, RuntimeError) as error:  # RadiomicsError, PreprocessingError, SimpleITK, MIRP
                first = (str(error).strip().splitlines() or [""])[0]
                failures.append((case.patient_id, first if isinstance(error, ValueError)
                                 else f"{type(error).__name__}: {first}"))
                continue
            cached = {"key": key, "region": region, "features": values}
            atomic_write_text(path, json.dumps(cached, allow_nan=True) + "\n")
        features[case.patient_id], regions[case.patient_id] = cached["features"], cached["region"]
    return features, regions, failures


def feature_matrix(features: dict[str, dict[str, float]], ids: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """(len(ids), len(names)) float64; a feature a patient lacks is NaN."""
    return np.array([[features[pid].get(n, math.nan) for n in names] for pid in ids], dtype=np.float64)


@dataclass
class Selection:
    """Standardisation (fit on training patients) and the SelectKBest choice on mutual information.

    ``names`` (K,) selected in decreasing MI; ``mi`` (K,) nats (scikit-learn's ``mutual_info_classif``);
    ``mean`` / ``std`` (K,) of the training patients' raw values.
    """

    names: list[str]
    mi: list[float]
    mean: np.ndarray
    std: np.ndarray

    def transform(self, features: dict[str, float], who: str) -> np.ndarray:
        """(K,) standardised values of one patient; ``ValueError`` naming the patient for a missing or
        non-finite feature."""
        values = np.array([features.get(n, math.nan) for n in self.names], dtype=np.float64)
        bad = [n for n, v in zip(self.names, values, strict=True) if not np.isfinite(v)]
        if bad:
            raise ValueError(f"{who}: radiomics feature(s) {', '.join(bad[:3])} missing or not finite")
        return (values - self.mean) / self.std


def select_features(features: dict[str, dict[str, float]], ids: Sequence[str], labels: Sequence[int], k: int,
                    seed: int) -> Selection:
    """Standardise on the patients ``ids`` and keep the ``k`` features of highest mutual information with
    ``labels`` (SelectKBest; features non-finite for any of these patients or constant are left out)."""
    from functools import partial

    from sklearn.feature_selection import SelectKBest, mutual_info_classif

    names = sorted(set().union(*(features[pid] for pid in ids)))
    x = feature_matrix(features, ids, names)
    usable = np.isfinite(x).all(axis=0) & (np.nanstd(x, axis=0) > 0)
    names = [n for n, ok in zip(names, usable, strict=True) if ok]
    if not names:
        raise ValueError("no radiomics feature is finite and non-constant over the training patients")
    x = x[:, usable]
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    selector = SelectKBest(partial(mutual_info_classif, random_state=seed), k=min(k, len(names)))
    selector.fit(z, np.asarray(labels))
    kept = np.flatnonzero(selector.get_support())
    order = kept[np.argsort(-selector.scores_[kept], kind="stable")]
    return Selection(names=[names[i] for i in order], mi=[float(selector.scores_[i]) for i in order],
                     mean=mean[order], std=std[order])
