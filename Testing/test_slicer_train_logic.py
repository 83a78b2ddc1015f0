"""DMIFTrain's Qt-free logic under slicer-core: a cohort built from the patients loaded in a scene."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
sitk = pytest.importorskip("SimpleITK")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFTrain"))

from DMIFTrainLib.logic import TrainLogic  # noqa: E402

from DMIFLib.cohort import read_cohort  # noqa: E402
from DMIFLib.mrml import tables  # noqa: E402
from DMIFLib.mrml.scene import MRMLError, new_scene  # noqa: E402
from DMIFLib.mrml.subjects import guess_modality  # noqa: E402
from DMIFLib.mrml.volumes import image_to_volume  # noqa: E402


def _volume(scene, name, value):
    image = sitk.GetImageFromArray(np.full((4, 6, 8), value, np.int16))
    image.SetSpacing((1.0, 1.0, 3.0))
    return image_to_volume(image, scene, name)


def _scene_with_patients(names=("P1", "P2"), with_roi=True):
    scene = new_scene()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for index, name in enumerate(names):
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), name)
        study = sh.CreateStudyItem(patient, "MR")
        nodes = [_volume(scene, "AX T1 POST GD", 10 * index + 1), _volume(scene, "T2 FSE", 10 * index + 2)]
        if with_roi:
            roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", f"{name} box")
            roi.SetCenter(-3.0, -2.0, 4.5)
            roi.SetSize(4.0, 3.0, 6.0)
            nodes.append(roi)
        tables.place_under(scene, study, nodes)
    return scene


def test_modality_names():
    names = ("T1C", "t1_post_gd", "AX T1 +C", "T2 FSE", "T2-FLAIR", "T1 pre", "T1w", "DWI")
    assert [guess_modality(n) for n in names] == ["t1c", "t1c", "t1c", "t2w", "flair", "t1", "t1", None]


def test_cohort_from_scene_is_written_as_a_valid_cohort(tmp_path):
    scene = _scene_with_patients()
    logic = TrainLogic()
    table = logic.cohortTableFromScene(scene)
    columns = tables.table_columns(table)
    assert columns["patient_id"] == ["P1", "P2"]
    assert all(scene.GetNodeByID(i).GetName() == "AX T1 POST GD" for i in columns["t1c"])
    assert all(scene.GetNodeByID(i).GetName() == "T2 FSE" for i in columns["t2w"])

    with pytest.raises(MRMLError, match="P1: label '' is not 0 or 1"):
        logic.writeCohortFromTable(scene, table, tmp_path)
    label_column = table.GetTable().GetColumnByName("label")
    label_column.SetValue(0, "1")
    label_column.SetValue(1, "0")
    # typed-in labels survive a rebuild (e.g. after loading one more patient)
    table = logic.cohortTableFromScene(scene, table)
    assert tables.table_columns(table)["label"] == ["1", "0"]

    csv_path = logic.writeCohortFromTable(scene, table, tmp_path)
    cases = read_cohort(csv_path, require_labels=True, require_modalities=("t1c", "t2w"))
    assert [(c.patient_id, c.label) for c in cases] == [("P1", 1), ("P2", 0)]
    t1c = sitk.ReadImage(str(cases[1].images["t1c"]))
    assert t1c.GetSize() == (8, 6, 4) and sitk.GetArrayFromImage(t1c).max() == 11
    roi = slicer.vtkMRMLMarkupsROINode()
    reader = slicer.vtkMRMLMarkupsROIJsonStorageNode()
    reader.SetFileName(cases[0].roi)
    assert reader.ReadData(roi)
    center = [0.0, 0.0, 0.0]
    roi.GetCenter(center)
    assert center == pytest.approx([-3.0, -2.0, 4.5]) and roi.GetSize() == pytest.approx((4.0, 3.0, 6.0))


def test_scene_without_boxes_is_a_clear_error():
    with pytest.raises(MRMLError, match="P1: no tumour box"):
        TrainLogic().cohortTableFromScene(_scene_with_patients(("P1",), with_roi=False))


def test_worker_command_and_events():
    logic = TrainLogic(pythonExecutable="PythonSlicer")
    command = logic.workerCommand("c.csv", "out", preset="paper", device="cpu", resume=True,
                                  overrides={"epochs": 2})
    assert command[:6] == ["PythonSlicer", "-m", "DMIFLib.worker", "train", "c.csv", "out"]
    assert command[command.index("--preset") + 1] == "paper" and "--resume" in command
    text, fraction = logic.describeEvent({"stage": "stage1", "modality": "t1c", "epoch": 3, "epochs": 10,
                                          "loss": 0.5, "fraction": 0.25})
    assert text == "stage1 · t1c · epoch 3/10 · loss 0.500" and fraction == 0.25
