"""Saliency maps as MRML volume nodes: one scalar volume per modality on the reference (T1C) grid, under the patient
in the subject hierarchy, with a colour map, shown as the slice views' foreground over the reference volume."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import SimpleITK as sitk  # noqa: N813
import slicer

from DMIFLib.mrml import tables
from DMIFLib.mrml.volumes import image_to_volume

# Slicer's colour tables (from Base/Logic/Resources/ColorFiles; present in the application), then the built-in
# tables that a headless slicer-core scene has.
UNSIGNED_COLORS = ("vtkMRMLColorTableNodeFileColdToHotRainbow.txt", "vtkMRMLColorTableNodeRainbow")
SIGNED_COLORS = ("vtkMRMLColorTableNodeFileDivergingBlueRed.txt", "vtkMRMLColorTableNodefMRI")
SHOWN_FRACTION = 0.15
"""Voxels of a non-negative map below this fraction of its maximum are transparent (the display threshold)."""
FOREGROUND_OPACITY = 0.5


def saliency_node_name(patient_id: str, modality: str) -> str:
    return f"{patient_id} saliency {modality}"


def _color_id(scene: slicer.vtkMRMLScene, candidates: tuple[str, ...]) -> str:
    return next((c for c in candidates if scene.GetNodeByID(c) is not None), candidates[-1])


def saliency_nodes(scene: slicer.vtkMRMLScene, volumes: Mapping[str, sitk.Image], patient_id: str, method: str,
                   reference_node: slicer.vtkMRMLNode | None = None,
                   nodes: Mapping[str, slicer.vtkMRMLScalarVolumeNode] | None = None
                   ) -> dict[str, slicer.vtkMRMLScalarVolumeNode]:
    """Scalar volume nodes ``"<patient_id> saliency <modality>"`` for modality -> saliency image (LPS, on the
    reference grid), reusing ``nodes[modality]`` when given. Colour: cold-to-hot rainbow for non-negative maps
    (faint voxels below :data:`SHOWN_FRACTION` × max transparent), blue–red centred at 0 for signed ones.
    Placed under the patient holding ``reference_node`` (else a subject ``patient_id``); attribute
    ``DMIF.saliency`` = method."""
    out = {}
    for modality, image in volumes.items():
        node = image_to_volume(image, scene, saliency_node_name(patient_id, modality), (nodes or {}).get(modality))
        node.SetAttribute("DMIF.saliency", method)
        node.SetAttribute("DMIF.modality", modality)
        values = sitk.GetArrayViewFromImage(image)
        peak = float(np.abs(values).max()) or 1.0
        signed = bool((values < 0).any())
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(_color_id(scene, SIGNED_COLORS if signed else UNSIGNED_COLORS))
        display.SetAutoWindowLevel(0)
        display.SetWindowLevelMinMax(-peak if signed else 0.0, peak)
        display.SetAutoThreshold(0)
        display.SetApplyThreshold(0 if signed else 1)
        if not signed:
            display.SetThreshold(SHOWN_FRACTION * peak, peak)
        out[modality] = node
    tables.place_under(scene, tables.patient_item(scene, patient_id, reference_node), list(out.values()))
    return out


def show_as_foreground(scene: slicer.vtkMRMLScene, saliency_node: slicer.vtkMRMLVolumeNode,
                       background_node: slicer.vtkMRMLVolumeNode | None = None,
                       opacity: float = FOREGROUND_OPACITY) -> int:
    """Show ``saliency_node`` as the foreground (over ``background_node`` when given) in every slice view of the
    scene, as ``slicer.util.setSliceViewerLayers`` does; returns the number of slice views set (0 headless)."""
    count = scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")
    for index in range(count):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if background_node is not None:
            composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(saliency_node.GetID())
        composite.SetForegroundOpacity(opacity)
    return count


def load_saliency_files(scene: slicer.vtkMRMLScene, paths: Mapping[str, str | os.PathLike], patient_id: str,
                        method: str, reference_node: slicer.vtkMRMLNode | None = None
                        ) -> dict[str, slicer.vtkMRMLScalarVolumeNode]:
    """Saliency nodes from the files ``dmif predict --saliency`` wrote (modality -> path)."""
    from DMIFLib.preprocessing.io import read_image

    images = {m: read_image(p, what=f"{m} saliency", case=patient_id) for m, p in paths.items()}
    return saliency_nodes(scene, images, patient_id, method, reference_node)
