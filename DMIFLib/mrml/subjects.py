"""Patients in the subject hierarchy and modality names of volume nodes."""

from __future__ import annotations

import re

import slicer

_MODALITY_PATTERNS = {
    "flair": re.compile(r"flair", re.IGNORECASE),
    "t1c": re.compile(r"t1.?(c|ce|gd|post|contrast|\+c)|post.?gad", re.IGNORECASE),
    "t1": re.compile(r"t1(?!\d)", re.IGNORECASE),  # native T1: a T1 name that is not a T1C name (checked first)
    "t2w": re.compile(r"t2(?!.*flair)", re.IGNORECASE),
}


def guess_modality(name: str) -> str | None:
    """'T1C', 't1_post_gd', 'T1w', 'AX T2' -> 't1c', 't1c', 't1', 't2w'; FLAIR first because 'T2-FLAIR' names
    both, T1C before T1 because 'T1C' names both."""
    for modality, pattern in _MODALITY_PATTERNS.items():
        if pattern.search(name):
            return modality
    return None


def patient_of(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLNode) -> int:
    """The subject-hierarchy item of the patient (subject) that holds ``node``, or 0."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node)
    while item and item != sh.GetSceneItemID():
        if sh.GetItemLevel(item) == "Patient":
            return item
        item = sh.GetItemParent(item)
    return 0


def patient_name(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLNode) -> str:
    """The name of the patient holding ``node``, else the node's name."""
    item = patient_of(scene, node)
    if item:
        return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene).GetItemName(item)
    return node.GetName() or "patient"
