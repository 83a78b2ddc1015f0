"""Algorithm 1 of the paper on a cohort: three training stages, the model file, held-out metrics.

Stage 1, per modality: DF-Net and MI-Net trained separately (lr 1e-3 in the paper preset). Stage 2, per
modality: DMIF-Net = both stage-1 nets + a new fusion head, fine-tuned together (1e-4). Stage 3: the
multimodal net = every modality's stage-2 DMIF-Net + a new fusion head, fine-tuned (1e-5). New stage-1 layers
get the paper's uniform initialisation (:func:`DMIFLib.nets.init_uniform_`); a fusion head starts as the
weighting of its branches' logits fitted on the validation patients (:mod:`DMIFLib.training.stacking`; the
weights are in ``run.json`` under ``fusion_init``).

The model file keeps each modality's stage-2 DMIF-Net (for ``p_<modality>``) and the stage-3 net (for
``p_fused``); a single-modality model has no stage 3, its ``p_fused`` is its DMIF-Net's ``p_<modality>``.
The cut-off is Youden's on the training patients' ``p_fused`` (train + validation patients), after
calibration (fitted on the validation patients, :mod:`DMIFLib.trust.training`); metrics.tsv holds the
held-out test patients only, with ECE and Brier score (``ece_raw``/``brier_raw``: the uncalibrated p_fused).

Run folder ``DIR``: ``model.pt``, ``history.tsv`` (one row per stage and epoch), ``metrics.tsv``,
``predictions.tsv`` + ``slice_predictions.tsv`` (test patients), ``split.tsv``, ``run.json`` (provenance),
``slices/`` (cached slice stacks) and, while the run is unfinished, ``checkpoint.pt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from DMIFLib import __version__
from DMIFLib.atomic import atomic_write_text
from DMIFLib.cohort import MODALITIES, read_cohort
from DMIFLib.model_file import FUSED, LoadedModel, content_problem, model_dict, save_model
from DMIFLib.preprocessing.slices import central_slices
from DMIFLib.training import distributed
from DMIFLib.training.augment import AugmentConfig, SliceAugmenter
from DMIFLib.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from DMIFLib.training.data import PatientSlices, load_cohort_slices, unreadable_inputs
from DMIFLib.training.device import resolve_device
from DMIFLib.training.errors import TrainingError
from DMIFLib.training.presets import TrainConfig, make_config
from DMIFLib.training.scattering_stage import cached_minet_data
from DMIFLib.training.split import patient_split, validation_split
from DMIFLib.training.stacking import learned_branches, weight_branches_from_validation
from DMIFLib.training.stage import SliceSet, epoch_seed, fit
from DMIFLib.trust.calibrate import add_calibration_columns
from DMIFLib.trust.training import calibrate_run, set_training_cohort

if TYPE_CHECKING:
    from DMIFLib.preprocessing.settings import PreprocessSettings

MODEL_NAME = "model.pt"
HISTORY_NAME = "history.tsv"
METRICS_NAME = "metrics.tsv"
SPLIT_NAME = "split.tsv"
RUN_NAME = "run.json"
HISTORY_COLUMNS = ("stage", "epoch", "epochs", "lr", "loss", "val_loss", "val_auc", "seconds")
METRIC_COLUMNS = ("level", "model", "n", "n_pos", "n_neg", "auc", "accuracy", "sensitivity", "specificity",
                  "ppv", "npv", "cutoff", "tp", "fp", "tn", "fn", "ece", "brier", "ece_raw", "brier_raw")


@dataclass
class TrainResult:
    """Paths of a finished run's outputs and its held-out test metrics (rows of metrics.tsv)."""

    out_dir: Path
    model_path: Path
    history_path: Path
    metrics_path: Path
    predictions_path: Path
    split_path: Path
    run_path: Path
    metrics: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_names(modalities: tuple[str, ...]) -> list[str]:
    """Algorithm 1's stages in order, e.g. stage1/t1c/dfnet, stage1/t1c/minet, ..., stage2/t1c/dmifnet, stage3/fused.

    A single-modality run has no stage 3: its fused net is the modality's stage-2 DMIF-Net (nothing to fuse).
    """
    return ([f"stage1/{m}/{k}" for m in modalities for k in ("dfnet", "minet")]
            + [f"stage2/{m}/dmifnet" for m in modalities] + (["stage3/fused"] if len(modalities) > 1 else []))


def _branch_spec(kind: str, config: TrainConfig) -> dict:
    from DMIFLib.nets import preset_spec

    spec = preset_spec(kind, config.net_width)
    spec["config"].update(config.net_overrides.get(kind, {}))
    if kind == "minet":
        spec["config"].update(scales=list(config.mi_scales), input_shape=[config.slice_size, config.slice_size])
    return spec


def _rebuild(entry: dict) -> nn.Module:
    from DMIFLib.nets import build_net

    net = build_net(entry["spec"])
    net.load_state_dict(entry["state_dict"])
    return net


def build_stage_net(name: str, done: dict[str, dict], config: TrainConfig, modalities: tuple[str, ...]) -> nn.Module:
    """The net that stage ``name`` starts from: new (stage 1) or assembled from finished stages' weights."""
    from DMIFLib.nets import DMIFNet, MultimodalDMIF, build_net, init_uniform_, preset_spec

    torch.manual_seed(epoch_seed(config.seed, name, -1))
    parts = name.split("/")
    if parts[0] == "stage1":
        return init_uniform_(build_net(_branch_spec(parts[2], config)))
    if parts[0] == "stage2":
        m = parts[1]
        dropout = preset_spec("dmifnet", config.net_width)["config"].get("dropout", 0.0)
        return DMIFNet(_rebuild(done[f"stage1/{m}/dfnet"]), _rebuild(done[f"stage1/{m}/minet"]), dropout=dropout)
    dropout = preset_spec("multimodal", config.net_width, modalities)["config"].get("dropout", 0.0)
    return MultimodalDMIF({m: _rebuild(done[f"stage2/{m}/dmifnet"]) for m in modalities}, dropout=dropout)


def _slice_set(patients: list[PatientSlices], modalities: tuple[str, ...], limit: int | None) -> SliceSet:
    """(N, M, S, S) slices of ``patients`` with the modalities as channels, and their labels (N,)."""
    xs, ys = [], []
    for p in patients:
        keep = central_slices(p.stack.n_slices, limit)
        xs.append(p.stack.stacked(modalities)[keep])
        ys.append(np.full(len(keep), p.label, dtype=np.float32))
    return SliceSet(torch.from_numpy(np.concatenate(xs).astype(np.float32)), torch.from_numpy(np.concatenate(ys)))


def _channel(data: SliceSet, index: int) -> SliceSet:
    return SliceSet(data.x[:, index:index + 1].contiguous(), data.y)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _tsv(rows: list[dict], columns: tuple[str, ...]) -> str:
    lines = ["\t".join(columns)] + ["\t".join(_format(row.get(c, "")) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    import kymatio
    import monai

    return {"DMIFLib": __version__, "torch": torch.__version__, "monai": monai.__version__,
            "kymatio": kymatio.__version__, "numpy": np.__version__, "python": platform.python_version()}


def evaluation_rows(train_preds: list, test_preds: list, train_labels: list[int], test_labels: list[int],
                    modalities: tuple[str, ...]) -> tuple[list[dict], dict[str, float]]:
    """Test metrics per level (patient, slice) and model (each modality, fused), at cut-offs from training.

    Each cut-off is Youden's J on the training predictions of the same level and model. Returns the rows
    of metrics.tsv and the cut-offs by ``"<level>/<model>"``.
    """
    from DMIFLib.stats import binary_metrics, youden_cutoff

    def scores(preds: list, labels: list[int], level: str, model: str) -> tuple[np.ndarray, np.ndarray]:
        if level == "patient":
            values = [p.p_fused if model == FUSED else p.probabilities[model] for p in preds]
            return np.asarray(labels), np.asarray(values)
        y = np.concatenate([np.full(p.n_slices, label) for p, label in zip(preds, labels, strict=True)])
        return y, np.concatenate([p.slice_probabilities[model] for p in preds])

    rows, cutoffs = [], {}
    for level in ("patient", "slice"):
        for model in (*modalities, FUSED):
            cutoff = youden_cutoff(*scores(train_preds, train_labels, level, model))
            cutoffs[f"{level}/{model}"] = cutoff
            rows.append({"level": level, "model": model,
                         **binary_metrics(*scores(test_preds, test_labels, level, model), cutoff)})
    return rows, cutoffs


class _Run:
    """State of one training run: configuration, data, finished stages, checkpointing."""

    def __init__(self, cohort_csv: Path, out_dir: Path, config: TrainConfig, device: torch.device,
                 progress: Callable[[dict], None] | None, cancel: threading.Event | None) -> None:
        self.cohort_csv, self.out, self.config, self.device = cohort_csv, out_dir, config, device
        self.progress, self.cancel = progress, cancel
        self.checkpoint_path = out_dir / CHECKPOINT_NAME
        self.cohort_sha256 = _sha256(cohort_csv)
        self.done: dict[str, dict] = {}
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}
        self.overrides: dict[str, Any] = {}
        self.fusion_init: dict[str, dict | None] = {}

    def state(self, current: dict | None) -> dict:
        return {"config": self.config.to_dict(), "overrides": self.overrides, "cohort_sha256": self.cohort_sha256,
                "done": self.done,
                "fusion_init": self.fusion_init, "history": self.history, "timings": self.timings, "current": current}

    def save(self, current: dict | None) -> None:
        if not distributed.is_main():  # under torchrun rank 0 writes the checkpoint
            return
        save_checkpoint(self.checkpoint_path, self.state(current))
        rows = self.history + (current["fit"]["history"] if current else [])
        atomic_write_text(self.out / HISTORY_NAME, _tsv(rows, HISTORY_COLUMNS))


def _prepare_out_dir(out: Path, resume: bool, method: str = "dmif") -> dict | None:
    """Check the run folder; return the checkpoint to resume from (None for a new run). A checkpoint of another
    method than ``method`` (its ``method`` entry; DMIF-Net checkpoints have none) is refused."""
    checkpoint = out / CHECKPOINT_NAME
    if resume:
        if not checkpoint.is_file():
            if (out / MODEL_NAME).is_file():
                raise TrainingError(f"{out}: this run is already complete ({MODEL_NAME} exists); nothing to resume")
            raise TrainingError(f"{out}: no {CHECKPOINT_NAME} to resume from; start without --resume (with "
                                "--overwrite if an unfinished run is there)")
        for stale in out.glob(".*.tmp*"):  # temporary files of writes that a kill interrupted
            stale.unlink(missing_ok=True)  # another torchrun process may have removed it
        state = load_checkpoint(checkpoint)
        found = state.get("method", "dmif")
        if found != method:
            raise TrainingError(f"{checkpoint}: a {found} run, not a {method} run; resume it with --method {found}")
        return state
    if checkpoint.is_file() or (out / MODEL_NAME).is_file():
        raise TrainingError(f"{out}: already holds a training run; use --resume to continue it, or choose "
                            "another output folder (nothing is overwritten)")
    return None


def training_settings(config: TrainConfig, cohort: dict[str, Any] | None, cohort_csv: Path) -> PreprocessSettings:
    """The ``PreprocessSettings`` the model records: the cohort's own (from its cases' provenance, see
    :mod:`DMIFLib.preprocessing.cohort_settings`) when it is preprocessed, else the defaults, updated by
    ``config.preprocessing`` and ``config.slice_size``.

    Raises :class:`TrainingError` when ``config.preprocessing`` asks for volume steps other than those the
    preprocessed cohort went through (the model would then record settings its training data never had).
    """
    from DMIFLib.preprocessing.cohort_settings import volume_settings
    from DMIFLib.preprocessing.settings import PreprocessSettings

    try:
        merged = PreprocessSettings.from_dict({**PreprocessSettings().to_dict(), **(cohort or {}),
                                               **config.preprocessing, "slice_size": config.slice_size})
    except (ValueError, TypeError) as error:
        raise TrainingError(f"preprocessing settings: {error}") from None
    if cohort is not None:
        found = volume_settings(merged.to_dict(), margin=False)
        wanted = volume_settings(cohort, margin=False)
        if found != wanted:
            keys = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise TrainingError(f"{cohort_csv}: the cohort was preprocessed with "
                                f"{', '.join(f'{k}={wanted.get(k)}' for k in keys)}, but the training settings ask "
                                f"for {', '.join(f'{k}={found.get(k)}' for k in keys)}; drop them from the "
                                "preprocessing overrides or preprocess the cohort again")
    return merged


def training_cases(config: TrainConfig, cohort_csv: Path) -> list:
    """The labelled ``CohortCase`` rows of ``cohort_csv``; sets ``config.modalities`` (when unset: every modality
    all cases have). Raises ``CohortError`` / ``TrainingError`` naming the file when a case or input file is bad."""
    cases = read_cohort(cohort_csv, require_labels=True, require_modalities=config.modalities or ())
    config.modalities = config.modalities or tuple(m for m in MODALITIES if all(m in c.images for c in cases))
    unreadable = unreadable_inputs(cases)
    if unreadable:
        raise TrainingError(f"{cohort_csv}: {len(unreadable)} input file(s) cannot be read, nothing was trained: "
                            + "; ".join(unreadable))
    return cases


def train_cohort(cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
                 device: str = "auto", resume: bool = False, progress: Callable[[dict], None] | None = None,
                 cancel: threading.Event | None = None, overrides: dict[str, Any] | None = None, *,
                 test_ids: Collection[str] | None = None, slice_cache: str | os.PathLike | None = None) -> TrainResult:
    """Train DMIF-Net on a labelled cohort with Algorithm 1 and evaluate it on held-out test patients.

    ``preset``: "quick" or "paper" (:mod:`DMIFLib.training.presets`); ``overrides``: TrainConfig fields
    (e.g. ``{"seed": 1, "epochs": 2}``). ``resume`` continues ``out_dir``'s checkpoint with the run's own
    configuration (the cohort file must be unchanged). ``progress`` gets dicts with ``stage`` (e.g.
    ``"stage1/t1c/dfnet"``), ``step``/``steps`` (stage number), ``epoch``/``epochs``, ``batch``/``batches``,
    ``loss``, per epoch ``val_loss``/``val_auc``, and ``fraction`` (0..1 of the whole run); ``cancel`` stops
    cleanly (``RunCancelledError``) with the last epoch's checkpoint kept for ``resume``. Raises
    ``CohortError`` / ``PreprocessingError`` / ``TrainingError`` naming the file or case.
    ``test_ids`` (cross-validation folds) replaces the split's test patients; ``slice_cache`` is the folder of
    cached slice stacks (default ``out_dir/slices``).
    """
    from DMIFLib.inference import predict_stack, prediction_tables
    from DMIFLib.preprocessing.cohort_settings import cohort_settings

    started = time.perf_counter()
    cohort_csv, out = Path(cohort_csv), Path(out_dir)
    try:
        torch_device = resolve_device(device)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    config = None if resume else make_config(preset, overrides)
    cohort_preprocessing = cohort_settings(read_cohort(cohort_csv, require_labels=True), cohort_csv)
    checkpoint = _prepare_out_dir(out, resume)
    config = TrainConfig.from_dict(checkpoint["config"]) if checkpoint else config
    settings = training_settings(config, cohort_preprocessing, cohort_csv)
    cases = training_cases(config, cohort_csv)
    modalities = config.modalities
    run = _Run(cohort_csv, out, config, torch_device, progress, cancel)
    if checkpoint:
        if checkpoint["cohort_sha256"] != run.cohort_sha256:
            raise TrainingError(f"{cohort_csv}: the cohort table changed since {out / CHECKPOINT_NAME} was written; "
                                "resume needs the same cohort")
        run.done, run.history, run.timings = checkpoint["done"], checkpoint["history"], checkpoint["timings"]
        run.fusion_init = checkpoint.get("fusion_init", {})
    run.overrides = checkpoint["overrides"] if checkpoint else dict(overrides or {})
    with distributed.main_first():  # under torchrun the others read the slice cache rank 0 wrote
        data = load_cohort_slices(cases, settings, progress, cancel, cache_dir=slice_cache or out / "slices",
                                  modalities=modalities)
    by_id = {p.patient_id: p for p in data}
    labels = {p.patient_id: p.label for p in data}
    groups = {p.patient_id: p.subject or p.patient_id for p in data}  # a subject's timepoints stay on one side
    try:
        held = set(test_ids) if test_ids is not None else None
        fixed = ({pid: "test" if pid in held else "train" for pid in labels} if held is not None
                 else {p.patient_id: p.split for p in data})
        train_ids, test_ids = patient_split(labels, config.test_fraction, config.seed, fixed, groups)
    except ValueError as error:
        raise TrainingError(f"{cohort_csv}: {error}") from None
    fit_ids, val_ids = validation_split({pid: labels[pid] for pid in train_ids}, config.val_fraction, config.seed,
                                        groups)
    out.mkdir(parents=True, exist_ok=True)
    sides = {**dict.fromkeys(fit_ids, "train"), **dict.fromkeys(val_ids, "val"), **dict.fromkeys(test_ids, "test")}
    if distributed.is_main():
        atomic_write_text(out / SPLIT_NAME, _tsv(
            [{"patient_id": pid, "label": labels[pid], "split": sides[pid], "n_slices": by_id[pid].stack.n_slices}
             for pid in labels], ("patient_id", "label", "split", "n_slices")))

    train_set = _slice_set([by_id[i] for i in fit_ids], modalities, config.max_slices)
    val_set = _slice_set([by_id[i] for i in val_ids], modalities, config.max_slices) if val_ids else None
    augment_config = AugmentConfig.from_dict(config.augment) if config.augment else None
    augment = SliceAugmenter(augment_config, config.seed) if augment_config else None
    names = stage_names(modalities)
    for step, name in enumerate(names, start=1):
        if name in run.done:
            continue
        stage_started = time.perf_counter()
        net = build_stage_net(name, run.done, config, modalities)
        level = name.split("/")[0]
        if level == "stage3":
            train, val = train_set, val_set
        else:
            channel = modalities.index(name.split("/")[1])
            train, val = _channel(train_set, channel), (_channel(val_set, channel) if val_set else None)
        stage_augment, forward = augment, None
        if name.endswith("/minet") and config.scattering_cache:
            def cache_progress(event: dict, step: int = step) -> None:
                if progress is not None:
                    progress({**event, "step": step, "steps": len(names), "fraction": (step - 1) / len(names)})

            train, val, stage_augment = cached_minet_data(net, train, val, augment_config, torch_device,
                                                          cache_progress, cancel)
            forward = net.forward_from_scattering
        current = checkpoint["current"] if checkpoint and checkpoint["current"] else None
        resume_state = current["fit"] if current and current["stage"] == name else None
        if level != "stage1" and resume_state is None:
            branches = ([f"stage1/{name.split('/')[1]}/{kind}" for kind in ("dfnet", "minet")] if level == "stage2"
                        else [f"stage2/{m}/dmifnet" for m in modalities])
            learned = learned_branches([run.done[b].get("train_loss") for b in branches], train.y.numpy())
            run.fusion_init[name] = weight_branches_from_validation(net, val, config.batch_size, torch_device,
                                                                    learned)

        def stage_progress(event: dict, step: int = step) -> None:
            if progress is not None:
                epochs_done = event["epoch"] - 1 + event["batch"] / event["batches"] if "batch" in event \
                    else event["epoch"]
                within = epochs_done / max(event["epochs"], 1)
                progress({**event, "step": step, "steps": len(names), "fraction": (step - 1 + within) / len(names)})

        def save_epoch(fit_state: dict, name: str = name, net: nn.Module = net) -> None:
            run.save({"stage": name, "spec": net.spec(), "fit": fit_state})

        per_net = f"{level}/{name.split('/')[-1]}"
        result = fit(net, train, val, lr=config.lr.get(per_net, config.lr[level]),
                     epochs=config.epochs.get(per_net, config.epochs[level]),
                     batch_size=config.batch_size, device=torch_device, augment=stage_augment, seed=config.seed,
                     stage=name, patience=config.patience, forward=forward, progress=stage_progress, cancel=cancel,
                     checkpoint=save_epoch if distributed.is_main() else None, resume=resume_state,
                     keep_last=per_net in config.keep_last_epoch or level in config.keep_last_epoch,
                     schedule="cosine" if per_net in config.cosine_lr or level in config.cosine_lr else "plateau")
        run.done[name] = {"spec": net.spec(), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                          "train_loss": result.kept_loss}
        run.history += result.history
        run.timings[name] = run.timings.get(name, 0.0) + time.perf_counter() - stage_started
        run.save(None)

    if not distributed.is_main():  # under torchrun rank 0 evaluates and writes the outputs
        distributed.barrier()
        return TrainResult(out_dir=out, model_path=out / MODEL_NAME, history_path=out / HISTORY_NAME,
                           metrics_path=out / METRICS_NAME, predictions_path=out / "predictions.tsv",
                           split_path=out / SPLIT_NAME, run_path=out / RUN_NAME)
    # The model: each modality's stage-2 DMIF-Net and the stage-3 multimodal net (one modality: its DMIF-Net).
    nets = {m: _rebuild(run.done[f"stage2/{m}/dmifnet"]) for m in modalities}
    nets[FUSED] = _rebuild(run.done["stage3/fused"]) if len(modalities) > 1 else nets[modalities[0]]
    model = LoadedModel(nets={k: v.to(torch_device).eval() for k, v in nets.items()}, modalities=modalities,
                        marker=config.marker, settings=settings, cutoff=0.5, device=torch_device,
                        patient_slices=config.max_slices)
    problem = content_problem(model_dict(model.nets, modalities, config.marker, settings, 0.5))
    if problem:
        raise TrainingError(f"{out}: no model written: {problem}; lower the learning rate or check the inputs")
    if progress is not None:
        progress({"stage": "evaluate", "step": len(names), "steps": len(names), "fraction": 1.0})
    train_ids_all = fit_ids + val_ids
    set_training_cohort(model, [by_id[i].stack for i in train_ids_all])  # trust: docs/trust.md
    # the training patients' scores only choose the cut-off and the calibration: no interval, no warning
    train_preds = [predict_stack(model, by_id[i].stack, interval_and_warning=False) for i in train_ids_all]
    test_preds = [predict_stack(model, by_id[i].stack) for i in test_ids]
    calibrate_run(model, config.calibration, train_preds[len(fit_ids):], [labels[i] for i in val_ids],
                  train_preds + test_preds)
    rows, cutoffs = evaluation_rows(train_preds, test_preds, [labels[i] for i in train_ids_all],
                                    [labels[i] for i in test_ids], modalities)
    add_calibration_columns(rows, test_preds, [labels[i] for i in test_ids], modalities)
    model.cutoff = cutoffs[f"patient/{FUSED}"]
    for pred in test_preds:
        pred.cutoff, pred.prediction = model.cutoff, int(pred.p_fused >= model.cutoff)
    test_auc = {f"{r['level']}/{r['model']}": r["auc"] for r in rows}
    model.info = {"preset": config.preset, "seed": config.seed, "cohort_sha256": run.cohort_sha256,
                  "preprocessing_from": "cohort provenance" if cohort_preprocessing else "training settings",
                  "cutoffs": cutoffs, "test_auc": test_auc, "config": config.to_dict(),
                  "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "patients": {"train": len(fit_ids), "val": len(val_ids), "test": len(test_ids)}}
    model_path = save_model(out / MODEL_NAME, model)
    atomic_write_text(out / METRICS_NAME, _tsv(rows, METRIC_COLUMNS))
    patient_text, slice_text = prediction_tables(test_preds, modalities)
    atomic_write_text(out / "slice_predictions.tsv", slice_text)
    atomic_write_text(out / "predictions.tsv", patient_text)
    atomic_write_text(out / HISTORY_NAME, _tsv(run.history, HISTORY_COLUMNS))
    seconds = time.perf_counter() - started
    run_info = {
        "cohort": str(cohort_csv.resolve()), "cohort_sha256": run.cohort_sha256, "preset": config.preset,
        "overrides": run.overrides, "config": config.to_dict(), "seed": config.seed, "device": str(torch_device),
        "modalities": list(modalities), "patients": {"train": len(fit_ids), "val": len(val_ids),
                                                      "test": len(test_ids)},
        "slices": {"train": len(train_set), "val": len(val_set) if val_set else 0},
        "versions": _versions(), "stage_seconds": run.timings, "resumed": checkpoint is not None,
        "last_session_seconds": seconds, "fusion_init": run.fusion_init, "cutoffs": cutoffs, "test_auc": test_auc,
        "calibration": model.calibration, **distributed.run_info(),
    }
    atomic_write_text(out / RUN_NAME, json.dumps(run_info, indent=2, default=float) + "\n")
    run.checkpoint_path.unlink(missing_ok=True)
    distributed.barrier()
    return TrainResult(out_dir=out, model_path=model_path, history_path=out / HISTORY_NAME,
                       metrics_path=out / METRICS_NAME, predictions_path=out / "predictions.tsv",
                       split_path=out / SPLIT_NAME, run_path=out / RUN_NAME, metrics=rows, seconds=seconds)
