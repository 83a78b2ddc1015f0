"""A predicted case's images in a scene: its reference (T1C) volume, the tumour box as a Markups ROI and its saliency
volumes as the foreground, all under the patient in the subject hierarchy (the batch's and the demo's scenes)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import slicer

from DMIFLib.mrml import tables
from DMIFLib.mrml.roi import box_to_roi_node
from DMIFLib.mrml.saliency import load_saliency_files, show_as_foreground
from DMIFLib.mrml.scene import load_volume


def add_case_nodes(scene: slicer.vtkMRMLScene, case, saliency_paths: Mapping[str, str | os.PathLike], method: str,
                   margin_mm: float = 0.0) -> dict[str, slicer.vtkMRMLNode]:
    """Load ``case``'s (a CohortCase) reference volume, its box (``margin_mm`` grown, as the model's preprocessing
    does) and the saliency files (modality -> path, on the reference grid) under the patient; the first saliency
    volume is set as foreground over the reference in the scene's slice views. Returns name -> node
    ("reference", "box", "saliency <modality>")."""
    from DMIFLib.preprocessing.io import read_image
    from DMIFLib.preprocessing.roi import load_roi

    name = case.reference
    reference_image = read_image(case.images[name], what=f"{name} image", case=case.patient_id)
    reference = load_volume(scene, case.images[name], f"{case.patient_id} {name.upper()}")
    box = load_roi(case.roi, reference_image, margin_mm, case=case.patient_id, labels=case.roi_labels)
    roi = box_to_roi_node(box, scene, f"{case.patient_id} tumour box")
    tables.place_under(scene, tables.patient_item(scene, case.patient_id), [reference, roi])
    saliency = load_saliency_files(scene, saliency_paths, case.patient_id, method, reference_node=reference)
    if saliency:
        show_as_foreground(scene, next(iter(saliency.values())), reference)
    return {"reference": reference, "box": roi, **{f"saliency {m}": n for m, n in saliency.items()}}


def write_results_scene(mrml_path: str | os.PathLike, predictions_tsv: str | os.PathLike, model_path: str | os.PathLike,
                        cases: Mapping[str, object], saliency: Mapping[str, Mapping[str, str | os.PathLike]],
                        method: str, overwrite: bool = False):
    """A headless ``.mrml`` scene of a prediction run that a user opens in Slicer: the cohort and per-patient result
    tables (as the batch writes them) and, for each patient in ``saliency`` (patient_id -> modality -> file),
    :func:`add_case_nodes` from ``cases`` (patient_id -> CohortCase). Returns the scene's path."""
    from DMIFLib.model_file import load_model
    from DMIFLib.mrml.batch import predictions_to_scene
    from DMIFLib.mrml.predict import model_info
    from DMIFLib.mrml.scene import new_scene, save_scene

    model = load_model(model_path)
    info = model_info(model)
    scene = new_scene()
    predictions_to_scene(predictions_tsv, scene, {k: info[k] for k in ("marker", "model_name", "model_version")})
    for patient, paths in saliency.items():
        add_case_nodes(scene, cases[patient].only(info["modalities"]), paths, method, model.settings.margin_mm)
    return save_scene(scene, mrml_path, overwrite=overwrite)
