"""Method "radiomics": deep learning + radiomics fusion (seed 001, H3 K27), with DMIF-Net as the deep branch.

Training (run folder ``out``):
1. DMIF-Net with Algorithm 1 in ``out/deep`` (:func:`DMIFLib.training.train_cohort`: its split, its slices);
2. radiomics features of every patient and modality (:mod:`DMIFLib.methods.radiomics_features`, cached in
   ``out/radiomics/``), inside the label when the cohort has one, else the box;
3. on the training patients only (train + validation; never the test patients): standardisation, mutual
   information per feature, SelectKBest (``k``);
4. the patient's deep features (the multimodal DMIF-Net's ``features``, mean over its slices, standardised on the
   training patients) reduced by a linear layer and concatenated with the selected radiomics features into a
   small fused head (:class:`~DMIFLib.methods.fusion_head.FusionHead`: ReLU, sigmoid), trained on the training
   patients (Adam, full batch; the epoch of lowest validation loss is kept).

Prediction: ``p_<modality>`` is that modality's DMIF-Net (as method "dmif"); ``p_fused`` is the fused head on the
patient's mean deep features and its radiomics features; the per-slice ``fused`` probabilities are the same head
on each slice's deep features (the radiomics are per patient). Outputs beside DMIF-Net's: ``selected_features.tsv``
(rank, feature, MI, standardisation), ``radiomics_features.csv`` (every feature of every patient), ``failures.tsv``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from DMIFLib.atomic import atomic_write_text
from DMIFLib.methods.base import Method
from DMIFLib.methods.case_input import CaseInput
from DMIFLib.methods.fusion_head import FusionHead
from DMIFLib.methods.radiomics_features import (
    RadiomicsSettings,
    Selection,
    case_features,
    cohort_features,
    params_for,
    select_features,
)

DEEP_FRACTION = 0.7  # share of the progress bar for the DMIF-Net training
SELECTED_NAME = "selected_features.tsv"
FEATURES_NAME = "radiomics_features.csv"


@torch.no_grad()
def slice_deep_features(model, stack, batch_size: int = 64) -> np.ndarray:
    """(n_slices, F) float64 deep features of the multimodal (fused) DMIF-Net on a patient's slice stack."""
    from DMIFLib.model_file import FUSED

    x = torch.from_numpy(np.ascontiguousarray(stack.stacked(model.modalities), dtype=np.float32))
    net = model.nets[FUSED].eval()
    parts = [net.features(x[i:i + batch_size].to(model.device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts).numpy().astype(np.float64)


def _head_from_state(state: dict, device: torch.device) -> FusionHead:
    head = FusionHead.from_spec(state["head"]["spec"])
    head.load_state_dict(state["head"]["state_dict"])
    return head.to(device).eval()


def _selection(state: dict) -> Selection:
    return Selection(names=list(state["features"]), mi=list(state["mi"]),
                     mean=state["radiomics_mean"].numpy(), std=state["radiomics_std"].numpy())


@torch.no_grad()
def fused_probabilities(head: FusionHead, state: dict, deep: np.ndarray, radiomics: np.ndarray
                        ) -> tuple[float, np.ndarray]:
    """``(p_patient, p_slices (n,))``: the head on the mean deep features and on each slice's deep features
    (``deep`` (n, F) raw; ``radiomics`` (K,) standardised)."""
    mean, std = state["deep_mean"].numpy(), state["deep_std"].numpy()
    rows = np.vstack([deep.mean(axis=0, keepdims=True), deep])
    z = torch.from_numpy(((rows - mean) / std).astype(np.float32))
    r = torch.from_numpy(np.repeat(radiomics[None].astype(np.float32), len(rows), axis=0))
    device = next(head.parameters()).device
    p = torch.sigmoid(head(z.to(device), r.to(device))).cpu().numpy().astype(np.float64)
    return float(p[0]), p[1:]


def train_head(deep: np.ndarray, radiomics: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, val_rows: np.ndarray,
               settings: RadiomicsSettings, seed: int, cancel: threading.Event | None = None
               ) -> tuple[FusionHead, list[dict]]:
    """Train a :class:`FusionHead` on patient rows ``fit_rows`` of ``deep`` (N, F) and ``radiomics`` (N, K)
    (both standardised), labels ``y`` (N,); keeps the epoch of lowest loss on ``val_rows`` (on the fit rows
    when there is no validation patient). Returns the head (CPU, eval mode) and one history row per epoch."""
    from DMIFLib.stats import binary_metrics
    from DMIFLib.training.errors import RunCancelledError

    torch.manual_seed(seed)
    head = FusionHead(deep.shape[1], radiomics.shape[1], settings.reduced, settings.hidden)
    d, r, t = (torch.from_numpy(a.astype(np.float32)) for a in (deep, radiomics, y))
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    watch = val_rows if len(val_rows) else fit_rows
    best, best_state, history = float("inf"), None, []
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        if cancel is not None and cancel.is_set():
            raise RunCancelledError("training cancelled while fitting the fused head")
        head.train()
        optimizer.zero_grad()
        loss = loss_fn(head(d[fit_rows], r[fit_rows]), t[fit_rows])
        loss.backward()
        optimizer.step()
        head.eval()
        with torch.no_grad():
            logits = head(d[watch], r[watch])
            val_loss = float(loss_fn(logits, t[watch]))
        if val_loss < best:
            best, best_state = val_loss, {k: v.clone() for k, v in head.state_dict().items()}
        if epoch == settings.epochs or epoch % 10 == 0:
            auc = binary_metrics(y[watch], torch.sigmoid(logits).numpy(), 0.5)["auc"] if len(set(y[watch])) > 1 \
                else float("nan")
            history.append({"stage": "radiomics/head", "epoch": epoch, "epochs": settings.epochs, "lr": settings.lr,
                            "loss": float(loss.detach()), "val_loss": val_loss, "val_auc": auc,
                            "seconds": time.perf_counter() - started})
    head.load_state_dict(best_state)
    return head.eval(), history


class RadiomicsFusionMethod(Method):
    """DMIF-Net deep features + MI-selected radiomics features in a fused head (seed 001)."""

    name = "radiomics"
    title = "DMIF-Net + radiomics"
    seed = "001"

    def train(self, cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
              device: str = "auto", resume: bool = False, progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None, overrides: dict[str, Any] | None = None, *,
              test_ids: Collection[str] | None = None, cache_dir: str | os.PathLike | None = None):
        from DMIFLib.cohort import read_cohort
        from DMIFLib.failures import FAILURES_NAME, write_failures
        from DMIFLib.inference import CasePrediction, prediction_tables
        from DMIFLib.model_file import save_model
        from DMIFLib.radiomics.cohort import write_features_csv
        from DMIFLib.training.algorithm import (
            HISTORY_COLUMNS,
            HISTORY_NAME,
            METRIC_COLUMNS,
            METRICS_NAME,
            MODEL_NAME,
            RUN_NAME,
            SPLIT_NAME,
            TrainResult,
            _tsv,
            evaluation_rows,
            train_cohort,
        )
        from DMIFLib.training.data import load_cohort_slices
        from DMIFLib.training.errors import TrainingError

        started = time.perf_counter()
        out = Path(out_dir)
        overrides = dict(overrides or {})
        try:
            settings = RadiomicsSettings.from_dict(overrides.pop("radiomics", None))
            params = settings.radiomics_params()
        except (ValueError, TypeError) as error:
            raise TrainingError(f"--overrides radiomics: {error}") from None
        if (out / MODEL_NAME).is_file():
            raise TrainingError(f"{out}: already holds a training run ({MODEL_NAME}); choose another output folder")
        if importlib.util.find_spec("mirp") is None:  # say so before the DMIF-Net training, not after it
            raise TrainingError("method radiomics needs the radiomics extra, which is not installed: "
                                "pip install mirp==2.5.0 PyWavelets==1.9.0 (docs/radiomics.md)")

        def deep_progress(event: dict) -> None:
            if progress is not None:
                progress({**event, "fraction": DEEP_FRACTION * event["fraction"]} if "fraction" in event else event)

        deep_dir = out / "deep"
        slice_cache = Path(cache_dir) / "slices" if cache_dir is not None else deep_dir / "slices"
        if resume and (deep_dir / MODEL_NAME).is_file():  # the deep branch finished before the interruption
            deep_model_path = deep_dir / MODEL_NAME
        else:
            deep_model_path = train_cohort(cohort_csv, deep_dir, preset=preset, device=device, resume=resume,
                                           progress=deep_progress, cancel=cancel, overrides=overrides,
                                           test_ids=test_ids, slice_cache=slice_cache).model_path
        from DMIFLib.model_file import load_model

        deep_model = load_model(deep_model_path, device)
        modalities, config = deep_model.modalities, deep_model.info["config"]
        split = {row[0]: (int(row[1]), row[2]) for row in
                 (line.split("\t") for line in (deep_dir / SPLIT_NAME).read_text(encoding="utf-8").splitlines()[1:])}
        cases = [c.only(modalities) for c in read_cohort(cohort_csv, require_labels=True,
                                                         require_modalities=modalities) if c.patient_id in split]

        def radiomics_progress(event: dict) -> None:
            if progress is not None:
                share = (1 - DEEP_FRACTION) * 0.9
                progress({**event, "fraction": DEEP_FRACTION + share * (event["case"] - 1) / event["cases"]})

        features, regions, failures = cohort_features(cases, params, modalities, deep_model.settings,
                                                      Path(cache_dir or out) / "radiomics", radiomics_progress,
                                                      cancel)
        write_failures(out / FAILURES_NAME, failures)
        usable = [c.patient_id for c in cases if c.patient_id in features]
        sides = {pid: split[pid][1] for pid in usable}
        fit_ids = [p for p in usable if sides[p] == "train"]
        val_ids = [p for p in usable if sides[p] == "val"]
        test_ids = [p for p in usable if sides[p] == "test"]
        train_ids = fit_ids + val_ids
        labels = {pid: split[pid][0] for pid in usable}
        if len({labels[p] for p in train_ids}) < 2 or not test_ids:
            raise TrainingError(f"{cohort_csv}: too few patients with radiomics features ({len(usable)} of "
                                f"{len(cases)}; see {out / FAILURES_NAME}) to train and test the fused model")
        try:
            selection = select_features(features, train_ids, [labels[p] for p in train_ids], settings.k,
                                        int(config["seed"]))
        except ValueError as error:
            raise TrainingError(f"{cohort_csv}: {error}") from None
        if progress is not None:
            progress({"stage": "radiomics/head", "fraction": DEEP_FRACTION + (1 - DEEP_FRACTION) * 0.9})
        stacks = {p.patient_id: p.stack for p in load_cohort_slices(
            [c for c in cases if c.patient_id in features], deep_model.settings, cache_dir=slice_cache,
            modalities=modalities)}
        slice_features = {pid: slice_deep_features(deep_model, stacks[pid]) for pid in usable}
        deep_train = np.stack([slice_features[p].mean(axis=0) for p in train_ids])
        deep_mean, deep_std = deep_train.mean(axis=0), deep_train.std(axis=0)
        deep_std[deep_std == 0] = 1.0
        radiomics_z = {pid: selection.transform(features[pid], pid) for pid in usable}
        x_deep = (deep_train - deep_mean) / deep_std
        x_rad = np.stack([radiomics_z[p] for p in train_ids])
        y = np.array([labels[p] for p in train_ids], dtype=np.float64)
        head, head_history = train_head(x_deep, x_rad, y, np.arange(len(fit_ids)),
                                        np.arange(len(fit_ids), len(train_ids)), settings, int(config["seed"]),
                                        cancel)
        region = sorted(set(regions[p] for p in usable))
        state = {"features": selection.names, "mi": selection.mi,
                 "radiomics_mean": torch.from_numpy(selection.mean), "radiomics_std": torch.from_numpy(selection.std),
                 "deep_mean": torch.from_numpy(deep_mean), "deep_std": torch.from_numpy(deep_std),
                 "head": {"spec": head.spec(),
                          "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()}},
                 "params": params.to_dict(), "region": "+".join(region), "settings": settings.to_dict()}

        def predict(pid: str) -> CasePrediction:
            from DMIFLib.inference import predict_stack

            deep_pred = predict_stack(deep_model, stacks[pid])
            p_fused, p_slices = fused_probabilities(head, state, slice_features[pid], radiomics_z[pid])
            deep_pred.p_fused, deep_pred.slice_probabilities["fused"] = p_fused, p_slices
            return deep_pred

        train_preds, test_preds = [predict(p) for p in train_ids], [predict(p) for p in test_ids]
        rows, cutoffs = evaluation_rows(train_preds, test_preds, [labels[p] for p in train_ids],
                                        [labels[p] for p in test_ids], modalities)
        cutoff = cutoffs["patient/fused"]
        for pred in test_preds:
            pred.cutoff, pred.prediction = cutoff, int(pred.p_fused >= cutoff)
        test_auc = {f"{r['level']}/{r['model']}": r["auc"] for r in rows}
        selected = [{"rank": i + 1, "feature": name, "mi": mi, "train_mean": float(m), "train_std": float(s)}
                    for i, (name, mi, m, s) in enumerate(zip(selection.names, selection.mi, selection.mean,
                                                             selection.std, strict=True))]
        model = deep_model
        model.method, model.state, model.cutoff = self.name, state, cutoff
        model.info = {**deep_model.info, "method": self.name, "method_title": self.title, "seed_document": self.seed,
                      "cutoffs": cutoffs, "test_auc": test_auc, "radiomics_region": state["region"],
                      "selected_features": [{"feature": s["feature"], "mi": s["mi"]} for s in selected],
                      "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        model_path = save_model(out / MODEL_NAME, model)
        atomic_write_text(out / SELECTED_NAME, _tsv(selected, ("rank", "feature", "mi", "train_mean", "train_std")))
        write_features_csv([{"patient_id": p, "region": regions[p], **features[p]} for p in usable],
                           out / FEATURES_NAME)
        atomic_write_text(out / METRICS_NAME, _tsv(rows, METRIC_COLUMNS))
        patient_text, slice_text = prediction_tables(test_preds, modalities)
        atomic_write_text(out / "slice_predictions.tsv", slice_text)
        atomic_write_text(out / "predictions.tsv", patient_text)
        atomic_write_text(out / SPLIT_NAME, (deep_dir / SPLIT_NAME).read_text(encoding="utf-8"))
        with open(deep_dir / HISTORY_NAME, newline="", encoding="utf-8") as handle:
            deep_history = list(csv.DictReader(handle, delimiter="\t"))
        atomic_write_text(out / HISTORY_NAME, _tsv(deep_history + head_history, HISTORY_COLUMNS))
        seconds = time.perf_counter() - started
        run_info = {"method": self.name, "seed_document": self.seed, "cohort": str(Path(cohort_csv).resolve()),
                    "preset": preset, "overrides": overrides, "config": config, "radiomics": settings.to_dict(),
                    "radiomics_params": params.to_dict(), "radiomics_region": state["region"],
                    "modalities": list(modalities), "device": str(deep_model.device),
                    "patients": {"train": len(fit_ids), "val": len(val_ids), "test": len(test_ids),
                                 "failed": len(failures)},
                    "selected_features": selected, "cutoffs": cutoffs, "test_auc": test_auc,
                    "deep_run": str(deep_dir), "last_session_seconds": seconds}
        atomic_write_text(out / RUN_NAME, json.dumps(run_info, indent=2, default=float) + "\n")
        return TrainResult(out_dir=out, model_path=model_path, history_path=out / HISTORY_NAME,
                           metrics_path=out / METRICS_NAME, predictions_path=out / "predictions.tsv",
                           split_path=out / SPLIT_NAME, run_path=out / RUN_NAME, metrics=rows, seconds=seconds)

    def train_config(self, preset: str, overrides: dict[str, Any] | None):
        from DMIFLib.training.presets import make_config

        return make_config(preset, {k: v for k, v in (overrides or {}).items() if k != "radiomics"})

    def resumable(self, out_dir: Path) -> bool:
        from DMIFLib.training.algorithm import MODEL_NAME
        from DMIFLib.training.checkpoint import CHECKPOINT_NAME

        return any((out_dir / "deep" / name).is_file() for name in (CHECKPOINT_NAME, MODEL_NAME))

    def load(self, content: dict, path: Path | None, device: torch.device):
        from DMIFLib.model_file import dmif_nets, model_from_content

        state = dict(content["method_state"])
        for key in ("features", "mi", "radiomics_mean", "radiomics_std", "deep_mean", "deep_std", "head", "params"):
            if key not in state:
                raise KeyError(f"method_state/{key}")
        model = model_from_content(content, dmif_nets(content, device), path, device, state)
        _head_from_state(state, device)  # a head that does not fit its spec fails here, at load time
        return model

    def predict(self, model, case: CaseInput):
        from DMIFLib.inference import predict_stack
        from DMIFLib.radiomics.params import RadiomicsParams

        state = model.state
        stack = case.slices(model.settings, model.modalities)
        prediction = predict_stack(model, stack)
        selection = _selection(state)
        params = params_for(selection.names, RadiomicsParams.from_dict(state["params"], "model radiomics params"))
        used = tuple(m for m in model.modalities if any(n.startswith(f"{m}_") for n in selection.names))
        features, _ = case_features(case, params, model.modalities, model.settings, features_of=used)
        radiomics = selection.transform(features, case.patient_id or "case")
        head = _head_from_state(state, model.device)
        p_fused, p_slices = fused_probabilities(head, state, slice_deep_features(model, stack), radiomics)
        if not (np.isfinite(p_fused) and np.isfinite(p_slices).all()):
            raise ValueError(f"{case.patient_id or 'case'}: the fused head gives NaN/inf probabilities")
        prediction.p_fused, prediction.slice_probabilities["fused"] = p_fused, p_slices
        prediction.prediction = int(p_fused >= model.cutoff)
        return prediction
