"""Which epoch should a stage-1 MI-Net keep? Per cross-validation fold and modality, one quick-preset MI-Net is
trained on the fold's training patients (scattering cache, as `dmif train`); after every epoch its held-out
patient-level AUC is recorded, and the script prints the AUC at the epoch each rule picks: the lowest
validation loss (Algorithm 1), the highest validation AUC (slice level), the last epoch; and the pooled
out-of-fold patient AUC of the last epoch's nets (``--overrides`` changes the preset, e.g. the LR schedule).

    python bench/bench_epoch_choice.py --cohort bench-output/training/synth-60/cohort.csv --modalities t2w

The folds are those of ``dmif train --cv 5`` with training seed ``--seed`` (``cv_folds``), the split into
training and validation patients that of its fold runs. ``--preprocessing minimal`` as bench_training.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np

MINIMAL = {"register": False, "n4": False, "skull_strip": "none"}


def _fold_curves(by_id: dict, labels: dict, test: list[str], modality: str, modalities: tuple[str, ...],
                 config) -> dict:
    """Train one MI-Net on the fold; per-epoch validation loss/AUC and held-out patient-level AUC."""
    import torch
    from sklearn.metrics import roc_auc_score

    from DMIFLib.scattering import ScatteringCache
    from DMIFLib.training.algorithm import _channel, _slice_set, build_stage_net
    from DMIFLib.training.augment import AugmentConfig
    from DMIFLib.training.scattering_stage import cached_minet_data
    from DMIFLib.training.split import patient_split, validation_split
    from DMIFLib.training.stage import SliceSet, fit, predict_proba

    fixed = {pid: "test" if pid in test else "train" for pid in labels}
    train_ids, test_ids = patient_split(labels, config.test_fraction, config.seed, fixed, None)
    fit_ids, val_ids = validation_split({p: labels[p] for p in train_ids}, config.val_fraction, config.seed, None)
    channel = modalities.index(modality)
    train = _channel(_slice_set([by_id[i] for i in fit_ids], modalities, config.max_slices), channel)
    val = _channel(_slice_set([by_id[i] for i in val_ids], modalities, config.max_slices), channel)
    net = build_stage_net(f"stage1/{modality}/minet", {}, config, modalities)
    train, val, augment = cached_minet_data(net, train, val, AugmentConfig.from_dict(config.augment),
                                            torch.device("cpu"))
    stacks = [torch.from_numpy(by_id[i].stack.stacked((modality,)).astype(np.float32)) for i in test_ids]
    coeffs = ScatteringCache.build(net.scattering, torch.cat(stacks), flips=False).coeffs
    test_set = SliceSet(tuple(c.cpu() for c in coeffs), torch.zeros(sum(len(s) for s in stacks)))
    bounds = np.cumsum([0] + [len(s) for s in stacks])
    y_test = np.array([labels[i] for i in test_ids])
    test_auc = []

    def after_epoch(_state: dict) -> None:
        p = predict_proba(net, test_set, 256, "cpu", net.forward_from_scattering)
        test_auc.append(float(roc_auc_score(y_test, [p[a:b].mean() for a, b in pairwise(bounds)])))

    cosine = "stage1/minet" in config.cosine_lr or "stage1" in config.cosine_lr
    result = fit(net, train, val, lr=config.lr.get("stage1/minet", config.lr["stage1"]),
                 epochs=config.epochs.get("stage1/minet", config.epochs["stage1"]), batch_size=config.batch_size,
                 device="cpu", augment=augment, seed=config.seed, stage=f"stage1/{modality}/minet",
                 patience=config.patience, forward=net.forward_from_scattering, checkpoint=after_epoch,
                 keep_last=True, schedule="cosine" if cosine else "plateau")
    p_last = predict_proba(net, test_set, 256, "cpu", net.forward_from_scattering)
    val_loss = [row["val_loss"] for row in result.history]
    val_auc = [row["val_auc"] for row in result.history]
    picks = {"val_loss": int(np.argmin(val_loss)), "val_auc": int(np.argmax(val_auc)), "last": len(test_auc) - 1}
    return {"picks": {k: {"epoch": e + 1, "test_auc": test_auc[e]} for k, e in picks.items()},
            "test_auc": test_auc, "val_loss": val_loss, "val_auc": val_auc,
            "last_p": {pid: float(p_last[a:b].mean()) for pid, (a, b) in zip(test_ids, pairwise(bounds), strict=True)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True, help="labelled cohort.csv (e.g. dmif synth --patients 60)")
    parser.add_argument("--slice-cache", default=None, help="folder of cached slice stacks (default: next to --out)")
    parser.add_argument("--preprocessing", choices=("full", "minimal"), default="minimal")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="1-based folds to run (default all)")
    parser.add_argument("--modalities", nargs="+", default=None, help="default: every modality of the cohort")
    parser.add_argument("--seed", type=int, default=0, help="training seed (folds, split, initialisation)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overrides", default="{}", help="JSON TrainConfig overrides on the quick preset")
    parser.add_argument("--out", default="bench-output/epoch_choice.json")
    args = parser.parse_args(argv)

    import torch
    from sklearn.metrics import roc_auc_score

    from DMIFLib.cohort import MODALITIES, read_cohort
    from DMIFLib.training.algorithm import training_settings
    from DMIFLib.training.cross_validation import cv_folds
    from DMIFLib.training.data import load_cohort_slices
    from DMIFLib.training.presets import make_config

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = {"seed": args.seed, **({"preprocessing": MINIMAL} if args.preprocessing == "minimal" else {}),
                 **json.loads(args.overrides)}
    config = make_config("quick", overrides)
    cases = read_cohort(args.cohort, require_labels=True)
    modalities = tuple(m for m in MODALITIES if all(m in c.images for c in cases))
    data = load_cohort_slices(cases, training_settings(config, None, Path(args.cohort)),
                              cache_dir=args.slice_cache or out.parent / "slices", modalities=modalities)
    by_id = {p.patient_id: p for p in data}
    labels = {p.patient_id: p.label for p in data}
    folds = cv_folds(labels, args.k, config.seed)
    rows = []
    for f in args.folds or range(1, args.k + 1):
        for modality in args.modalities or modalities:
            curves = _fold_curves(by_id, labels, folds[f - 1], modality, modalities, config)
            rows.append({"fold": f, "modality": modality, **curves})
            picks = ", ".join(f"{k} (epoch {v['epoch']}) {v['test_auc']:.3f}" for k, v in curves["picks"].items())
            print(f"fold {f} {modality}: held-out patient AUC at the epoch picked by {picks}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows) + "\n", encoding="utf-8")
    for rule in ("val_loss", "val_auc", "last"):
        for modality in sorted({r["modality"] for r in rows}):
            aucs = [r["picks"][rule]["test_auc"] for r in rows if r["modality"] == modality]
            print(f"RESULT {rule:<8} {modality}: mean held-out AUC over {len(aucs)} fold(s) {np.mean(aucs):.3f}")
    for modality in sorted({r["modality"] for r in rows}):
        pooled = {pid: p for r in rows if r["modality"] == modality for pid, p in r["last_p"].items()}
        ids = sorted(pooled)
        auc = roc_auc_score([labels[i] for i in ids], [pooled[i] for i in ids])
        print(f"RESULT pooled out-of-fold patient AUC, last epoch, {modality}: {auc:.3f} ({len(ids)} patients)")
    print(f"curves: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
