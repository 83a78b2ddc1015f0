"""Render the extension's screenshots (EXTENSION_SCREENSHOTURLS) from real module outputs, offscreen.

No Slicer GUI runs here, so the pictures are drawn with matplotlib from what DMIF Predict's logic really
produces under slicer-core:

- DMIFPredict-box.png: the real TCGA-FG-6692 T1C (TCIA TCGA-LGG, CC BY 3.0) as loaded into an MRML volume
  node, three slices through the tumour, with the tumour box (Markups ROI, RAS) DMIF Predict uses;
- DMIFPredict-results.png: the results and per-slice tables DMIF Predict writes for that patient (T1C + T2W,
  registration with the SimpleITK backend) with a tiny model that DMIF Train's logic trains first on a tiny
  synthetic cohort; the probabilities of such a model mean nothing clinically, and the picture says so.

    PYTHONPATH=. python Resources/Screenshots/make_screenshots.py ../shared/data Resources/Screenshots
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "DMIFPredict"), str(ROOT / "DMIFTrain")]

# The tumour box of TCGA-FG-6692 in native T1C space (RAS mm), as in Testing/test_slicer_end_to_end.py.
BOX_CENTER_RAS = (35.0, 44.3, 48.5)
BOX_SIZE_MM = (45.2, 61.2, 56.1)


def _train_tiny_model(folder: Path) -> Path:
    from DMIFTrainLib.logic import SELF_TEST_OVERRIDES, TrainLogic

    from DMIFLib.synth import synthesize_cohort

    cohort = synthesize_cohort(folder / "cohort", 6, 0, scale=0.5)
    out = TrainLogic(pythonExecutable=sys.executable).train(cohort, folder / "run", preset="quick", device="cpu",
                                                           overrides=SELF_TEST_OVERRIDES)
    return out / "model.pt"


def _box_on_slice(volume, k: int) -> tuple[float, float, float, float] | None:
    """The box's (i0, j0, i1, j1) in voxel columns/rows of slice ``k`` (IJK of the axis-aligned T1C grid)."""
    import vtk

    ras_to_ijk = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(ras_to_ijk)
    center, size = np.array(BOX_CENTER_RAS), np.array(BOX_SIZE_MM)
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3)
    corners = [center + size / 2 * s for s in signs]
    ijk = np.array([ras_to_ijk.MultiplyPoint((*c, 1.0))[:3] for c in corners])
    low, high = ijk.min(axis=0), ijk.max(axis=0)
    if not low[2] <= k <= high[2]:
        return None
    return low[0], low[1], high[0], high[1]


def render_box(volume, out: Path) -> None:
    from slicer.util import arrayFromVolume

    array = arrayFromVolume(volume)  # (k, j, i)
    slices = (5, 8, 11)  # the tumour's slices in the volume as Slicer loads it (k 3-14 in the per-slice table)
    figure, axes = plt.subplots(1, len(slices), figsize=(12, 4.6), dpi=100, facecolor="black")
    for axis, k in zip(axes, slices, strict=True):
        image = array[k]
        axis.imshow(image, cmap="gray", origin="lower", vmin=np.percentile(image, 1), vmax=np.percentile(image, 99.5))
        box = _box_on_slice(volume, k)
        if box is not None:
            i0, j0, i1, j1 = box
            axis.add_patch(patches.Rectangle((i0, j0), i1 - i0, j1 - j0, fill=False, edgecolor="#ffd000", lw=2))
        axis.set_title(f"T1C slice k = {k}", color="white", fontsize=11)
        axis.axis("off")
    figure.suptitle("DMIF Predict: tumour box (Markups ROI) on TCGA-FG-6692 T1C - every slice inside it is used",
                    color="white", fontsize=12)
    figure.text(0.5, 0.02, "Data: TCIA TCGA-LGG, TCGA-FG-6692 (CC BY 3.0). Rendered offscreen from the MRML volume "
                "node and ROI that DMIF Predict uses.", color="#bbbbbb", ha="center", fontsize=9)
    figure.savefig(out, facecolor="black", bbox_inches="tight")
    plt.close(figure)


def render_results(results, slices, out: Path) -> None:
    from DMIFLib.mrml import tables

    row = {k: v[0] for k, v in tables.table_columns(results).items()}
    per_slice = tables.table_columns(slices)
    figure = plt.figure(figsize=(12, 5.4), dpi=100)
    table_axis = figure.add_axes((0.02, 0.12, 0.42, 0.76))
    table_axis.axis("off")
    cells = [[key, f"{value:.3f}" if isinstance(value, float) else str(value)] for key, value in row.items()]
    table = table_axis.table(cellText=cells, colLabels=["column", "value"], loc="center", cellLoc="left")
    table.scale(1, 1.25)
    table_axis.set_title(f"Results table '{results.GetName()}'", fontsize=11)
    plot_axis = figure.add_axes((0.53, 0.17, 0.44, 0.66))
    for key, colour in (("p_t1c", "#1f77b4"), ("p_t2w", "#2ca02c"), ("p_fused", "#d62728")):
        plot_axis.plot(per_slice["slice_index"], per_slice[key], "o-", color=colour, label=key)
    plot_axis.axhline(row["cutoff"], color="grey", ls="--", label="cut-off")
    plot_axis.set_xlabel("T1C slice index")
    plot_axis.set_ylabel("probability")
    plot_axis.set_ylim(0, 1)
    plot_axis.legend(loc="upper right", fontsize=9)
    plot_axis.set_title(f"Per-slice table '{slices.GetName()}'", fontsize=11)
    figure.suptitle("DMIF Predict results for TCGA-FG-6692 (T1C + T2W), placed under the patient in the Data module",
                    fontsize=12)
    figure.text(0.5, 0.02, "Model: a tiny demonstration DMIF-Net trained on 6 synthetic patients by DMIF Train's "
                "logic: its probabilities are not a diagnosis. Research use only.", ha="center", fontsize=9,
                color="#aa0000")
    figure.savefig(out, bbox_inches="tight")
    plt.close(figure)


def main(data: Path, out_folder: Path) -> None:
    import slicer
    from DMIFPredictLib.logic import PredictLogic

    from DMIFLib.mrml import tables
    from DMIFLib.mrml.roi import box_to_roi_node
    from DMIFLib.mrml.scene import load_volume, new_scene
    from DMIFLib.preprocessing.roi import OrientedBox

    native = data / "TCGA-FG-6692" / "native"
    scene = new_scene()
    t1c = load_volume(scene, native / "TCGA-FG-6692_t1c.nii.gz", "T1C")
    t2w = load_volume(scene, native / "TCGA-FG-6692_t2.nii.gz", "T2")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    tables.place_under(scene, sh.CreateSubjectItem(sh.GetSceneItemID(), "TCGA-FG-6692"), [t1c, t2w])
    roi = box_to_roi_node(OrientedBox.axis_aligned(BOX_CENTER_RAS, BOX_SIZE_MM), scene, "Tumour box")
    out_folder.mkdir(parents=True, exist_ok=True)
    render_box(t1c, out_folder / "DMIFPredict-box.png")
    with tempfile.TemporaryDirectory() as folder:
        model = _train_tiny_model(Path(folder))
        _, results, slices = PredictLogic().predict(scene, volumes={"t1c": t1c, "t2w": t2w}, roi=roi,
                                                    modelPath=str(model), device="cpu", biasCorrection=False)
    render_results(results, slices, out_folder / "DMIFPredict-results.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
