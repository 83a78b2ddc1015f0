"""Saliency volumes as real MRML nodes under slicer-core: geometry on the reference grid, the patient in the
subject hierarchy, colour map and foreground layer, a scene round trip; and DMIF Predict's logic end to end
(predict -> Show saliency -> Save report) on volume nodes with a tiny model file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed for the MRML adapter")
sitk = pytest.importorskip("SimpleITK")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFPredict"))

from test_case_report import BOX, SIZE, _volume  # noqa: E402
from test_model_file import tiny_model  # noqa: E402

from DMIFLib.model_file import save_model  # noqa: E402
from DMIFLib.mrml import tables  # noqa: E402
from DMIFLib.mrml.saliency import SHOWN_FRACTION, saliency_nodes, show_as_foreground  # noqa: E402
from DMIFLib.mrml.scene import load_scene, new_scene, save_scene  # noqa: E402
from DMIFLib.mrml.subjects import patient_of  # noqa: E402
from DMIFLib.mrml.volumes import image_to_volume, volume_to_image  # noqa: E402
from DMIFLib.preprocessing.settings import PreprocessSettings  # noqa: E402


def _maps(reference: sitk.Image) -> dict[str, sitk.Image]:
    """A non-negative map (t1c) and a signed one (t2w) on ``reference``'s grid."""
    rng = np.random.default_rng(0)
    out = {}
    for name, values in (("t1c", rng.uniform(0, 2, size=reference.GetSize()[::-1])),
                         ("t2w", rng.normal(size=reference.GetSize()[::-1]))):
        image = sitk.GetImageFromArray(values.astype(np.float32))
        image.CopyInformation(reference)
        out[name] = image
    return out


def test_saliency_nodes_lie_under_the_patient_with_colour_and_foreground(tmp_path):
    scene = new_scene()
    reference = _volume(0)
    t1c = image_to_volume(reference, scene, "P7 T1C")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "P7")
    tables.place_under(scene, patient, [t1c])
    composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")  # what a slice view holds in Slicer
    maps = _maps(reference)
    nodes = saliency_nodes(scene, maps, "P7", "occlusion", reference_node=t1c)
    assert set(nodes) == {"t1c", "t2w"} and nodes["t1c"].GetName() == "P7 saliency t1c"
    for modality, node in nodes.items():
        assert patient_of(scene, node) == patient
        assert node.GetAttribute("DMIF.saliency") == "occlusion"
        back = volume_to_image(node)
        assert back.GetSize() == reference.GetSize()
        np.testing.assert_allclose(back.GetOrigin(), reference.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(back.GetDirection(), reference.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(maps[modality]))
    unsigned, signed = nodes["t1c"].GetDisplayNode(), nodes["t2w"].GetDisplayNode()
    # slicer-core has only the built-in colour tables (Slicer's file tables are preferred inside the application)
    assert unsigned.GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert signed.GetColorNodeID() == "vtkMRMLColorTableNodefMRI"
    peak = float(sitk.GetArrayViewFromImage(maps["t1c"]).max())
    assert unsigned.GetApplyThreshold() and unsigned.GetLowerThreshold() == pytest.approx(SHOWN_FRACTION * peak)
    assert not signed.GetApplyThreshold() and signed.GetWindow() == pytest.approx(
        2 * np.abs(sitk.GetArrayViewFromImage(maps["t2w"])).max(), rel=1e-5)
    assert show_as_foreground(scene, nodes["t1c"], t1c) == 1
    assert composite.GetForegroundVolumeID() == nodes["t1c"].GetID()
    assert composite.GetBackgroundVolumeID() == t1c.GetID() and composite.GetForegroundOpacity() == 0.5
    again = saliency_nodes(scene, maps, "P7", "occlusion", reference_node=t1c, nodes=nodes)  # reuses the nodes
    assert again["t1c"] is nodes["t1c"] and scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 3
    reloaded = load_scene(save_scene(scene, tmp_path / "scene.mrml"))
    node = reloaded.GetFirstNodeByName("P7 saliency t1c")
    assert node is not None and node.GetAttribute("DMIF.saliency") == "occlusion"
    assert node.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert patient_of(reloaded, node) and np.asarray(node.GetImageData().GetDimensions()).prod() > 0


def test_predict_logic_shows_saliency_and_saves_a_report(tmp_path):
    from DMIFPredictLib.logic import PredictLogic

    from DMIFLib.mrml.roi import box_to_roi_node
    from DMIFLib.preprocessing.roi import OrientedBox

    model = tiny_model(SIZE)
    model.settings = PreprocessSettings(register=False, n4=False, skull_strip="none", slice_size=SIZE)
    model.info = {"name": "tiny", "version": "1"}
    model_path = save_model(tmp_path / "model.pt", model)
    scene = new_scene()
    reference = _volume(1)
    volumes = {"t1c": image_to_volume(reference, scene, "T1C"), "t2w": image_to_volume(_volume(2), scene, "T2W")}
    label = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(reference)
    array = sitk.GetArrayFromImage(label)
    array[BOX[2]:BOX[5] + 1, BOX[1]:BOX[4] + 1, BOX[0]:BOX[3] + 1] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    roi = box_to_roi_node(OrientedBox.from_label(mask), scene)
    logic = PredictLogic()
    with pytest.raises(RuntimeError, match="predict a patient first"):
        logic.saveReport(str(tmp_path))
    logic.predict(scene, volumes=volumes, roi=roi, modelPath=str(model_path), device="cpu", register=False,
                  biasCorrection=False, skullStrip=False, patientName="P9")
    nodes = logic.showSaliency(scene, "gradcam")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert {sh.GetItemName(patient_of(scene, n)) for n in nodes.values()} == {"P9"}
    values = sitk.GetArrayFromImage(volume_to_image(nodes["t1c"]))
    assert values.shape == sitk.GetArrayViewFromImage(reference).shape and np.count_nonzero(values) > 0
    inside = np.zeros(values.shape, dtype=bool)
    inside[BOX[2]:BOX[5] + 1, BOX[1]:BOX[4] + 1, BOX[0]:BOX[3] + 1] = True
    assert not values[~inside].any()
    paths = logic.saveReport(str(tmp_path / "reports"))
    assert paths["html"] == tmp_path / "reports" / "P9.html" and paths["pdf"].is_file()
    page = paths["html"].read_text(encoding="utf-8")
    assert "DMIF case report: P9" in page and "Research use only" in page and "Method gradcam" in page


def test_batch_writes_saliency_reports_and_a_scene_with_the_saliency_volumes(tmp_path):
    from test_case_report import tiny_cohort_and_model

    from DMIFLib.mrml.batch import main

    cohort, model_path, _ = tiny_cohort_and_model(tmp_path, bad_case=False)
    out = tmp_path / "batch"
    assert main([str(cohort), str(model_path), str(out), "--device", "cpu", "--saliency", "--report"]) == 0
    assert sorted(p.name for p in (out / "reports").iterdir()) == ["P1.html", "P1.pdf", "P2.html", "P2.pdf"]
    assert len(list((out / "saliency").iterdir())) == 4
    scene = load_scene(out / "DMIF_predictions.mrml")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for patient in ("P1", "P2"):
        for name in (f"{patient} saliency t1c", f"{patient} saliency t2w", f"{patient} T1C", f"{patient} tumour box",
                     f"{patient} DMIF results"):
            node = scene.GetFirstNodeByName(name)
            assert node is not None, name
            assert sh.GetItemName(patient_of(scene, node)) == patient, name
    saved = volume_to_image(scene.GetFirstNodeByName("P1 saliency t1c"))
    written = sitk.ReadImage(str(out / "saliency" / "P1_t1c.nii.gz"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(saved), sitk.GetArrayFromImage(written))
    np.testing.assert_allclose(saved.GetOrigin(), written.GetOrigin(), atol=1e-4)
