"""`dmif compare`: the paper's ablations and reference CNNs trained and tested on ONE patient-level split.

Models (paper Tables 2–3), all on the same train / validation / test patients:

- ablations on the first modality (T1C): DF-Net without SPP (global average pooling), MI-Net J=2 and J=2+3;
- per modality: DF-Net and MI-Net J=2+3+4 (Algorithm 1 stage 1), then DMIF-Net from those two (stage 2);
- DMIF-Net (multimodal) from the per-modality DMIF-Nets (stage 3) — the reference of every DeLong test;
- reference CNNs (ResNet34, DenseNet121 from MONAI, a VGG-style net) on the modalities stacked as channels,
  trained like stage 1;
- with ``with_radiomics`` (``dmif compare --radiomics``): seed 001's radiomics-only baseline (logistic
  regression on MI-selected radiomics features) and DMIF-Net + radiomics (method "radiomics"'s fused head on the
  multimodal DMIF-Net above), in Table 2 beside the reference CNNs; patient-level models, so their slice rows
  repeat the patient's probability (:mod:`DMIFLib.evaluation.radiomics_baseline`).
- with ``with_transfer`` (``dmif compare --transfer``): the transfer-learning CNNs of seed 002, single-modality,
  late-fused and channel-fused (:mod:`DMIFLib.evaluation.transfer_rows`), in Table 2.

Each model's cut-off is Youden's on its own training-patient predictions (patient level: mean slice probability
per patient; slice level: every slice) and is then applied unchanged to the test patients. Outputs in ``out``:
``table2_reference_cnns.tsv`` and ``table3_ablations.tsv`` (Table 2 columns plus the patient-level DeLong p
against DMIF-Net, Bonferroni-corrected within each table), ``delong_tests.tsv``, ``metrics_ci.tsv``,
``separability.tsv`` (eq. 9–11 on test-slice features), ``tsne.tsv``, ``scores_patient.tsv``,
``scores_slice.tsv``, ``history.tsv``, ``radiomics_baseline.tsv`` (selected features, MI, coefficients) and
``run.json``.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from DMIFLib.atomic import atomic_write_text
from DMIFLib.evaluation.tables import (
    CI_COLUMNS,
    DELONG_COLUMNS,
    TABLE2_COLUMNS,
    delong_rows,
    metric_rows,
    write_tsv,
)
from DMIFLib.evaluation.tsne import tsne_embedding
from DMIFLib.nets import DFNet, DFNetConfig, DMIFNet, MINet, MINetConfig, MultimodalDMIF, build_net, preset_spec
from DMIFLib.scattering.cache import CoefficientAugment, ScatteringCache
from DMIFLib.stats import youden_cutoff
from DMIFLib.stats.separability import class_distances
from DMIFLib.training.augment import AugmentConfig, SliceAugmenter
from DMIFLib.training.device import resolve_device
from DMIFLib.training.presets import TrainConfig
from DMIFLib.training.split import patient_split, validation_split
from DMIFLib.training.stage import SliceSet, epoch_seed, fit, predict_proba

REFERENCE = "DMIF-Net (multimodal)"
MI_ABLATION_SCALES = ((2,), (2, 3), (2, 3, 4))
REFERENCE_CNNS = (("resnet34", "ResNet34"), ("densenet121", "DenseNet121"), ("vgg", "VGG"))
TABLE_EXTRA = ("delong_p", "delong_p_bonferroni")
HISTORY_COLUMNS = ("stage", "epoch", "epochs", "lr", "loss", "val_loss", "val_auc", "seconds")
TSNE_MAX_POINTS = 600


@dataclass
class SliceData:
    """Slices of a set of patients: ``images[modality]`` (N, 1, S, S) float32, ``y`` (N,), ``groups`` (N,)."""

    images: dict[str, torch.Tensor]
    y: torch.Tensor
    groups: np.ndarray

    def stacked(self, modalities: Sequence[str]) -> torch.Tensor:
        """(N, M, S, S) with the modalities in the given order."""
        return torch.cat([self.images[m] for m in modalities], dim=1)


@dataclass
class ModelOutcome:
    """One trained model's test and training-slice probabilities and test-slice features."""

    name: str
    table: str
    p_test: np.ndarray
    p_train: np.ndarray
    features: np.ndarray
    seconds: float
    history: list[dict] = field(default_factory=list)
    net: nn.Module | None = field(default=None, repr=False)  # kept for the multimodal DMIF-Net (fusion row)


def _evenly(n: int, k: int | None) -> np.ndarray:
    if k is None or n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def slice_data(stacks: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, int], ids: Sequence[str],
               modalities: Sequence[str], max_slices: int | None = None) -> SliceData:
    """Gather the slices of patients ``ids`` (``stacks[pid][modality]`` (n, S, S)); at most ``max_slices`` each,
    evenly spaced through the stack."""
    images: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    y, groups = [], []
    for pid in ids:
        n = stacks[pid][modalities[0]].shape[0]
        keep = _evenly(n, max_slices)
        for m in modalities:
            images[m].append(np.asarray(stacks[pid][m], dtype=np.float32)[keep])
        y += [labels[pid]] * len(keep)
        groups += [pid] * len(keep)
    return SliceData({m: torch.from_numpy(np.concatenate(v))[:, None] for m, v in images.items()},
                     torch.tensor(y, dtype=torch.float32), np.asarray(groups))


@torch.no_grad()
def _features(fn: Callable[[object], torch.Tensor], x, n: int, batch_size: int, device: torch.device) -> np.ndarray:
    out = []
    for start in range(0, n, batch_size):
        part = tuple(t[start:start + batch_size].to(device) for t in x) if isinstance(x, tuple) else \
            x[start:start + batch_size].to(device)
        out.append(fn(part).float().cpu().numpy())
    return np.concatenate(out)


class _CachedSliceSet(SliceSet):
    """Training slices served from a scattering cache, augmented in the coefficient domain per batch."""

    def __init__(self, cache: ScatteringCache, y: torch.Tensor, augment: CoefficientAugment | None, seed: int):
        super().__init__(tuple(cache.coeffs), y)
        self.cache, self.augment = cache, augment
        self.generator = torch.Generator().manual_seed(seed)

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.cache.batch(index, self.augment, self.generator))


class _Trainer:
    """Trains every model of the comparison on one split and collects its outcome."""

    def __init__(self, config: TrainConfig, train: SliceData, val: SliceData, test: SliceData,
                 modalities: Sequence[str], device: torch.device, progress, cancel) -> None:
        self.config, self.train, self.val, self.test = config, train, val, test
        self.modalities = tuple(modalities)
        self.device = device
        self.progress, self.cancel = progress, cancel
        self.size = int(train.images[modalities[0]].shape[-1])
        self.outcomes: list[ModelOutcome] = []
        self.augment = (SliceAugmenter(AugmentConfig.from_dict(config.augment), seed=config.seed)
                        if config.augment is not None else None)

    def _fit(self, name: str, net: nn.Module, stage: str, train: SliceSet, x_val, forward=None) -> list[dict]:
        c = self.config
        val = SliceSet(x_val, self.val.y) if len(self.val.y) else None
        result = fit(net, train, val, lr=c.lr[stage], epochs=c.epochs[stage],
                     batch_size=c.batch_size, device=self.device, augment=self.augment, seed=c.seed, stage=name,
                     patience=c.patience, forward=forward, progress=self.progress, cancel=self.cancel)
        return result.history

    def run(self, name: str, table: str, net: nn.Module, stage: str, inputs: Callable[[SliceData], object],
            forward=None, features=None, train_set: SliceSet | None = None) -> nn.Module:
        """Train ``net`` on ``inputs(train)`` (or ``train_set``) and record its test/train probabilities and test
        features."""
        if self.progress is not None:
            self.progress({"stage": "compare", "model": name, "index": len(self.outcomes) + 1})
        started = time.perf_counter()
        x_train, x_val, x_test = inputs(self.train), inputs(self.val), inputs(self.test)
        history = self._fit(name, net, stage, train_set or SliceSet(x_train, self.train.y), x_val, forward)
        bs = self.config.batch_size
        p_test = predict_proba(net, SliceSet(x_test, self.test.y), bs, self.device, forward)
        p_train = predict_proba(net, SliceSet(x_train, self.train.y), bs, self.device, forward)
        feats = _features(features or net.features, x_test, len(self.test.y), bs, self.device)
        self.outcomes.append(ModelOutcome(name, table, p_test, p_train, feats, time.perf_counter() - started,
                                          history))
        return net

    def seed(self, name: str) -> None:
        """Seed the weight initialisation of model ``name`` (independent of the order models are trained in)."""
        torch.manual_seed(epoch_seed(self.config.seed, f"init/{name}", 0))

    def minet(self, name: str, table: str, modality: str, scales: tuple[int, ...]) -> MINet:
        self.seed(name)
        cfg = preset_spec("minet", self.config.net_width)["config"]
        net = MINet(MINetConfig.from_dict({**cfg, "scales": list(scales), "input_shape": [self.size, self.size]}))
        augment = None
        if self.config.augment is not None:
            try:
                augment = CoefficientAugment.from_config(AugmentConfig.from_dict(self.config.augment))
            except ValueError:  # augmentations the cache cannot reproduce: scatter on the fly, like `dmif train`
                return self.run(name, table, net, "stage1", lambda d: d.images[modality])
        if not self.config.scattering_cache:
            return self.run(name, table, net, "stage1", lambda d: d.images[modality])
        net.to(self.device)
        flips = augment is not None and augment.flip_prob > 0
        caches = {id(d): ScatteringCache.build(net.scattering, d.images[modality], self.config.batch_size,
                                               flips=flips and d is self.train, cancel=self.cancel)
                  for d in (self.train, self.val, self.test) if len(d.y)}
        train_set = _CachedSliceSet(caches[id(self.train)], self.train.y, augment, self.config.seed)
        return self.run(name, table, net, "stage1", lambda d: tuple(caches[id(d)].coeffs) if id(d) in caches else (),
                        forward=net.forward_from_scattering, features=net.features_from_scattering,
                        train_set=train_set)

    def dfnet(self, name: str, table: str, modality: str, pooling: str) -> DFNet:
        self.seed(name)
        cfg = preset_spec("dfnet", self.config.net_width)["config"]
        net = DFNet(DFNetConfig.from_dict({**cfg, "pooling": pooling}))
        return self.run(name, table, net, "stage1", lambda d: d.images[modality])


def train_models(config: TrainConfig, train: SliceData, val: SliceData, test: SliceData, modalities: Sequence[str],
                 device: str | torch.device = "auto", progress=None, cancel=None) -> list[ModelOutcome]:
    """Train the ablations, DMIF-Nets and reference CNNs (see the module docstring); outcomes in table order."""
    t = _Trainer(config, train, val, test, modalities, resolve_device(device), progress, cancel)
    first = modalities[0]
    label = {m: m.upper() for m in modalities}
    dmif = {}
    dmif_dropout = preset_spec("dmifnet", config.net_width)["config"].get("dropout", 0.0)
    for m in modalities:
        if m == first:
            t.dfnet(f"{label[m]} DF-Net without SPP", "ablation", m, "gap")
        df = t.dfnet(f"{label[m]} DF-Net", "ablation", m, "spp")
        mi = None
        for scales in MI_ABLATION_SCALES if m == first else (tuple(config.mi_scales),):
            net = t.minet(f"{label[m]} MI-Net J={'+'.join(map(str, scales))}", "ablation", m, scales)
            if tuple(scales) == tuple(config.mi_scales):
                mi = net
        if mi is None:  # config.mi_scales is not one of the ablation's scale sets: train it as well
            mi = t.minet(f"{label[m]} MI-Net J={'+'.join(map(str, config.mi_scales))}", "ablation", m,
                         tuple(config.mi_scales))
        t.seed(f"{label[m]} DMIF-Net")
        dmif[m] = t.run(f"{label[m]} DMIF-Net", "ablation", DMIFNet(df, mi, dmif_dropout), "stage2",
                        lambda d, m=m: d.images[m])
    if len(modalities) > 1:
        t.seed(REFERENCE)
        fused = t.run(REFERENCE, "both", MultimodalDMIF(dmif, dmif_dropout), "stage3", lambda d: d.stacked(modalities))
        t.outcomes[-1].net = fused
    for kind, name in REFERENCE_CNNS:
        spec = preset_spec(kind, config.net_width)
        spec["config"] = {**spec["config"], "in_channels": len(modalities)}
        t.seed(name)
        t.run(name, "reference", build_net(spec), "stage1", lambda d: d.stacked(modalities))
    return t.outcomes


def _patient_mean(p: np.ndarray, groups: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    return np.array([p[groups == pid].mean() for pid in ids])


def write_comparison(outcomes: Sequence[ModelOutcome], train: SliceData, test: SliceData, labels: Mapping[str, int],
                     out_dir: str | os.PathLike, n_boot: int = 1000, separability_n: int = 100,
                     separability_m: int = 100, seed: int = 0) -> dict[str, Path]:
    """Compute every table from the trained models' outcomes and write them to ``out_dir``."""
    out_dir = Path(out_dir)
    test_ids = list(dict.fromkeys(test.groups.tolist()))
    train_ids = list(dict.fromkeys(train.groups.tolist()))
    y_test_pat = np.array([labels[p] for p in test_ids])
    y_train_pat = np.array([labels[p] for p in train_ids])
    y_test, y_train = test.y.numpy().astype(int), train.y.numpy().astype(int)
    rows: dict[str, list[dict]] = {"ablation": [], "reference": []}
    ci_rows: list[dict] = []
    scores_patient = {o.name: _patient_mean(o.p_test, test.groups, test_ids) for o in outcomes}
    for o in outcomes:
        cut_patient = youden_cutoff(y_train_pat, _patient_mean(o.p_train, train.groups, train_ids))
        cut_slice = youden_cutoff(y_train, o.p_train)
        r_pat, c_pat = metric_rows(o.name, "patient", y_test_pat, scores_patient[o.name], cut_patient,
                                   n_boot=n_boot, seed=seed)
        r_sl, c_sl = metric_rows(o.name, "slice", y_test, o.p_test, cut_slice, groups=test.groups, n_boot=n_boot,
                                 seed=seed)
        for table in ("ablation", "reference") if o.table == "both" else (o.table,):
            rows[table] += [r_pat, r_sl]
        ci_rows += c_pat + c_sl
    rows["reference"].sort(key=lambda r: r["model"] == REFERENCE)   # paper Table 2: reference CNNs, then DMIF-Net
    delong = []
    for table in ("reference", "ablation"):
        names = [r["model"] for r in rows[table] if r["level"] == "patient"]
        enough = min(y_test_pat.sum(), len(y_test_pat) - y_test_pat.sum()) >= 2   # DeLong needs 2 per class
        if REFERENCE in scores_patient and len(names) > 1 and enough:
            tests = delong_rows(y_test_pat, {n: scores_patient[n] for n in names}, REFERENCE)
            for d in tests:
                d["table"] = table
            delong += tests
            by_model = {d["model"]: d for d in tests}
            for r in rows[table]:
                if r["level"] == "patient" and r["model"] in by_model:
                    test_row = by_model[r["model"]]
                    r.update(delong_p=test_row["p"], delong_p_bonferroni=test_row["p_bonferroni"])
    sep_rows, tsne_rows = [], []
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(y_test), size=min(len(y_test), TSNE_MAX_POINTS), replace=False))
    for o in outcomes:
        d = class_distances(o.features, y_test, n=separability_n, m=separability_m, seed=seed)
        sep_rows.append({"model": o.name, "level": "slice", "n_features": o.features.shape[1],
                         **{f"{f}_{k}": d[f][k] for f in ("mmd", "cosine") for k in ("aa", "bb", "ab", "dist")},
                         "n": d["mmd"]["n"], "m": d["mmd"]["m"]})
        xy = tsne_embedding(o.features[keep], seed=seed)
        tsne_rows += [{"model": o.name, "patient_id": test.groups[i], "label": y_test[i], "x": a, "y": b}
                      for i, (a, b) in zip(keep, xy, strict=True)]
    table_columns = (*TABLE2_COLUMNS, *TABLE_EXTRA)
    sep_columns = ("model", "level", "n_features", *(f"{f}_{k}" for f in ("mmd", "cosine")
                                                     for k in ("aa", "bb", "ab", "dist")), "n", "m")
    names = [o.name for o in outcomes]
    paths = {
        "table2": write_tsv(out_dir / "table2_reference_cnns.tsv", rows["reference"], table_columns),
        "table3": write_tsv(out_dir / "table3_ablations.tsv", rows["ablation"], table_columns),
        "delong": write_tsv(out_dir / "delong_tests.tsv", delong, ("table", *DELONG_COLUMNS)),
        "ci": write_tsv(out_dir / "metrics_ci.tsv", ci_rows, CI_COLUMNS),
        "separability": write_tsv(out_dir / "separability.tsv", sep_rows, sep_columns),
        "tsne": write_tsv(out_dir / "tsne.tsv", tsne_rows, ("model", "patient_id", "label", "x", "y")),
        "scores_patient": write_tsv(out_dir / "scores_patient.tsv",
                                    [{"patient_id": pid, "label": labels[pid],
                                      **{n: scores_patient[n][i] for n in names}} for i, pid in enumerate(test_ids)],
                                    ("patient_id", "label", *names)),
        "scores_slice": write_tsv(out_dir / "scores_slice.tsv",
                                  [{"patient_id": test.groups[i], "label": y_test[i],
                                    **{o.name: o.p_test[i] for o in outcomes}} for i in range(len(y_test))],
                                  ("patient_id", "label", *names)),
        "history": write_tsv(out_dir / "history.tsv", [h for o in outcomes for h in o.history], HISTORY_COLUMNS),
    }
    return paths


def compare_models(cohort_csv: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "quick",
                   device: str = "auto", overrides: dict | None = None, n_boot: int | None = None,
                   progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                   overwrite: bool = False, with_radiomics: bool = False,
                   with_transfer: bool = False) -> dict[str, Path]:
    """Load the cohort's slices, split by patient, train every model and write the tables (module docstring).

    ``with_radiomics`` adds the radiomics-only baseline and DMIF-Net + radiomics
    (:mod:`DMIFLib.evaluation.radiomics_baseline`; settings from ``overrides["radiomics"]``, as for ``dmif train
    --method radiomics``); when they cannot be computed (e.g. the radiomics extra is not installed) the rows are
    left out and ``run.json`` says why.

    ``preset``: "quick" or "paper" (training presets of :mod:`DMIFLib.training.presets`); ``overrides``: their
    field overrides. Needs labels for every patient; T1C and T2W when both are present for all patients.
    An ``out_dir`` that already holds a comparison (``run.json``) is refused unless ``overwrite``.
    """
    from DMIFLib.cohort import MODALITIES, read_cohort
    from DMIFLib.methods.radiomics_features import RadiomicsSettings
    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.training.data import load_cohort_slices
    from DMIFLib.training.presets import make_config

    overrides = dict(overrides or {})
    radiomics_overrides = overrides.pop("radiomics", None)
    if radiomics_overrides is not None and not with_radiomics:
        raise ValueError("radiomics settings were given but the radiomics baseline is off (dmif compare --radiomics)")
    radiomics = RadiomicsSettings.from_dict(radiomics_overrides) if with_radiomics else None
    transfer_overrides = overrides.pop("transfer", None)
    if transfer_overrides is not None and not with_transfer:
        raise ValueError("transfer settings were given but the transfer CNN rows are off (dmif compare --transfer)")
    config = make_config(preset, overrides)
    transfer = None
    if with_transfer:
        from DMIFLib.evaluation.transfer_rows import CompareTransferSettings

        transfer = CompareTransferSettings.from_dict(transfer_overrides, config.slice_size)
    resolve_device(device)  # an unusable --device fails before the slices are loaded
    out_dir = Path(out_dir)
    if (out_dir / "run.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already holds a run (run.json); choose another --out or pass --overwrite")
    cases = read_cohort(cohort_csv, require_labels=True)
    modalities = config.modalities or tuple(m for m in MODALITIES if all(m in c.images for c in cases))
    settings = PreprocessSettings.from_dict({**config.preprocessing, "slice_size": config.slice_size})
    patients = load_cohort_slices(cases, settings, progress=progress, cancel=cancel,
                                  cache_dir=out_dir / "slice_cache", modalities=modalities)
    stacks = {p.patient_id: p.stack.images for p in patients}
    labels = {p.patient_id: p.label for p in patients}
    train_ids, test_ids = patient_split(labels, config.test_fraction, config.seed,
                                        fixed={p.patient_id: p.split for p in patients})
    fit_ids, val_ids = validation_split({p: labels[p] for p in train_ids}, config.val_fraction, config.seed)
    train = slice_data(stacks, labels, fit_ids, modalities, config.max_slices)
    val = slice_data(stacks, labels, val_ids, modalities, config.max_slices) if val_ids else \
        SliceData({m: train.images[m][:0] for m in modalities}, train.y[:0], train.groups[:0])
    test = slice_data(stacks, labels, test_ids, modalities)
    started = time.perf_counter()
    outcomes = train_models(config, train, val, test, modalities, device, progress, cancel)
    baseline: dict = {"skipped": "not asked for (dmif compare --radiomics)"}
    if radiomics is not None:
        from DMIFLib.evaluation.radiomics_baseline import radiomics_outcome

        outcome, baseline = radiomics_outcome(cases, settings, modalities, labels, train.groups, test.groups,
                                              radiomics, config.seed, out_dir / "radiomics_cache", progress, cancel,
                                              also=val_ids)
        if outcome is not None:
            from DMIFLib.evaluation.radiomics_baseline import fusion_outcome

            first = next(i for i, o in enumerate(outcomes) if o.table == "reference")
            deep = next((o.net for o in outcomes if o.name == REFERENCE and o.net is not None), None)
            if deep is None:
                baseline["fusion_skipped"] = "one modality: no multimodal DMIF-Net to take deep features from"
            else:
                try:
                    outcomes.insert(first, fusion_outcome(deep, train, val, test, modalities, labels,
                                                          baseline["features"], baseline["model"], radiomics,
                                                          config.seed, resolve_device(device), cancel))
                except ValueError as error:  # e.g. a validation patient without radiomics features
                    baseline["fusion_skipped"] = str(error)
            outcomes.insert(first, outcome)
            baseline.pop("features")
            baseline_path = write_tsv(out_dir / "radiomics_baseline.tsv", baseline.pop("model").rows(),
                                      ("rank", "feature", "mi", "coefficient", "train_mean", "train_std"))
    transfer_info: dict = {"skipped": "not asked for (dmif compare --transfer)"}
    if transfer is not None:
        from DMIFLib.evaluation.transfer_rows import transfer_outcomes

        rows, transfer_info = transfer_outcomes(transfer, config, train, val, test, modalities,
                                                resolve_device(device), progress, cancel, len(outcomes) + 1)
        outcomes += rows
    paths = write_comparison(outcomes, train, test, labels, out_dir,
                             n_boot=n_boot if n_boot is not None else (1000 if preset == "paper" else 200),
                             seed=config.seed)
    if "skipped" not in baseline:
        paths["radiomics_baseline"] = baseline_path
    run = {"command": "dmif compare", "cohort": str(Path(cohort_csv).resolve()), "preset": preset,
           "config": config.to_dict(), "modalities": list(modalities), "device": str(resolve_device(device)),
           "split": {"train": fit_ids, "validation": val_ids, "test": test_ids},
           "slices": {"train": len(train.y), "validation": len(val.y), "test": len(test.y)},
           "seconds_per_model": {o.name: round(o.seconds, 2) for o in outcomes}, "radiomics_baseline": baseline,
           "transfer": transfer_info,
           "seconds_total": round(time.perf_counter() - started, 2),
           "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(out_dir / "run.json", json.dumps(run, indent=1, default=str))
    paths["run"] = out_dir / "run.json"
    return paths
