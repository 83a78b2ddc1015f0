"""Scenes: a headless scene with the module logics it needs, volume loading, and ``.mrml`` save/reload.

Inside 3D Slicer ``slicer.mrmlScene`` and the application's module logics are used; under ``slicer-core``
(no ``slicer.app``) :func:`new_scene` builds a scene with its own application logic and the Colors, Volumes,
Markups and Subject Hierarchy logics, as ``qSlicerCoreApplication`` would.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path

import slicer

# Per-scene logics created for headless scenes (keyed by id(scene); kept alive as long as the scene lives).
_LOGICS: dict[int, dict[str, object]] = {}


class MRMLError(RuntimeError):
    """An MRML operation that failed; the message names the node or file and the problem."""


def in_slicer_application() -> bool:
    """True inside the 3D Slicer application (``slicer.app`` exists), False under ``slicer-core``."""
    return hasattr(slicer, "app")


def _register_logics(scene: slicer.vtkMRMLScene) -> dict[str, object]:
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    color = slicer.vtkMRMLColorLogic()
    color.SetMRMLApplicationLogic(app)
    color.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", color)
    logics: dict[str, object] = {"app": app, "colors": color}
    for key, module, cls in (("volumes", "Volumes", slicer.vtkSlicerVolumesLogic),
                             ("markups", "Markups", slicer.vtkSlicerMarkupsLogic),
                             ("subjecthierarchy", "SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(module, logic)
        logics[key] = logic
    if scene.GetFirstNodeByClass("vtkMRMLSelectionNode") is None:
        selection = slicer.vtkMRMLSelectionNode()
        selection.SetSingletonTag("Singleton")
        scene.AddNode(selection)
    scene_id = id(scene)
    _LOGICS[scene_id] = logics
    weakref.finalize(scene, _LOGICS.pop, scene_id, None)
    return logics


def new_scene() -> slicer.vtkMRMLScene:
    """A new empty scene with the module logics registered (headless; inside Slicer use ``slicer.mrmlScene``)."""
    scene = slicer.vtkMRMLScene()
    _register_logics(scene)
    return scene


def _logic(scene: slicer.vtkMRMLScene, key: str):
    if in_slicer_application() and scene is getattr(slicer, "mrmlScene", None):
        return getattr(slicer.modules, key).logic()
    logics = _LOGICS.get(id(scene)) or _register_logics(scene)
    return logics[key]


def load_volume(scene: slicer.vtkMRMLScene, path: str | os.PathLike, name: str | None = None,
                labelmap: bool = False) -> slicer.vtkMRMLScalarVolumeNode:
    """Load an image file (NIfTI, NRRD, MHA, ...) as a scalar (or labelmap) volume node; raises MRMLError."""
    path = Path(path)
    if not path.is_file():
        raise MRMLError(f"{path}: image file not found")
    node = _logic(scene, "volumes").AddArchetypeVolume(str(path), name or _stem(path), 1 if labelmap else 0)
    if node is None or node.GetImageData() is None:
        raise MRMLError(f"{path}: could not be read as a volume")
    return node


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".seg.nrrd", ".mrk.json", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe_file_name(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "node"
    candidate, counter = base, 1
    while candidate.lower() in used:
        counter += 1
        candidate = f"{base}_{counter}"
    used.add(candidate.lower())
    return candidate


def save_scene(scene: slicer.vtkMRMLScene, mrml_path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save the scene as ``mrml_path`` with every storable node's data written next to it.

    Files are written into a staging folder first and then moved into place one by one with ``os.replace``
    (the ``.mrml`` last), so a reader never sees a partial file. Existing files are never replaced unless
    ``overwrite`` (MRMLError naming the first one). Returns the ``.mrml`` path.
    """
    mrml_path = Path(mrml_path).resolve()
    if mrml_path.suffix != ".mrml":
        raise MRMLError(f"{mrml_path}: a scene file must end in .mrml")
    folder = mrml_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{mrml_path.stem}.", suffix=".tmp", dir=folder))
    used: set[str] = {mrml_path.name.lower()}
    written: list[tuple[object, str, str | None]] = []
    previous_root = scene.GetRootDirectory()
    try:
        for index in range(scene.GetNumberOfNodes()):
            node = scene.GetNthNode(index)
            if not node.IsA("vtkMRMLStorableNode") or not node.GetSaveWithScene():
                continue
            if node.IsA("vtkMRMLColorNode") and node.GetHideFromEditors():
                continue  # the default color tables that every scene recreates
            if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is None:
                continue
            storage = node.GetStorageNode()
            if storage is None:
                node.AddDefaultStorageNode()
                storage = node.GetStorageNode()
            if storage is None:
                continue
            stem = _safe_file_name(node.GetName() or node.GetID(), used)
            file_name = f"{stem}.{storage.GetDefaultWriteFileExtension()}"
            written.append((storage, file_name, storage.GetFileName()))
            storage.SetFileName(str(stage / file_name))
            if not storage.WriteData(node):
                raise MRMLError(f"{mrml_path}: could not write node '{node.GetName()}' to {file_name}")
        scene.SetRootDirectory(str(stage))
        if not scene.Commit(str(stage / mrml_path.name)):
            raise MRMLError(f"{mrml_path}: could not write the scene file")
        existing = [folder / p.name for p in stage.iterdir() if (folder / p.name).exists()]
        if existing and not overwrite:
            raise MRMLError(f"{existing[0]}: already exists; choose another folder or allow overwriting")
        for path in sorted(stage.iterdir(), key=lambda p: p.suffix == ".mrml"):
            os.replace(path, folder / path.name)
        for storage, file_name, _ in written:
            storage.SetFileName(str(folder / file_name))
        written.clear()
        scene.SetRootDirectory(str(folder))
        scene.SetURL(str(mrml_path))
    finally:
        if written:  # failed: the nodes keep pointing at their previous files
            for storage, _, previous in written:
                storage.SetFileName(previous or "")
            scene.SetRootDirectory(previous_root or "")
        shutil.rmtree(stage, ignore_errors=True)
    return mrml_path


def load_scene(mrml_path: str | os.PathLike, scene: slicer.vtkMRMLScene | None = None) -> slicer.vtkMRMLScene:
    """Read a ``.mrml`` scene (and its data files) into ``scene`` or a new headless scene."""
    mrml_path = Path(mrml_path).resolve()
    if not mrml_path.is_file():
        raise MRMLError(f"{mrml_path}: scene file not found")
    scene = scene if scene is not None else new_scene()
    scene.SetURL(str(mrml_path))
    scene.SetRootDirectory(str(mrml_path.parent))
    if not scene.Import():
        raise MRMLError(f"{mrml_path}: could not be read as an MRML scene")
    return scene
