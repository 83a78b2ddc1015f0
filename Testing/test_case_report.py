"""`dmif predict --saliency --report`: saliency volumes on the input T1C's grid, one HTML + PDF report per case, one
bad case listed while the others go on; the report's probability, interval and calibration texts; and the report
looked at in a real browser (headless Chromium screenshot: not blank, the saliency overlay's colours present)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from test_model_file import tiny_model

from DMIFLib.casereport.content import CaseReport
from DMIFLib.casereport.document import html_page, write_case_report
from DMIFLib.cli import main
from DMIFLib.cohort import CohortCase, write_cohort
from DMIFLib.evaluation.tables import read_tsv
from DMIFLib.model_file import save_model
from DMIFLib.preprocessing.roi import OrientedBox
from DMIFLib.preprocessing.settings import PreprocessSettings

SIZE = 32
BOX = (2, 8, 5, 9, 30, 24)  # inclusive i0, j0, k0, i1, j1, k1 on the reference grid


def _volume(seed: int) -> sitk.Image:
    """A smooth random head-sized block: thick slices along i, rotated direction, an off-centre origin."""
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 20, size=(30, 40, 12)).astype(np.float32))
    image = sitk.SmoothingRecursiveGaussian(image, 1.5)
    image.SetSpacing((4.0, 0.9, 1.1))
    image.SetOrigin((-20.0, 13.0, 7.5))
    angle = np.deg2rad(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    return image


def tiny_cohort_and_model(root, bad_case: bool = True):
    """Two good cases (and one whose box lies outside its image) of smooth oblique volumes with inline boxes, and
    an untrained tiny model file that needs no registration, N4 or skull stripping; returns (cohort.csv, model.pt,
    cases)."""
    cases = []
    for n, pid in enumerate(("P1", "P2", "BAD")[:3 if bad_case else 2]):
        paths = {}
        for m in ("t1c", "t2w"):
            paths[m] = root / "data" / f"{pid}_{m}.nii.gz"
            paths[m].parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(_volume(10 * n + len(m)), str(paths[m]))
        roi = "ijk:" + ",".join(map(str, BOX)) if pid != "BAD" else "ijk:50,60,70,55,65,75"
        cases.append(CohortCase(patient_id=pid, images=paths, roi=roi))
    cohort = write_cohort(cases, root / "data" / "cohort.csv")
    model = tiny_model(SIZE)
    model.settings = PreprocessSettings(register=False, n4=False, skull_strip="none", slice_size=SIZE)
    model.info = {"name": "tiny test model", "version": "0.1", "trained_utc": "2026-11-30T10:00:00Z",
                  "patients": {"train": 30, "val": 8, "test": 10}, "test_auc": {"patient/fused": 0.81}}
    return cohort, save_model(root / "model.pt", model), cases


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """Two good cases and one whose box lies outside its image, predicted with --saliency --report."""
    root = tmp_path_factory.mktemp("case_report")
    cohort, model_path, cases = tiny_cohort_and_model(root)
    out = root / "pred"
    code = main(["predict", "--cohort", str(cohort), "--model", str(model_path), "--out", str(out), "--saliency",
                 "--report", "--device", "cpu"])
    return code, out, {c.patient_id: c.images for c in cases}


def test_saliency_files_lie_on_the_input_t1c_grid_and_a_bad_case_is_listed(predicted):
    code, out, images = predicted
    assert code == 1  # one case failed, the others were predicted
    failures = read_tsv(out / "failures.tsv")
    assert [f["patient_id"] for f in failures] == ["BAD"]
    assert [r["patient_id"] for r in read_tsv(out / "predictions.tsv")] == ["P1", "P2"]
    assert sorted(p.name for p in (out / "saliency").iterdir()) == [
        "P1_t1c.nii.gz", "P1_t2w.nii.gz", "P2_t1c.nii.gz", "P2_t2w.nii.gz"]
    for pid in ("P1", "P2"):
        t1c = sitk.ReadImage(str(images[pid]["t1c"]))
        for m in ("t1c", "t2w"):
            saliency = sitk.ReadImage(str(out / "saliency" / f"{pid}_{m}.nii.gz"))
            assert saliency.GetSize() == t1c.GetSize()
            np.testing.assert_allclose(saliency.GetSpacing(), t1c.GetSpacing(), atol=1e-6)
            np.testing.assert_allclose(saliency.GetOrigin(), t1c.GetOrigin(), atol=1e-5)
            np.testing.assert_allclose(saliency.GetDirection(), t1c.GetDirection(), atol=1e-6)
            array = sitk.GetArrayFromImage(saliency)  # (k, j, i)
            nonzero = np.argwhere(array != 0)[:, ::-1]
            assert len(nonzero) > 0, f"{pid} {m}: an all-zero saliency map"
            assert np.all(nonzero >= BOX[:3]) and np.all(nonzero <= BOX[3:])
    assert not any(p.name.startswith("BAD") for p in (out / "saliency").iterdir())


def test_one_html_and_pdf_report_per_case(predicted):
    _, out, _ = predicted
    assert sorted(p.name for p in (out / "reports").iterdir()) == ["P1.html", "P1.pdf", "P2.html", "P2.pdf"]
    page = (out / "reports" / "P1.html").read_text(encoding="utf-8")
    row = read_tsv(out / "predictions.tsv")[0]  # an untrained model file: no calibration; a TTA interval
    interval = f"{float(row['p_fused']):.2f} ({float(row['p_fused_low']):.2f}–{float(row['p_fused_high']):.2f})"
    for text in ("Research use only", interval, "Not calibrated", "tiny test model",
                 "train 30, val 8, test 10 (total 48)", "AUC patient/fused 0.810", "2026-11-30T10:00:00Z",
                 "Preprocessing QA", "No registration checkerboard", "gradcam"):
        assert text in page, text
    assert page.count("data:image/png;base64,") >= 2 and "src=\"http" not in page and "<script" not in page
    pdf = (out / "reports" / "P1.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3  # pages: text, overlay (+ the Pages node)


def _box_mask(reference: sitk.Image) -> tuple[OrientedBox, np.ndarray]:
    """The box of the voxels BOX on ``reference`` and its (k, j, i) mask."""
    array = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)
    array[BOX[2]:BOX[5] + 1, BOX[1]:BOX[4] + 1, BOX[0]:BOX[3] + 1] = 1
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(reference)
    return OrientedBox.from_label(mask), array


def _report(saliency_scale: float, row: dict[str, str] | None = None, qa: dict | None = None) -> CaseReport:
    reference = _volume(0)
    box, array = _box_mask(reference)
    kk, jj = np.mgrid[:30, :40]  # the (k, j) plane: the slices lie along i
    blob = np.exp(-((kk - 15) ** 2 + (jj - 19) ** 2) / 30.0).astype(np.float32)
    values = (blob[:, :, None] * array * saliency_scale).astype(np.float32)
    saliency = sitk.GetImageFromArray(values)
    saliency.CopyInformation(reference)
    row = row or {"patient_id": "C1", "p_t1c": "0.700000", "p_fused": "0.780000", "prediction": "1",
                  "cutoff": "0.500000", "n_slices": "8"}
    return CaseReport(patient_id="C1", marker="1p/19q co-deletion", row=row, reference_name="t1c",
                      reference=reference, box=box, saliency={"t1c": saliency}, saliency_method="gradcam",
                      model={"model": "m"}, qa_png=qa or {}, qa_notes=["a note"], warnings=["a warning"],
                      calibration="temperature" if "p_fused_raw" in row else None)


def test_interval_calibration_and_ood_columns_are_shown_when_present():
    from DMIFLib.casereport.content import case_warnings

    report = _report(1.0, row={"patient_id": "C1", "p_t1c": "0.7", "p_fused": "0.78", "p_fused_raw": "0.91",
                               "p_fused_low": "0.64", "p_fused_high": "0.88", "ood_warning": "slice spacing 7 mm",
                               "prediction": "1", "cutoff": "0.5", "n_slices": "8"})
    report.warnings = case_warnings(report)
    page = html_page(report)
    assert "P(1p/19q co-deletion) = 0.78 (0.64–0.88)" in page
    assert "Calibrated (temperature)" in page and "raw network score 0.91" in page
    assert "Outside what the model has seen: slice spacing 7 mm" in page
    assert "no interval" not in page.lower()
    plain = _report(1.0)
    plain.warnings = case_warnings(plain)
    assert "0.78 (no interval)" in html_page(plain) and "No interval for this probability." in plain.warnings
    # a method without calibration or interval writes "nan" in those columns (docs/trust.md)
    nan_row = _report(1.0, row={"patient_id": "C1", "p_fused": "0.78", "p_fused_raw": "nan", "p_fused_low": "nan",
                                "p_fused_high": "nan", "ood_warning": "", "prediction": "1", "cutoff": "0.5"})
    nan_row.calibration = None
    assert "0.78 (no interval)" in html_page(nan_row) and "Not calibrated" in html_page(nan_row)


def _colour_pixels(png) -> int:
    """Pixels of the overlay's colour maps: saturated blue/cyan/green (the box is yellow, the page's reds are the
    probability dot and the research-use banner)."""
    pixels = np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(png))))[..., :3].astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(np.count_nonzero((b - r > 60) | (g - r > 60) & (g - b > -40)))


def _screenshot(chromium: str, page, png) -> np.ndarray:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,2200", f"--screenshot={png}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(png))))


def test_report_in_headless_chromium_shows_the_overlay(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium); the browser check needs it")
    shown = write_case_report(_report(1.0), tmp_path / "with", pdf=False)["html"]
    empty = write_case_report(_report(0.0), tmp_path / "zero", pdf=False)["html"]
    pixels = _screenshot(chromium, shown, tmp_path / "with.png")
    _screenshot(chromium, empty, tmp_path / "zero.png")
    assert pixels.ndim == 3 and pixels.shape[0] >= 2000 and pixels.shape[1] >= 1100
    assert pixels[..., :3].std() > 20, "blank screenshot"
    assert np.count_nonzero(pixels[..., :3].min(axis=-1) < 100) > 2000, "no dark pixels (text, the MRI)"
    with_overlay, without = _colour_pixels(tmp_path / "with.png"), _colour_pixels(tmp_path / "zero.png")
    print(f"overlay colour pixels: {with_overlay} with the saliency map, {without} with an all-zero map")
    assert with_overlay > without + 1500


def test_a_report_for_a_model_grad_cam_cannot_explain_says_so(tmp_path):
    """--report alone on a net without DF-Net: the report is written without overlay and says why; --saliency
    gradcam asked for explicitly fails the case (ValueError, listed in failures.tsv by predict_cohort)."""
    import torch

    from DMIFLib.casereport.case_outputs import CaseOutputs
    from DMIFLib.inference import CasePrediction
    from DMIFLib.model_file import LoadedModel
    from DMIFLib.nets import build_net, preset_spec
    from DMIFLib.preprocessing.slices import extract_slices

    spec = preset_spec("minet", "tiny")
    spec["config"]["input_shape"] = [SIZE, SIZE]
    net = build_net(spec).eval()
    model = LoadedModel(nets={"t1c": net, "fused": net}, modalities=("t1c",), marker="IDH", cutoff=0.5,
                        settings=PreprocessSettings(slice_size=SIZE), device=torch.device("cpu"))
    image = _volume(3)
    sitk.WriteImage(image, str(tmp_path / "q1_t1c.nii.gz"))
    case = CohortCase(patient_id="Q1", images={"t1c": tmp_path / "q1_t1c.nii.gz"}, roi="ijk:2,8,5,9,30,24")
    stack = extract_slices({"t1c": image}, _box_mask(image)[0], size=SIZE)
    n = stack.n_slices
    prediction = CasePrediction(patient_id="Q1", probabilities={"t1c": 0.6}, p_fused=0.6, prediction=1, cutoff=0.5,
                                n_slices=n, slice_probabilities={"t1c": np.full(n, 0.6), "fused": np.full(n, 0.6)},
                                slice_indices=stack.slice_indices)
    outputs = CaseOutputs(tmp_path / "out", report=True)
    outputs(model, case, stack, prediction)
    page = outputs.written["Q1"]["html"].read_text(encoding="utf-8")
    assert "No saliency map: Grad-CAM needs a DMIF-Net or DF-Net" in page
    assert "no saliency map was computed for this case" in page and "P(IDH) = 0.60 (no interval)" in page
    with pytest.raises(ValueError, match="no DF-Net branch"):
        CaseOutputs(tmp_path / "asked", saliency="gradcam")(model, case, stack, prediction)
