"""``synthesize_cohort``: many synthetic patients (optionally in a process pool) plus ``cohort.csv``."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from DMIFLib.cohort import CohortCase, write_cohort
from DMIFLib.synth.patient import DEFAULT_MODALITIES, FILES, check_modalities, make_patient

SCALE_RANGE = (0.05, 2.0)
"""Accepted ``scale`` values: below, the head is a few voxels; above, a patient needs gigabytes."""


class SynthCancelledError(RuntimeError):
    """The run was cancelled through its ``cancel`` event; files already written are complete."""


def balanced_labels(n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """``n_patients`` labels, half 1 and half 0 (the odd one random), in random order."""
    labels = np.array([i % 2 for i in range(n_patients)])
    if n_patients % 2:
        labels[-1] = rng.integers(0, 2)
    return rng.permutation(labels)


def balanced_within(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean nuisance flag that is on for half of each class, so that it cannot confound the label by chance."""
    flags = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        flags[members] = balanced_labels(len(members), rng).astype(bool)
    return flags


def _foreign(folder: Path) -> list[Path]:
    """What ``folder`` holds besides the files (and temporary files) that :func:`make_patient` writes."""
    if not folder.is_dir():
        return [folder]
    ours = set(FILES.values())
    return [p for p in folder.iterdir() if p.name not in ours and not (p.name.startswith(".") and ".tmp" in p.name)]


def synthesize_cohort(out_dir: str | os.PathLike, n_patients: int, seed: int, workers: int = 1,
                      progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                      scale: float = 1.0, overwrite: bool = False,
                      modalities: tuple[str, ...] = DEFAULT_MODALITIES) -> Path:
    """Write ``n_patients`` synthetic patients and ``out_dir/cohort.csv``; returns the CSV path.

    Each patient folder ``out_dir/SYNnnn/`` holds one int16 image per modality (``t1c.nii.gz``, ``t2w.nii.gz`` by
    default; ``flair.nii.gz``, ``t1.nii.gz`` when ``modalities`` asks), ``tumour_label.nii.gz`` (uint8 on the
    T1C grid), ``brain_mask.nii.gz`` and ``truth.json`` (texture draw, true offset of each non-T1C modality).
    Identical files for the same ``seed`` and ``scale``, whatever ``workers``. An existing ``cohort.csv``, or a
    patient folder holding other files, is only replaced with ``overwrite=True``; an interrupted run's folders
    are redone. ``scale`` must lie in :data:`SCALE_RANGE` (checked before anything is written). ``progress``
    receives ``{"stage": "synth", "done", "total", "patient_id"}`` after each patient; ``cancel``
    stops between patients (:class:`SynthCancelledError`).
    """
    if n_patients < 2:
        raise ValueError(f"synthetic cohort: need at least 2 patients, got {n_patients}")
    modalities = check_modalities(tuple(modalities))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:  # NaN fails too
        raise ValueError(f"synthetic cohort: scale {scale} is outside {SCALE_RANGE[0]}-{SCALE_RANGE[1]}")
    out_dir = Path(out_dir)
    csv_path = out_dir / "cohort.csv"
    width = max(3, len(str(n_patients)))
    ids = [f"SYN{i + 1:0{width}d}" for i in range(n_patients)]
    if not overwrite:
        # Folders left by an interrupted run (only this module's files) are redone; anything else is kept.
        existing = [csv_path] if csv_path.exists() else []
        existing += [p for pid in ids if (out_dir / pid).exists() for p in _foreign(out_dir / pid)]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists; choose another folder or pass overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    label_seed, *patient_seeds = root.spawn(n_patients + 1)
    label_rng = np.random.default_rng(label_seed)
    labels = balanced_labels(n_patients, label_rng)
    # The enhancing rim moves the tumour's mean and spread on T1C: balance it within each class.
    rims = balanced_within(labels, label_rng)
    jobs = [(out_dir / pid, pid, int(lab), ss, scale, bool(rim), modalities)
            for pid, lab, ss, rim in zip(ids, labels, patient_seeds, rims, strict=True)]
    results: dict[str, dict[str, Path]] = {}

    def report(pid: str) -> None:
        if progress is not None:
            progress({"stage": "synth", "done": len(results), "total": n_patients, "patient_id": pid})

    if workers <= 1:
        for job in jobs:
            if cancel is not None and cancel.is_set():
                raise SynthCancelledError(f"synthetic cohort in {out_dir}: cancelled after {len(results)} patients")
            results[job[1]] = make_patient(*job)
            report(job[1])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: dict[Future, str] = {pool.submit(make_patient, *job): job[1] for job in jobs}
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    pid = pending.pop(future)
                    results[pid] = future.result()
                    report(pid)
                if cancel is not None and cancel.is_set():
                    for future in pending:
                        future.cancel()
                    raise SynthCancelledError(f"synthetic cohort in {out_dir}: cancelled after {len(results)} patients")
    cases = [CohortCase(patient_id=pid, images={m: results[pid][m] for m in modalities},
                        roi=str(results[pid]["roi"]), label=int(lab)) for pid, lab in zip(ids, labels, strict=True)]
    return write_cohort(cases, csv_path)
