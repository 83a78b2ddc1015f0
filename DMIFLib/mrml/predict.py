"""Prediction from MRML nodes: volume nodes + a Markups ROI -> slice stack -> DMIF-Net -> table nodes.

The Slicer module DMIFPredict and the headless batch both go through these functions.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping

import slicer

from DMIFLib.mrml import tables
from DMIFLib.mrml.roi import roi_node_to_box
from DMIFLib.mrml.scene import MRMLError
from DMIFLib.mrml.volumes import volume_to_image


def result_columns(modalities) -> list[str]:
    """Columns of the results table: ``patient_id, marker, p_<modality>..., p_fused, p_fused_low, p_fused_high,
    prediction, cutoff, n_slices, ood_warning, p_fused_raw, model_name, model_version`` (the ``dmif predict``
    columns plus the marker and the model; DMIFLib.trust: interval, warning, raw score)."""
    return ["patient_id", "marker", *(f"p_{m}" for m in modalities), "p_fused", "p_fused_low", "p_fused_high",
            "prediction", "cutoff", "n_slices", "ood_warning", "p_fused_raw", "model_name", "model_version"]


def slice_columns(modalities) -> list[str]:
    """Columns of the per-slice table (those of ``slice_predictions.tsv``)."""
    return ["patient_id", "slice_index", *(f"p_{m}" for m in modalities), "p_fused"]


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        from DMIFLib.training.errors import RunCancelledError

        raise RunCancelledError("prediction cancelled")


def settings_for(model, register: bool = True, bias_correction: bool = True, skull_strip: bool = True):
    """The model's own preprocessing settings (slice size, margin, ...) with the user's step switches applied:
    registration to T1C, N4 bias-field correction, skull stripping (a given brain mask is used when on)."""
    return dataclasses.replace(model.settings, register=bool(register), n4=bool(bias_correction),
                               skull_strip="auto" if skull_strip else "none")


def model_info(model) -> dict:
    """What the results table says about the model: marker, modalities, model_name, model_version, cutoff."""
    name = model.info.get("name") or (model.path.stem if model.path is not None else "DMIF-Net")
    version = model.info.get("version") or f"DMIFLib {model.package_version}"
    return {"marker": model.marker, "modalities": tuple(model.modalities), "model_name": str(name),
            "model_version": str(version), "cutoff": float(model.cutoff)}


def predict_nodes(model, volumes: Mapping[str, slicer.vtkMRMLScalarVolumeNode], roi: slicer.vtkMRMLMarkupsROINode,
                  settings, brain_mask: slicer.vtkMRMLVolumeNode | None = None, backend=None,
                  progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                  patient_name: str | None = None, on_stack: Callable | None = None):
    """Run ``model`` (a LoadedModel) on one patient given as volume nodes (modality -> node) and a tumour ROI.

    Every modality the model needs must be present (others are ignored); the patient is named after the volume
    of the model's first modality unless ``patient_name`` is given. ``on_stack(stack)`` gets the patient's
    SliceStack (cut from the reference volume's grid; for saliency maps and the case report). Returns the
    CasePrediction.
    """
    from DMIFLib.inference import predict_case
    from DMIFLib.methods.case_input import CaseInput

    needed = tuple(model.modalities)
    missing = [m for m in needed if volumes.get(m) is None]
    if missing:
        raise MRMLError(f"the model needs the {', '.join(m.upper() for m in missing)} volume(s); select them")
    if progress:
        progress({"step": "read", "fraction": 0.02, "message": "Reading volumes and box"})
    images = {m: volume_to_image(volumes[m]) for m in needed}
    box = roi_node_to_box(roi)
    mask = volume_to_image(brain_mask) if brain_mask is not None else None
    _check(cancel)
    if progress:
        progress({"step": "preprocess", "fraction": 0.1, "message": "Preprocessing and predicting"})
    case = patient_name or volumes[needed[0]].GetName()
    case_input = CaseInput(patient_id=case, images=images, roi=box, brain_mask=mask, settings=settings,
                           backend=backend)
    prediction = predict_case(model, case_input)
    _check(cancel)
    if on_stack is not None:
        on_stack(case_input.slices(model.settings, needed))
    if progress:
        progress({"step": "done", "fraction": 1.0, "message": "Done"})
    return prediction


def prediction_tables(scene: slicer.vtkMRMLScene, prediction, model, patient_id: str,
                      reference_node: slicer.vtkMRMLNode | None = None,
                      results_node: slicer.vtkMRMLTableNode | None = None,
                      slices_node: slicer.vtkMRMLTableNode | None = None):
    """The results table (one row, :func:`result_columns`) and the per-slice table of a CasePrediction, placed
    under the patient's subject (the one holding ``reference_node``, else a subject named ``patient_id``)."""
    info = model_info(model)
    modalities = info["modalities"]
    row = {"patient_id": patient_id, "marker": info["marker"], "p_fused": float(prediction.p_fused),
           "prediction": int(prediction.prediction), "cutoff": float(prediction.cutoff),
           "n_slices": int(prediction.n_slices), "model_name": info["model_name"],
           "model_version": info["model_version"], "p_fused_low": float(prediction.p_fused_low),
           "p_fused_high": float(prediction.p_fused_high), "p_fused_raw": float(prediction.p_fused_raw),
           "ood_warning": prediction.ood_warning,
           **{f"p_{m}": float(prediction.probabilities[m]) for m in modalities}}
    results = tables.table_from_rows(scene, f"{patient_id} DMIF results", [row], result_columns(modalities),
                                     results_node)
    slice_rows = [{"patient_id": patient_id, "slice_index": int(index),
                   **{f"p_{m}": float(prediction.slice_probabilities[m][i]) for m in modalities},
                   "p_fused": float(prediction.slice_probabilities["fused"][i])}
                  for i, index in enumerate(prediction.slice_indices)]
    slices = tables.table_from_rows(scene, f"{patient_id} DMIF slices", slice_rows, slice_columns(modalities),
                                    slices_node)
    for node in (results, slices):
        node.SetAttribute("DMIF.marker", info["marker"])
    tables.place_under(scene, tables.patient_item(scene, patient_id, reference_node), [results, slices])
    return results, slices
