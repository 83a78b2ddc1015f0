"""One synthetic patient: phantom + texture + its acquisitions (T1C and T2W by default; FLAIR and native T1 on
request), tumour label, brain mask, truth."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.atomic import atomic_path, atomic_write_text
from DMIFLib.synth.acquisition import Acquisition, Grid, acquire, draw_bias
from DMIFLib.synth.anatomy import Phantom, Tissue
from DMIFLib.synth.texture import draw_texture

FILES = {"t1c": "t1c.nii.gz", "t2w": "t2w.nii.gz", "flair": "flair.nii.gz", "t1": "t1.nii.gz",
         "roi": "tumour_label.nii.gz", "brain_mask": "brain_mask.nii.gz", "truth": "truth.json"}
"""File names inside each patient's folder (a modality's file only when it is simulated)."""

SYNTH_MODALITIES = ("t1c", "t2w", "flair", "t1")
"""Modalities the simulator can acquire."""
DEFAULT_MODALITIES = ("t1c", "t2w")


def _oblique(rng: np.random.Generator) -> np.ndarray:
    """An oblique-axial direction: tilted about L (±15°) and about S (±5°); columns = i, j, k axes in LPS."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xz", [rng.uniform(-15, 15), rng.uniform(-5, 5)], degrees=True).as_matrix()


def _registration_truth(rng: np.random.Generator, center: np.ndarray) -> sitk.Euler3DTransform:
    """The true T1C → T2W rigid transform (fixed → moving points, as SimpleITK registration returns it)."""
    angles = np.deg2rad(rng.uniform(1.5, 4.0, 3) * rng.choice([-1.0, 1.0], 3))
    translation = rng.uniform(1.5, 4.0, 3) * rng.choice([-1.0, 1.0], 3)
    return sitk.Euler3DTransform([float(c) for c in center], *map(float, angles), [float(t) for t in translation])


def check_modalities(modalities: tuple[str, ...]) -> tuple[str, ...]:
    """``modalities`` if they are distinct and known to the simulator; else ``ValueError``."""
    unknown = [m for m in modalities if m not in SYNTH_MODALITIES]
    if not modalities or unknown or len(set(modalities)) != len(modalities):
        raise ValueError(f"synthetic modalities {','.join(modalities) or '(none)'}: give distinct ones of "
                         f"{', '.join(SYNTH_MODALITIES)}")
    return modalities


def make_patient(folder: Path, patient_id: str, label: int, seed_sequence: np.random.SeedSequence,
                 scale: float = 1.0, rim: bool | None = None,
                 modalities: tuple[str, ...] = DEFAULT_MODALITIES) -> dict[str, Path]:
    """Simulate and write one patient into ``folder`` (atomic files); returns paths by key of :data:`FILES`
    (the ``modalities`` simulated, ``roi``, ``brain_mask``, ``truth``).

    ``scale`` shrinks the head, the tumour and the field of view (for tests); spacings and texture stay real.
    ``rim`` forces the T1C-enhancing tumour rim on or off (random when None). The tumour label and brain mask
    lie on the T1C acquisition's grid (the head frame), also when T1C is not simulated; every other modality is
    acquired on its own grid, displaced by a known rigid transform (``<modality>_registration`` in truth.json).
    The default modalities draw exactly the random numbers they always did (same files for the same seed).
    """
    modalities = check_modalities(tuple(modalities))
    rng = np.random.default_rng(seed_sequence)
    phantom = Phantom.random(rng, scale)
    if rim is not None:
        phantom.rim = bool(rim)
    texture, texture_params = draw_texture(rng, label)
    texture_gain = rng.uniform(0.8, 1.25)
    truth_transform = _registration_truth(rng, phantom.center)
    matrix = np.array(truth_transform.GetMatrix()).reshape(3, 3)
    t_fm = np.array(truth_transform.GetTranslation())

    in_plane = rng.uniform(0.9, 1.0)
    slice_mm = rng.uniform(4.0, 6.0)
    n_xy = round(rng.uniform(160, 170) * scale / in_plane)
    n_z = round(150 * scale / slice_mm)
    t1c_grid = Grid.centred(phantom.center + rng.uniform(-3, 3, 3) * scale, (n_xy, n_xy, n_z),
                            np.array([in_plane, in_plane, slice_mm]), np.eye(3))
    in_plane2 = rng.uniform(0.85, 1.0)
    slice2 = rng.uniform(4.0, 6.0)
    n_xy2 = round(rng.uniform(165, 180) * scale / in_plane2)
    n_z2 = round(150 * scale / slice2)
    t2w_grid = Grid.centred(phantom.center + t_fm, (n_xy2, n_xy2, n_z2),
                            np.array([in_plane2, in_plane2, slice2]), _oblique(rng))
    zero = np.zeros(3)
    acquisitions = {
        "t1c": Acquisition("t1c", t1c_grid, np.eye(3), zero, phantom.center, draw_bias(rng, scale),
                           rng.uniform(0.1, 0.25), rng.uniform(0.02, 0.04), rng.uniform(600, 1000)),
        # Head frame = T1C frame, so a T2W scanner point q shows the anatomy at T_fm^-1(q) = M^T (q - c - t) + c.
        "t2w": Acquisition("t2w", t2w_grid, matrix.T, -matrix.T @ t_fm, phantom.center, draw_bias(rng, scale),
                           rng.uniform(0.1, 0.25), rng.uniform(0.02, 0.04), rng.uniform(400, 800)),
    }
    tumour_level = rng.uniform(0.85, 1.15)
    transforms = {"t2w": truth_transform}
    for modality in (m for m in SYNTH_MODALITIES if m in modalities and m not in acquisitions):
        transforms[modality] = _registration_truth(rng, phantom.center)
        acquisitions[modality] = _extra_acquisition(modality, transforms[modality], phantom.center, rng, scale)
    paths = {key: folder / name for key, name in FILES.items()
             if key not in SYNTH_MODALITIES or key in modalities}
    tissues = {}
    for modality, acq in acquisitions.items():
        if modality not in modalities:
            continue
        level = tumour_level * rng.uniform(0.95, 1.05)
        image, tissues[modality] = acquire(phantom, acq, texture, texture_gain, level, rng)
        with atomic_path(paths[modality]) as tmp:
            sitk.WriteImage(image, str(tmp), True)
    t1c_tissue = tissues["t1c"] if "t1c" in tissues else phantom.tissues(t1c_grid.points()).reshape(t1c_grid.size[::-1])
    label_array = np.isin(t1c_tissue, (Tissue.TUMOUR, Tissue.RIM)).astype(np.uint8)
    brain_array = (t1c_tissue >= Tissue.CSF).astype(np.uint8)
    for key, array in (("roi", label_array), ("brain_mask", brain_array)):
        with atomic_path(paths[key]) as tmp:
            sitk.WriteImage(t1c_grid.to_image(array), str(tmp), True)
    truth = {
        "patient_id": patient_id,
        "label": int(label),
        "texture": asdict(texture_params),
        "texture_gain": float(texture_gain),
        "tumour_level": float(tumour_level),
        "tumour_voxels": int(label_array.sum()),
        "tumour_slices": int(np.count_nonzero(label_array.any(axis=(1, 2)))),
        "tumour_center_lps": [float(v) for v in phantom.tumour_center],
        "enhancing_rim": phantom.rim,
        **{f"{m}_registration": _transform_truth(m, transform) for m, transform in transforms.items()
           if m in modalities},
    }
    atomic_write_text(paths["truth"], json.dumps(truth, indent=2) + "\n")
    return paths


def _transform_truth(modality: str, transform: sitk.Euler3DTransform) -> dict:
    """truth.json's record of the true T1C-frame → ``modality`` rigid transform."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    name = modality.upper()
    return {
        "description": f"true rigid transform mapping T1C (fixed) physical LPS points to {name} (moving) physical "
                       f"points; sitk.Resample({modality}, t1c, transform) aligns {name} with T1C",
        "transform": "Euler3DTransform",
        "center_lps": list(transform.GetCenter()),
        "angles_rad": [transform.GetAngleX(), transform.GetAngleY(), transform.GetAngleZ()],
        "translation_mm": list(transform.GetTranslation()),
        "matrix": matrix.tolist(),
        "rotation_deg": float(np.rad2deg(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1, 1)))),
        "translation_norm_mm": float(np.linalg.norm(transform.GetTranslation())),
    }


def _extra_acquisition(modality: str, transform: sitk.Euler3DTransform, center: np.ndarray,
                       rng: np.random.Generator, scale: float) -> Acquisition:
    """FLAIR (thick oblique-axial slices, like T2W) or native T1 (thinner axial slices), displaced by ``transform``."""
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    t_fm = np.array(transform.GetTranslation())
    in_plane = rng.uniform(0.85, 1.0)
    slice_mm = rng.uniform(4.0, 6.0) if modality == "flair" else rng.uniform(3.0, 4.0)
    n_xy = round(rng.uniform(165, 180) * scale / in_plane)
    direction = _oblique(rng) if modality == "flair" else np.eye(3)
    grid = Grid.centred(center + t_fm, (n_xy, n_xy, round(150 * scale / slice_mm)),
                        np.array([in_plane, in_plane, slice_mm]), direction)
    return Acquisition(modality, grid, matrix.T, -matrix.T @ t_fm, center, draw_bias(rng, scale),
                       rng.uniform(0.1, 0.25), rng.uniform(0.02, 0.04), rng.uniform(400, 900))


def read_truth_transform(truth_json: str | Path, modality: str = "t2w") -> sitk.Euler3DTransform:
    """The true T1C → ``modality`` transform recorded in a patient's ``truth.json``."""
    reg = json.loads(Path(truth_json).read_text(encoding="utf-8"))[f"{modality}_registration"]
    return sitk.Euler3DTransform(reg["center_lps"], *reg["angles_rad"], reg["translation_mm"])
