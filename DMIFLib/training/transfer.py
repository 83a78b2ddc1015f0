"""Training and prediction of the transfer-learning CNNs of seed 002 (Zhang et al. 2024) on a labelled cohort.

Per modality, one CNN (:mod:`DMIFLib.nets.transfer`, ImageNet weights from a local file) is fine-tuned on that
modality's slices (:func:`DMIFLib.training.stage.fit`: Adam, BCE, ReduceLROnPlateau, best validation epoch).
The modalities are then fused one of four ways (``fusion``):

- ``mean`` / ``logistic`` / ``svm``: late fusion of the modality nets' slice probabilities
  (:mod:`DMIFLib.nets.late_fusion`; logistic and SVM are fitted on the validation patients' slices);
- ``channels``: one more CNN fine-tuned on the modalities stacked as input channels (the paper's FC, TC and FTC
  fusion for FLAIR+T1CE, T2WI+T1CE, FLAIR+T2WI+T1CE).

``p_<modality>`` is the mean slice probability of that modality's net, ``p_fused`` the mean fused slice
probability; a single-modality model's ``p_fused`` is its one net's. Split, slice cache, cut-off (Youden's on the
training patients), metrics and the run folder's files are those of DMIF-Net's training
(:mod:`DMIFLib.training.algorithm`); ``--resume`` continues after the last finished epoch.

Settings (``overrides`` keys beside :class:`~DMIFLib.training.presets.TrainConfig`'s): see :class:`TransferSettings`.
The learning rate is 1e-4 unless ``lr`` is given; the epochs are the preset's stage-1 epochs (``epochs`` overrides).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from DMIFLib.atomic import atomic_write_text
from DMIFLib.cohort import read_cohort
from DMIFLib.inference import CasePrediction, prediction_tables, stack_input
from DMIFLib.model_file import FUSED, LoadedModel, content_problem, model_dict, save_model
from DMIFLib.nets.late_fusion import COMBINERS, LateFusion, LateFusionNet, fit_late_fusion
from DMIFLib.nets.transfer import (
    ARCHS,
    MIN_INPUT,
    TransferConfig,
    TransferNet,
    WeightsNotFoundError,
    find_imagenet_weights,
    load_imagenet,
)
from DMIFLib.training.algorithm import (
    HISTORY_COLUMNS,
    HISTORY_NAME,
    METRIC_COLUMNS,
    METRICS_NAME,
    MODEL_NAME,
    RUN_NAME,
    SPLIT_NAME,
    TrainResult,
    _channel,
    _prepare_out_dir,
    _sha256,
    _slice_set,
    _tsv,
    _versions,
    evaluation_rows,
    training_cases,
    training_settings,
)
from DMIFLib.training.augment import AugmentConfig, SliceAugmenter
from DMIFLib.training.checkpoint import CHECKPOINT_NAME, save_checkpoint
from DMIFLib.training.data import load_cohort_slices
from DMIFLib.training.device import resolve_device
from DMIFLib.training.errors import TrainingError
from DMIFLib.training.presets import TrainConfig, make_config
from DMIFLib.training.split import patient_split, validation_split
from DMIFLib.training.stage import SliceSet, epoch_seed, fit, predict_proba

METHOD = "transfer"
FUSIONS = (*COMBINERS, "channels")
TRANSFER_LR = 1e-4
"""Fine-tuning learning rate when ``lr`` is not given (ImageNet weights are moved gently)."""


@dataclass
class TransferSettings:
    """arch: one of :data:`~DMIFLib.nets.transfer.ARCHS`; fusion: one of :data:`FUSIONS`; imagenet: start from
    torchvision's ImageNet weights (False: random initialisation); weights: the weight file, or a folder holding
    it (None: ``$DMIF_IMAGENET_WEIGHTS``, then torch.hub's cache); input_size: resize slices to input_size²
    before the net (None: the preprocessing's slice size); width_divisor: narrower nets (tests; needs
    imagenet False)."""

    arch: str = "resnet18"
    fusion: str = "mean"
    imagenet: bool = True
    weights: str | None = None
    input_size: int | None = None
    width_divisor: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransferSettings:
        settings = cls(**data)
        if settings.arch not in ARCHS:
            raise TrainingError(f"arch {settings.arch!r}: choose one of {', '.join(ARCHS)}")
        if settings.fusion not in FUSIONS:
            raise TrainingError(f"fusion {settings.fusion!r}: choose one of {', '.join(FUSIONS)}")
        if not isinstance(settings.imagenet, bool):
            raise TrainingError(f"imagenet = {settings.imagenet!r}: true or false")
        if settings.weights is not None and not isinstance(settings.weights, str):
            raise TrainingError(f"weights = {settings.weights!r}: the path of a weight file or folder is needed")
        for name, least in (("input_size", 32), ("width_divisor", 1)):
            value = getattr(settings, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise TrainingError(f"{name} = {value!r}: a whole number of at least {least} is needed")
        if settings.imagenet and settings.width_divisor != 1:
            raise TrainingError("ImageNet weights need width_divisor 1 (the published widths); set imagenet false "
                                "for narrower nets")
        return settings


KEYS = tuple(f.name for f in dataclasses.fields(TransferSettings))


def split_overrides(overrides: dict[str, Any] | None) -> tuple[TransferSettings, dict[str, Any]]:
    """(the transfer settings, the remaining TrainConfig overrides) of a method's ``overrides``."""
    overrides = dict(overrides or {})
    return TransferSettings.from_dict({k: overrides.pop(k) for k in KEYS if k in overrides}), overrides


def net_names(modalities: tuple[str, ...], fusion: str) -> list[str]:
    """The nets a run trains, in order: ``transfer/<modality>`` each, then ``transfer/fused`` (channel fusion of
    two or more modalities)."""
    return [f"transfer/{m}" for m in modalities] + (
        ["transfer/fused"] if fusion == "channels" and len(modalities) > 1 else [])


def new_net(name: str, modalities: tuple[str, ...], settings: TransferSettings, seed: int) -> TransferNet:
    """The net that ``name`` starts from: seeded initialisation, then the ImageNet weights when asked for.

    Raises :class:`TrainingError` with the weight file's name and where to put it when it is missing."""
    torch.manual_seed(epoch_seed(seed, name, -1))
    channels = len(modalities) if name == "transfer/fused" else 1
    net = TransferNet(TransferConfig(arch=settings.arch, in_channels=channels, input_size=settings.input_size,
                                     width_divisor=settings.width_divisor))
    if settings.imagenet:
        try:
            load_imagenet(net, settings.weights)
        except (OSError, ValueError) as error:
            raise TrainingError(str(error)) from None
    return net


def _rebuild(entry: dict) -> nn.Module:
    from DMIFLib.nets import build_net

    net = build_net(entry["spec"])
    net.load_state_dict(entry["state_dict"])
    return net


def transfer_nets(content: dict, device: torch.device) -> dict[str, nn.Module]:
    """A transfer model's nets from a model file's content: one per modality and ``"fused"`` (the channel-fusion
    net, a :class:`LateFusionNet` over the modality nets, or a single-modality model's one net), eval mode."""
    modalities = tuple(content["modalities"])
    state = content["method_state"]
    nets: dict[str, nn.Module] = {m: _rebuild(content["nets"][m]).to(device).eval() for m in modalities}
    if len(modalities) == 1:
        nets[FUSED] = nets[modalities[0]]
    elif state["fusion"] == "channels":
        nets[FUSED] = _rebuild(content["nets"][FUSED]).to(device).eval()
    else:
        nets[FUSED] = LateFusionNet([nets[m] for m in modalities], LateFusion.from_dict(state["combiner"]))
    return nets


def predict_transfer_stack(model: LoadedModel, stack, batch_size: int = 64) -> CasePrediction:
    """One patient from its ``SliceStack`` (images[modality] (n, S, S) float32, z-scored): slice probabilities of
    every modality net and the fused ones (late fusion of those, or the channel-fusion net); patient p = the mean.

    Raises ``ValueError`` naming the patient for an empty stack, a slice size the model was not trained on, or
    non-finite probabilities."""
    who = stack.patient_id or "slice stack"
    x = stack_input(model, stack)
    slices = {m: predict_proba(model.nets[m], x[:, i:i + 1], batch_size, model.device)
              for i, m in enumerate(model.modalities)}
    fused = model.nets[FUSED]
    if len(model.modalities) == 1:
        slices[FUSED] = slices[model.modalities[0]]
    elif isinstance(fused, LateFusionNet):
        slices[FUSED] = fused.fusion.proba(np.stack([slices[m] for m in model.modalities], axis=1))
    else:
        slices[FUSED] = predict_proba(fused, x, batch_size, model.device)
    if not all(np.isfinite(p).all() for p in slices.values()):
        raise ValueError(f"{who}: the model gives NaN/inf probabilities (non-finite input slices or weights)")
    p_fused = float(np.mean(slices[FUSED]))
    return CasePrediction(
        patient_id=stack.patient_id, probabilities={m: float(np.mean(slices[m])) for m in model.modalities},
        p_fused=p_fused, prediction=int(p_fused >= model.cutoff), cutoff=model.cutoff, n_slices=stack.n_slices,
        slice_probabilities=slices, slice_indices=np.asarray(stack.slice_indices))


def _combiner(fusion: str, nets: dict[str, nn.Module], modalities: tuple[str, ...], val: SliceSet | None,
              config: TrainConfig, device: torch.device) -> LateFusion | None:
    """The late-fusion combiner fitted on the validation slices (None for channel fusion or one modality)."""
    if fusion == "channels" or len(modalities) == 1:
        return None
    if fusion == "mean":
        return LateFusion("mean")
    if val is None:
        raise TrainingError(f"fusion {fusion}: no validation patients to fit it on (val_fraction "
                            f"{config.val_fraction}); use fusion mean or more patients")
    p = np.stack([predict_proba(nets[m], _channel(val, i), config.batch_size, device)
                  for i, m in enumerate(modalities)], axis=1)
    try:
        return fit_late_fusion(fusion, p, val.y.numpy(), config.seed)
    except ValueError as error:
        raise TrainingError(str(error)) from None


def _model(nets: dict[str, nn.Module], modalities: tuple[str, ...], combiner: LateFusion | None,
           settings: TransferSettings, config: TrainConfig, preprocess, device: torch.device) -> LoadedModel:
    """The in-memory model (nets on ``device``, eval mode; cut-off 0.5 until Youden's is known)."""
    nets = {k: v.to(device).eval() for k, v in nets.items()}
    if len(modalities) == 1:
        nets[FUSED] = nets[modalities[0]]
    elif combiner is not None:
        nets[FUSED] = LateFusionNet([nets[m] for m in modalities], combiner)
    state = {"settings": settings.to_dict(), "fusion": settings.fusion,
             "combiner": combiner.to_dict() if combiner is not None else None}
    return LoadedModel(nets=nets, modalities=modalities, marker=config.marker, settings=preprocess, cutoff=0.5,
                       device=device, method=METHOD, state=state)


def saved_nets(model: LoadedModel) -> dict[str, nn.Module]:
    """The nets a transfer model file holds: each modality's and the channel-fusion net (not a late fusion, whose
    combiner is in ``method_state``, nor a single-modality model's copy)."""
    keep = {m: model.nets[m] for m in model.modalities}
    if model.state["fusion"] == "channels" and len(model.modalities) > 1:
        keep[FUSED] = model.nets[FUSED]
    return keep


def train_transfer(cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
                   device: str = "auto", resume: bool = False, progress: Callable[[dict], None] | None = None,
                   cancel: threading.Event | None = None, overrides: dict[str, Any] | None = None, *,
                   test_ids: Collection[str] | None = None, slice_cache: str | os.PathLike | None = None
                   ) -> TrainResult:
    """Fine-tune the transfer-learning CNNs on a labelled cohort and evaluate them on held-out test patients.

    Same arguments (``test_ids``, ``slice_cache`` too), run folder and errors as
    :func:`DMIFLib.training.algorithm.train_cohort`; ``overrides`` takes
    :class:`TransferSettings` keys beside the ``TrainConfig`` ones. ``progress`` gets ``stage`` (e.g.
    ``"transfer/t1c"``), ``epoch``/``epochs``, ``batch``/``batches``, ``loss``, and ``fraction`` (0..1 of the run).
    """
    from DMIFLib.preprocessing.cohort_settings import cohort_settings

    started = time.perf_counter()
    cohort_csv, out = Path(cohort_csv), Path(out_dir)
    try:
        torch_device = resolve_device(device)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    checkpoint = _prepare_out_dir(out, resume, METHOD)
    if checkpoint is not None:
        settings = TransferSettings.from_dict(checkpoint["transfer"])
        config = TrainConfig.from_dict(checkpoint["config"])
        user_overrides = checkpoint["overrides"]
    else:
        settings, rest = split_overrides(overrides)
        config = make_config(preset, rest)
        if "lr" not in rest:
            config.lr = {k: TRANSFER_LR for k in config.lr}
        user_overrides = dict(overrides or {})
    cohort_preprocessing = cohort_settings(read_cohort(cohort_csv, require_labels=True), cohort_csv)
    preprocess = training_settings(config, cohort_preprocessing, cohort_csv)
    cases = training_cases(config, cohort_csv)
    modalities = config.modalities
    cohort_sha = _sha256(cohort_csv)
    if checkpoint is not None and checkpoint["cohort_sha256"] != cohort_sha:
        raise TrainingError(f"{cohort_csv}: the cohort table changed since {out / CHECKPOINT_NAME} was written; "
                            "resume needs the same cohort")
    names = net_names(modalities, settings.fusion)
    side = settings.input_size or config.slice_size
    if side < MIN_INPUT[settings.arch]:
        raise TrainingError(f"{settings.arch} needs slices of at least {MIN_INPUT[settings.arch]} px, got {side}; "
                            "raise input_size (e.g. 224, ImageNet's) or slice_size")
    if settings.imagenet:  # a missing ImageNet file is reported before the slices are extracted
        try:
            find_imagenet_weights(settings.arch, settings.weights)
        except WeightsNotFoundError as error:
            raise TrainingError(str(error)) from None
    data = load_cohort_slices(cases, preprocess, progress, cancel, cache_dir=slice_cache or out / "slices",
                              modalities=modalities)
    by_id = {p.patient_id: p for p in data}
    labels = {p.patient_id: p.label for p in data}
    groups = {p.patient_id: p.subject or p.patient_id for p in data}
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
    atomic_write_text(out / SPLIT_NAME, _tsv(
        [{"patient_id": pid, "label": labels[pid], "split": sides[pid], "n_slices": by_id[pid].stack.n_slices}
         for pid in labels], ("patient_id", "label", "split", "n_slices")))
    train_set = _slice_set([by_id[i] for i in fit_ids], modalities, config.max_slices)
    val_set = _slice_set([by_id[i] for i in val_ids], modalities, config.max_slices) if val_ids else None
    augment = SliceAugmenter(AugmentConfig.from_dict(config.augment), config.seed) if config.augment else None

    done: dict[str, dict] = checkpoint["done"] if checkpoint else {}
    history: list[dict] = checkpoint["history"] if checkpoint else []
    timings: dict[str, float] = checkpoint["timings"] if checkpoint else {}

    def save(current: dict | None) -> None:
        save_checkpoint(out / CHECKPOINT_NAME, {
            "method": METHOD, "transfer": settings.to_dict(), "config": config.to_dict(), "overrides": user_overrides,
            "cohort_sha256": cohort_sha, "done": done, "history": history, "timings": timings, "current": current})
        atomic_write_text(out / HISTORY_NAME, _tsv(history + (current["fit"]["history"] if current else []),
                                                   HISTORY_COLUMNS))

    lr, epochs = config.lr["stage1"], config.epochs["stage1"]
    for step, name in enumerate(names, start=1):
        if name in done:
            continue
        net_started = time.perf_counter()
        net = new_net(name, modalities, settings, config.seed)
        if name == "transfer/fused":
            train, val = train_set, val_set
        else:
            channel = modalities.index(name.split("/")[1])
            train, val = _channel(train_set, channel), (_channel(val_set, channel) if val_set else None)
        current = checkpoint["current"] if checkpoint and checkpoint["current"] else None
        resume_state = current["fit"] if current and current["name"] == name else None

        def net_progress(event: dict, step: int = step) -> None:
            if progress is not None:
                done_epochs = event["epoch"] - 1 + event["batch"] / event["batches"] if "batch" in event \
                    else event["epoch"]
                fraction = (step - 1 + done_epochs / max(event["epochs"], 1)) / len(names)
                progress({**event, "step": step, "steps": len(names), "fraction": fraction})

        def save_epoch(fit_state: dict, name: str = name) -> None:
            save({"name": name, "fit": fit_state})

        result = fit(net, train, val, lr=lr, epochs=epochs, batch_size=config.batch_size, device=torch_device,
                     augment=augment, seed=config.seed, stage=name, patience=config.patience,
                     progress=net_progress, cancel=cancel, checkpoint=save_epoch, resume=resume_state)
        done[name] = {"spec": net.spec(), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
        history += result.history
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - net_started
        save(None)

    nets = {m: _rebuild(done[f"transfer/{m}"]) for m in modalities}
    if "transfer/fused" in done:
        nets[FUSED] = _rebuild(done["transfer/fused"])
    for net in nets.values():
        net.to(torch_device)
    combiner = _combiner(settings.fusion, nets, modalities, val_set, config, torch_device)
    model = _model(nets, modalities, combiner, settings, config, preprocess, torch_device)
    problem = content_problem(model_dict(saved_nets(model), modalities, config.marker, preprocess, 0.5))
    if problem:
        raise TrainingError(f"{out}: no model written: {problem}; lower the learning rate or check the inputs")
    if progress is not None:
        progress({"stage": "evaluate", "step": len(names), "steps": len(names), "fraction": 1.0})
    train_ids_all = fit_ids + val_ids
    train_preds = [predict_transfer_stack(model, by_id[i].stack, config.batch_size) for i in train_ids_all]
    test_preds = [predict_transfer_stack(model, by_id[i].stack, config.batch_size) for i in test_ids]
    rows, cutoffs = evaluation_rows(train_preds, test_preds, [labels[i] for i in train_ids_all],
                                    [labels[i] for i in test_ids], modalities)
    model.cutoff = cutoffs[f"patient/{FUSED}"]
    for pred in test_preds:
        pred.cutoff, pred.prediction = model.cutoff, int(pred.p_fused >= model.cutoff)
    test_auc = {f"{r['level']}/{r['model']}": r["auc"] for r in rows}
    model.info = {"method": METHOD, "preset": config.preset, "seed": config.seed, "cohort_sha256": cohort_sha,
                  "transfer": settings.to_dict(), "cutoffs": cutoffs, "test_auc": test_auc,
                  "config": config.to_dict(), "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    saved = LoadedModel(nets=saved_nets(model), modalities=modalities, marker=model.marker, settings=preprocess,
                        cutoff=model.cutoff, device=torch_device, info=model.info, method=METHOD, state=model.state)
    model_path = save_model(out / MODEL_NAME, saved)
    atomic_write_text(out / METRICS_NAME, _tsv(rows, METRIC_COLUMNS))
    patient_text, slice_text = prediction_tables(test_preds, modalities)
    atomic_write_text(out / "slice_predictions.tsv", slice_text)
    atomic_write_text(out / "predictions.tsv", patient_text)
    atomic_write_text(out / HISTORY_NAME, _tsv(history, HISTORY_COLUMNS))
    seconds = time.perf_counter() - started
    run_info = {
        "method": METHOD, "cohort": str(cohort_csv.resolve()), "cohort_sha256": cohort_sha, "preset": config.preset,
        "overrides": user_overrides, "transfer": settings.to_dict(), "config": config.to_dict(), "seed": config.seed,
        "device": str(torch_device), "modalities": list(modalities),
        "patients": {"train": len(fit_ids), "val": len(val_ids), "test": len(test_ids)},
        "slices": {"train": len(train_set), "val": len(val_set) if val_set else 0},
        "combiner": model.state["combiner"], "versions": _versions(), "net_seconds": timings,
        "resumed": checkpoint is not None, "last_session_seconds": seconds, "cutoffs": cutoffs, "test_auc": test_auc,
    }
    atomic_write_text(out / RUN_NAME, json.dumps(run_info, indent=2, default=float) + "\n")
    (out / CHECKPOINT_NAME).unlink(missing_ok=True)
    return TrainResult(out_dir=out, model_path=model_path, history_path=out / HISTORY_NAME,
                       metrics_path=out / METRICS_NAME, predictions_path=out / "predictions.tsv",
                       split_path=out / SPLIT_NAME, run_path=out / RUN_NAME, metrics=rows, seconds=seconds)
