"""Cross-validation as a run of its own: repeated stratified K-fold by patient, out-of-fold predictions.

Repeat r (0 .. R-1) splits the patients into K folds, stratified by label, with seed ``seed + r`` (patients of
one ``subject`` stay in one fold when the cohort names subjects). Fold k's test patients are predicted by a
model trained with the full method (any :mod:`DMIFLib.methods` method through ``Method.train``; for DMIF-Net
Algorithm 1, :func:`~DMIFLib.training.algorithm.train_cohort`) on the other K-1 folds, whose validation patients
are carved from those training patients; so every patient gets exactly one out-of-fold (OOF) prediction per
repeat. A fold's cut-offs are Youden's J on its own training patients; the run's cut-off is the mean of the
folds' cut-offs.

Pooled estimate: a patient's OOF score is the mean of its R repeats' OOF probabilities; the patient-level AUC
of those scores over all patients has a DeLong CI (:func:`DMIFLib.evaluation.tables.metric_rows`, as
``dmif evaluate`` computes it from ``oof_predictions.tsv``). Spread: each repeat's own pooled AUC. An OOF
``p_fused`` is its fold model's calibrated p_fused (calibrated on that fold's validation patients), its
``p_fused_raw`` the uncalibrated one.

Model file: the **ensemble of the K·R fold models** (:class:`DMIFLib.nets.ensemble.NetEnsemble`, mean of the
members' logits per slice, per modality and fused), with the mean fold cut-off, a calibration of p_fused fitted
on the out-of-fold raw p_fused and the fold models as the members of its interval (:mod:`DMIFLib.trust`). No
refit: the ensemble is what the OOF figures estimate best (each member was checked on its held-out fold) and
costs no extra training. Another method's model file is the ensemble of its K·R fold models through the method's
own prediction, averaged (:mod:`DMIFLib.methods.fold_ensemble`), with the mean fold cut-off.

Run folder ``DIR``: ``cv.json`` (plan: method, K, R, seeds, folds, configuration), ``folds/rRfK/`` (each fold's
own training run folder of the method, with its checkpoint while unfinished), ``slices/`` (slice stacks shared by
the folds), ``radiomics/`` (method radiomics: the features, shared by the folds), ``oof_predictions.tsv``,
``metrics.tsv`` (pooled OOF, patient level), ``cv_folds.tsv`` (per-fold test metrics), ``cv_repeats.tsv``
(per-repeat pooled AUC), ``model.pt``, ``run.json``. A killed run resumes at its unfinished fold
(``resume=True``); finished folds are not trained again; a run of another method is not resumed.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DMIFLib.atomic import atomic_write_text
from DMIFLib.cohort import MODALITIES, read_cohort
from DMIFLib.training.errors import TrainingError

CV_PLAN = "cv.json"
OOF_NAME = "oof_predictions.tsv"
FOLDS_NAME = "cv_folds.tsv"
REPEATS_NAME = "cv_repeats.tsv"
CV_METRIC_COLUMNS = ("level", "model", "n", "n_pos", "n_neg", "auc", "auc_ci_low", "auc_ci_high", "ci_method",
                     "accuracy", "sensitivity", "specificity", "ppv", "npv", "cutoff", "ece", "brier",
                     "auc_repeat_mean", "auc_repeat_sd", "auc_repeat_min", "auc_repeat_max", "repeats", "folds")


@dataclass
class CrossValidationResult:
    """Paths of a finished cross-validation run and its pooled metrics (rows of metrics.tsv)."""

    out_dir: Path
    model_path: Path
    oof_path: Path
    metrics_path: Path
    folds_path: Path
    repeats_path: Path
    run_path: Path
    metrics: list[dict] = field(default_factory=list)
    fold_rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def cv_folds(labels: Mapping[str, int], k: int, seed: int,
             subjects: Mapping[str, str] | None = None) -> list[list[str]]:
    """K lists of test patients: stratified by label, shuffled with ``seed``, every patient in exactly one.

    ``subjects`` (patient id -> subject id) keeps a subject's patients in one fold (scikit-learn
    ``StratifiedGroupKFold``). Raises ``ValueError`` when a class has fewer than ``k`` patients (subjects).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    ids = sorted(labels)
    y = np.array([labels[pid] for pid in ids])
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    groups = [subjects.get(pid) or pid for pid in ids] if subjects else ids
    for value in (0, 1):
        n = len({g for g, label in zip(groups, y, strict=True) if label == value})
        if n < k:
            raise ValueError(f"{k}-fold cross-validation needs at least {k} patients of each class; "
                             f"class {value} has {n}")
    if subjects and len(set(groups)) < len(ids):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(ids)), y, groups)
    else:
        parts = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(ids)), y)
    return [sorted(ids[i] for i in test) for _, test in parts]


def fold_name(repeat: int, fold: int) -> str:
    """The fold's folder name, 1-based: ``r1f1``, ``r1f2``, ..."""
    return f"r{repeat + 1}f{fold + 1}"


def _fold_done(folder: Path) -> bool:
    from DMIFLib.training.algorithm import RUN_NAME
    from DMIFLib.training.checkpoint import CHECKPOINT_NAME

    return (folder / RUN_NAME).is_file() and not (folder / CHECKPOINT_NAME).is_file()


def _fold_timings(run: dict) -> dict[str, float]:
    """A finished fold's training seconds by stage (DMIF-Net), by net (transfer) or in total (other methods)."""
    return run.get("stage_seconds") or run.get("net_seconds") or {"total": run["last_session_seconds"]}


def _read_fold(folder: Path) -> tuple[dict[str, dict[str, float]], dict]:
    """A finished fold's test predictions (patient id -> {modality or "fused": p}) and its run.json."""
    from DMIFLib.evaluation.tables import read_tsv

    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    rows = read_tsv(folder / "predictions.tsv")
    names = (*run["modalities"], "fused", *(("fused_raw",) if rows and "p_fused_raw" in rows[0] else ()))
    preds = {r["patient_id"]: {name: float(r[f"p_{name}"]) for name in names} for r in rows}
    return preds, run


def _prepare(out: Path, resume: bool, plan: dict) -> dict:
    """Check the run folder and return the plan to follow (the saved one on resume)."""
    path = out / CV_PLAN
    if resume:
        if not path.is_file():
            raise TrainingError(f"{out}: no {CV_PLAN} to resume a cross-validation run from; start without --resume")
        saved = json.loads(path.read_text(encoding="utf-8"))
        found = saved.get("method", "dmif")  # plans written before other methods could cross-validate
        if found != plan["method"]:
            raise TrainingError(f"{out}: a cross-validation run of method {found}, not {plan['method']}; resume it "
                                f"with --method {found}")
        if saved["cohort_sha256"] != plan["cohort_sha256"]:
            raise TrainingError(f"{out}: the cohort table changed since the cross-validation run started; resume "
                                "needs the same cohort")
        if (out / "model.pt").is_file() and (out / "run.json").is_file():
            raise TrainingError(f"{out}: this cross-validation run is already complete; nothing to resume")
        return saved
    if path.is_file() or (out / "model.pt").is_file() or (out / "checkpoint.pt").is_file():
        raise TrainingError(f"{out}: already holds a training run; use --resume to continue it, or choose another "
                            "output folder (nothing is overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(plan, indent=2) + "\n")
    return plan


def _metric_rows(oof: list[dict], modalities: tuple[str, ...], cutoffs: Mapping[str, float], k: int,
                 repeats: int) -> list[dict]:
    """metrics.tsv rows: pooled OOF patient-level metrics per model (as ``dmif evaluate`` computes them) and the
    spread of each repeat's pooled AUC."""
    from DMIFLib.evaluation.tables import metric_rows
    from DMIFLib.stats import auc_ci

    rows = []
    ids = sorted({r["patient_id"] for r in oof})
    labels = {r["patient_id"]: r["label"] for r in oof}
    y = np.array([labels[pid] for pid in ids])
    for model in (*modalities, "fused"):
        mean = {pid: float(np.mean([r[f"p_{model}"] for r in oof if r["patient_id"] == pid])) for pid in ids}
        table_row, _ = metric_rows(model, "patient", y, np.array([mean[pid] for pid in ids]),
                                   cutoffs[f"patient/{model}"], n_boot=0)
        per_repeat = []
        for r in range(repeats):
            part = [row for row in oof if row["repeat"] == r + 1]
            yr = np.array([row["label"] for row in part])
            if len(set(yr.tolist())) == 2:
                per_repeat.append(auc_ci(yr, np.array([row[f"p_{model}"] for row in part]))[0])
        rows.append({**table_row, "level": "patient", "model": model, "repeats": repeats, "folds": k,
                     "auc_repeat_mean": statistics.fmean(per_repeat),
                     "auc_repeat_sd": statistics.stdev(per_repeat) if len(per_repeat) > 1 else 0.0,
                     "auc_repeat_min": min(per_repeat), "auc_repeat_max": max(per_repeat)})
    return rows


def _ensemble_model(folders: list[Path], cutoff: float, info: dict, calibration: str, oof: list[dict]):
    """The ensemble of the fold models (LoadedModel), per modality and fused, with its calibration fitted on the
    out-of-fold raw p_fused and the union of the folds' training-cohort profiles (:mod:`DMIFLib.trust.training`)."""
    from DMIFLib.model_file import FUSED, LoadedModel, load_model
    from DMIFLib.nets.ensemble import NetEnsemble
    from DMIFLib.trust.training import ensemble_trust

    models = [load_model(folder / "model.pt", "cpu") for folder in folders]
    first = models[0]
    nets = {name: NetEnsemble([m.nets[name] for m in models]) for name in (*first.modalities, FUSED)}
    model = LoadedModel(nets=nets, modalities=first.modalities, marker=first.marker, settings=first.settings,
                        cutoff=cutoff, device=first.device, info=info, patient_slices=first.patient_slices)
    ensemble_trust(model, models, calibration, oof)
    return model


def cross_validate(cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, k: int = 5, repeats: int = 1,
                   preset: str = "quick", device: str = "auto", resume: bool = False,
                   progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                   overrides: dict[str, Any] | None = None, method: str = "dmif") -> CrossValidationResult:
    """Repeated stratified ``k``-fold cross-validation of ``method`` (a :mod:`DMIFLib.methods` name; default
    DMIF-Net, Algorithm 1) on a labelled cohort (module docstring).

    ``preset``/``overrides``/``device`` as the method's ``train`` (the fold of repeat r trains with seed
    ``seed + r``). ``progress`` gets each fold's training events plus ``repeat``/``repeats``,
    ``fold``/``folds`` (1-based) and ``fraction`` (0..1 of the whole run); ``cancel`` stops at the next batch
    (``RunCancelledError``); ``resume`` continues a killed or cancelled run at its unfinished fold. Raises
    ``CohortError`` / ``PreprocessingError`` / ``TrainingError`` naming the file or case.
    """
    from DMIFLib.evaluation.tables import write_tsv
    from DMIFLib.methods.fold_ensemble import fold_ensemble
    from DMIFLib.methods.registry import UnknownMethodError, get_method
    from DMIFLib.model_file import save_model
    from DMIFLib.stats import auc_ci
    from DMIFLib.training.algorithm import _sha256

    started = time.perf_counter()
    cohort_csv, out = Path(cohort_csv), Path(out_dir)
    if repeats < 1:
        raise TrainingError(f"--repeats must be at least 1, got {repeats}")
    try:
        implementation = get_method(method)
    except UnknownMethodError as error:
        raise TrainingError(str(error)) from None
    config = implementation.train_config(preset, overrides)
    cases = read_cohort(cohort_csv, require_labels=True, require_modalities=config.modalities or ())
    labels = {c.patient_id: int(c.label) for c in cases}
    subjects = {c.patient_id: getattr(c, "subject", None) for c in cases}
    subjects = subjects if any(subjects.values()) else None
    try:
        folds = [cv_folds(labels, k, config.seed + r, subjects) for r in range(repeats)]
    except ValueError as error:
        raise TrainingError(f"{cohort_csv}: {error}") from None
    plan = {"method": method, "k": k, "repeats": repeats, "preset": preset, "overrides": dict(overrides or {}),
            "seed": config.seed, "cohort": str(cohort_csv.resolve()), "cohort_sha256": _sha256(cohort_csv),
            "folds": folds}
    plan = _prepare(out, resume, plan)
    k, repeats, folds = plan["k"], plan["repeats"], plan["folds"]
    base = dict(plan["overrides"])
    runs = [(r, f) for r in range(repeats) for f in range(k)]
    fold_rows, oof, folders, fold_runs = [], [], [], []
    modalities: tuple[str, ...] = ()
    for index, (r, f) in enumerate(runs):
        folder = out / "folds" / fold_name(r, f)
        folders.append(folder)
        if not _fold_done(folder):
            def fold_progress(event: dict, index: int = index, r: int = r, f: int = f) -> None:
                if progress is not None:
                    within = event.get("fraction", 0.0)
                    progress({**event, "repeat": r + 1, "repeats": repeats, "fold": f + 1, "folds": k,
                              "fraction": (index + within) / len(runs)})

            implementation.train(cohort_csv, folder, preset=plan["preset"], device=device,
                                 resume=implementation.resumable(folder), progress=fold_progress, cancel=cancel,
                                 overrides={**base, "seed": plan["seed"] + r}, test_ids=folds[r][f], cache_dir=out)
        preds, run = _read_fold(folder)
        modalities = tuple(run["modalities"])
        fold_runs.append(run)
        if sorted(preds) != sorted(folds[r][f]):
            raise TrainingError(f"{folder}: its test patients differ from fold {f + 1} of repeat {r + 1} (a patient "
                                "the method left out is named in its failures.tsv)")
        for pid in sorted(preds):
            oof.append({"patient_id": pid, "label": labels[pid], "repeat": r + 1, "fold": f + 1,
                        **{f"p_{name}": p for name, p in preds[pid].items()}})
        fold_rows.append({"repeat": r + 1, "fold": f + 1, **run["patients"],
                          **{f"auc_{key.replace('/', '_')}": value for key, value in run["test_auc"].items()},
                          "cutoff": run["cutoffs"]["patient/fused"], "seconds": sum(_fold_timings(run).values())})
    if progress is not None:
        progress({"stage": "evaluate", "fraction": 1.0, "repeats": repeats, "folds": k})
    cutoffs = {key: float(np.mean([fr["cutoffs"][key] for fr in fold_runs])) for key in fold_runs[0]["cutoffs"]}
    cutoff = cutoffs["patient/fused"]
    for row in oof:
        row.update(prediction=int(row["p_fused"] >= cutoff), cutoff=cutoff)
    rows = _metric_rows(oof, modalities, cutoffs, k, repeats)
    p_cols = [f"p_{m}" for m in MODALITIES if m in modalities]
    raw_col = ("p_fused_raw",) if all("p_fused_raw" in row for row in oof) else ()
    oof_path = write_tsv(out / OOF_NAME, oof, ("patient_id", "label", "repeat", "fold", *p_cols, "p_fused",
                                                "prediction", "cutoff", *raw_col))
    metrics_path = write_tsv(out / "metrics.tsv", rows, CV_METRIC_COLUMNS)
    fold_columns = tuple(dict.fromkeys(c for row in fold_rows for c in row))
    folds_path = write_tsv(out / FOLDS_NAME, fold_rows, fold_columns)
    repeat_rows = []
    for r in range(repeats):
        part = [row for row in oof if row["repeat"] == r + 1]
        for model in (*modalities, "fused"):
            auc, low, high = auc_ci([row["label"] for row in part], [row[f"p_{model}"] for row in part])
            repeat_rows.append({"repeat": r + 1, "model": model, "n": len(part), "auc": auc, "auc_ci_low": low,
                                "auc_ci_high": high})
    repeats_path = write_tsv(out / REPEATS_NAME, repeat_rows, ("repeat", "model", "n", "auc", "auc_ci_low",
                                                               "auc_ci_high"))
    pooled = {row["model"]: row["auc"] for row in rows}
    how = "mean logit" if method == "dmif" else "mean of their predictions"
    info = {"cross_validation": {"method": method, "k": k, "repeats": repeats, "members": [f.name for f in folders],
                                 "oof_auc": pooled, "model": f"ensemble of the fold models ({how})"},
            "preset": plan["preset"], "seed": plan["seed"], "cohort_sha256": plan["cohort_sha256"],
            "cutoffs": cutoffs, "config": fold_runs[0]["config"],
            "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if method == "dmif":
        model = _ensemble_model(folders, cutoff, info, fold_runs[0]["config"].get("calibration", "none"), oof)
    else:
        model = fold_ensemble([folder / "model.pt" for folder in folders], cutoff, info)
    model_path = save_model(out / "model.pt", model)
    seconds = time.perf_counter() - started
    run_info = {"method": method, "cohort": plan["cohort"], "cohort_sha256": plan["cohort_sha256"],
                "preset": plan["preset"],
                "overrides": plan["overrides"], "config": fold_runs[0]["config"], "seed": plan["seed"],
                "modalities": list(modalities), "cross_validation": info["cross_validation"], "cutoffs": cutoffs,
                "fold_seconds": {f.name: _fold_timings(fr) for f, fr in zip(folders, fold_runs, strict=True)},
                "last_session_seconds": seconds}
    run_path = out / "run.json"
    atomic_write_text(run_path, json.dumps(run_info, indent=2, default=float) + "\n")
    return CrossValidationResult(out_dir=out, model_path=model_path, oof_path=oof_path, metrics_path=metrics_path,
                                 folds_path=folds_path, repeats_path=repeats_path, run_path=run_path, metrics=rows,
                                 fold_rows=fold_rows, seconds=seconds)
