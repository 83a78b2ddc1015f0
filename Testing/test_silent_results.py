"""Issue 16 part 1: inputs that gave a silently wrong result or a traceback now give a right result or a clear
one-line refusal (exit 2). One test (or a few) per finding; each failed before its fix."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
import torch
from test_model_file import tiny_model
from test_training_e2e import TINY_OVERRIDES, make_tiny_cohort, read_tsv

from DMIFLib.cli import main
from DMIFLib.cohort import CohortError, read_cohort, write_cohort
from DMIFLib.model_file import ModelFileError, load_model, model_dict, save_model
from DMIFLib.preprocessing.cohort_runner import case_folder_name, preprocess_cohort
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.io import read_image
from DMIFLib.preprocessing.pipeline import case_slices
from DMIFLib.preprocessing.roi import BoxClippedWarning
from DMIFLib.preprocessing.settings import PreprocessSettings
from DMIFLib.training import TrainingError, train_cohort

REPO = Path(__file__).resolve().parents[1]
FAST = {"register": False, "n4": False, "skull_strip": "none"}
"""Non-default preprocessing settings (and fast: no registration, no N4)."""


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dmif {command}: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def raw_cohort(tmp_path_factory):
    return make_tiny_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def fast_preprocessed(raw_cohort, tmp_path_factory):
    """The tiny cohort preprocessed without registration, N4 and skull stripping."""
    return preprocess_cohort(raw_cohort, tmp_path_factory.mktemp("fast") / "pre", PreprocessSettings(**FAST),
                             qa=False)


# 1. training records the preprocessed cohort's real settings; mixed settings are refused
def test_training_on_a_preprocessed_cohort_records_its_settings(fast_preprocessed, raw_cohort, tmp_path):
    overrides = {k: v for k, v in TINY_OVERRIDES.items() if k != "preprocessing"}
    result = train_cohort(fast_preprocessed, tmp_path / "run", device="cpu", overrides=overrides)
    model = load_model(result.model_path)
    assert (model.settings.register, model.settings.n4, model.settings.skull_strip) == (False, False, "none")
    assert model.settings.slice_size == 32 and model.info["preprocessing_from"] == "cohort provenance"
    # the raw scans, preprocessed as the model says, give the held-out patients the training's probabilities
    out = tmp_path / "raw_pred"
    assert main(["predict", "--cohort", str(raw_cohort), "--model", str(result.model_path), "--out", str(out),
                 "--device", "cpu"]) == 0
    raw = {row["patient_id"]: float(row["p_fused"]) for row in read_tsv(out / "predictions.tsv")}
    for row in read_tsv(result.predictions_path):
        assert raw[row["patient_id"]] == pytest.approx(float(row["p_fused"]), abs=1e-4)


def test_training_refuses_overrides_that_contradict_the_cohort(fast_preprocessed, tmp_path):
    with pytest.raises(TrainingError, match="preprocessed with n4=False"):
        train_cohort(fast_preprocessed, tmp_path / "run", device="cpu",
                     overrides={**TINY_OVERRIDES, "preprocessing": {"n4": True}})
    assert not (tmp_path / "run").exists()


def test_training_refuses_cases_preprocessed_differently(fast_preprocessed, raw_cohort, tmp_path):
    cases = read_cohort(raw_cohort)
    write_cohort(cases[:2], tmp_path / "two.csv")
    other = preprocess_cohort(tmp_path / "two.csv", tmp_path / "other", PreprocessSettings(**FAST, zscore=False),
                              qa=False)
    mixed = read_cohort(fast_preprocessed)[2:] + read_cohort(other)
    for case, csv in [(c, fast_preprocessed) for c in mixed[:-2]] + [(c, other) for c in mixed[-2:]]:
        case.extra["provenance"] = str(csv.parent / case.extra["provenance"])  # absolute: the table moves
    write_cohort(mixed, tmp_path / "mixed.csv")
    with pytest.raises(CohortError, match=r"cases SYN003 and SYN001 were preprocessed with different settings "
                                          r"\(zscore=True vs False\)"):
        train_cohort(tmp_path / "mixed.csv", tmp_path / "run", device="cpu", overrides=TINY_OVERRIDES)
    assert not (tmp_path / "run").exists()


# 2. predict compares a preprocessed cohort's settings with the model's
def test_predict_refuses_a_cohort_preprocessed_with_other_settings(fast_preprocessed, tmp_path, capsys):
    model = save_model(tmp_path / "model.pt", tiny_model())  # default settings: registration, N4, skull strip
    assert main(["predict", "--cohort", str(fast_preprocessed), "--model", str(model), "--out",
                 str(tmp_path / "out"), "--device", "cpu"]) == 2
    line = one_line_error(capsys, "predict")
    assert "(case SYN001): preprocessed with other settings" in line and "n4=False vs True" in line
    assert not (tmp_path / "out").exists()


# 3. truncated or corrupt compressed files
@pytest.mark.parametrize("damage", ["truncated .nii.gz", "flipped byte .nii.gz", "truncated .nii"])
def test_truncated_or_corrupt_image_is_refused(raw_cohort, tmp_path, damage):
    source = read_cohort(raw_cohort)[0].images["t2w"]
    if damage.endswith(".nii"):
        path = tmp_path / "t2w.nii"
        path.write_bytes(gzip.decompress(source.read_bytes()))
    else:
        path = tmp_path / "t2w.nii.gz"
        shutil.copyfile(source, path)
    data = bytearray(path.read_bytes())
    if damage.startswith("flipped"):
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[:len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(PreprocessingError, match="truncated") as error:
        read_image(path, case="P1")
    assert str(error.value).startswith(f"case P1, {path}: ")


def test_plain_nifti_named_nii_gz_is_still_read(raw_cohort, tmp_path):
    source = read_cohort(raw_cohort)[0].images["t2w"]
    (tmp_path / "plain.nii.gz").write_bytes(gzip.decompress(source.read_bytes()))
    assert read_image(tmp_path / "plain.nii.gz").GetSize() == read_image(source).GetSize()


# 4. patient ids that sanitise alike
def test_ids_that_sanitise_alike_get_their_own_case_folders(raw_cohort, tmp_path):
    cases = read_cohort(raw_cohort)[:3]
    for case, new_id in zip(cases, ["P/1", "P_1", "P 1"], strict=True):
        case.patient_id = new_id
    write_cohort(cases, tmp_path / "ids.csv")
    out = preprocess_cohort(tmp_path / "ids.csv", tmp_path / "pre", PreprocessSettings(**FAST), qa=False)
    folders = {c.patient_id: c.images["t1c"].parent for c in read_cohort(out)}
    assert len(set(folders.values())) == 3 and folders["P_1"].name == "P_1"
    for patient_id, folder in folders.items():
        assert json.loads((folder / "provenance.json").read_text())["patient_id"] == patient_id
    assert len({case_folder_name(i) for i in ["P/1", "P_1", "P 1", ".P_1", "P_1-x"]}) == 5


def test_ids_that_differ_only_in_case_are_refused(raw_cohort, tmp_path):
    cases = read_cohort(raw_cohort)[:2]
    cases[0].patient_id, cases[1].patient_id = "Ab1", "aB1"
    write_cohort(cases, tmp_path / "ids.csv")
    with pytest.raises(CohortError, match="'Ab1' and 'aB1' differ only in letter case"):
        preprocess_cohort(tmp_path / "ids.csv", tmp_path / "pre", PreprocessSettings(**FAST), qa=False)
    assert not (tmp_path / "pre").exists()


# 5. modality column typos
def test_modality_column_in_other_case_is_read_and_typo_is_refused(tmp_path):
    table = tmp_path / "cohort.csv"
    table.write_text("Patient_ID,T1C,T2W,Flair,ROI\nP1,a.nii.gz,b.nii.gz,c.nii.gz,ras:0,0,0,9,9,9\n".replace(
        "ras:0,0,0,9,9,9", '"ras:0,0,0,9,9,9"'), encoding="utf-8")
    (case,) = read_cohort(table)
    assert case.modalities == ("t1c", "t2w", "flair") and case.roi == "ras:0,0,0,9,9,9"
    for typo, meant in [("t2", "t2w"), ("T1CE", "t1c"), ("t2_w", "t2w"), ("FLAIR-T2", "flair")]:
        table.write_text(f"patient_id,t1c,{typo},roi\nP1,a.nii.gz,b.nii.gz,r.nii.gz\n", encoding="utf-8")
        with pytest.raises(CohortError, match=f"column '{typo}' looks like modality '{meant}'"):
            read_cohort(table)
    table.write_text("patient_id,t1c,T2W,t2w,roi\nP1,a,b,c,r\n", encoding="utf-8")
    with pytest.raises(CohortError, match="t2w appear more than once"):
        read_cohort(table)


# 6. untrained or non-finite models
@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_zero_or_negative_epochs_are_refused(raw_cohort, tmp_path, capsys, epochs):
    assert main(["train", "--cohort", str(raw_cohort), "--out", str(tmp_path / "run"), "--epochs", epochs]) == 2
    assert f"epochs[stage1] = {epochs}" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


def test_model_with_nan_weights_or_cutoff_is_refused_at_save_and_load(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        next(model.nets["fused"].parameters())[0].fill_(float("nan"))
    with pytest.raises(ModelFileError, match="hold NaN/inf"):
        save_model(tmp_path / "nan.pt", model)
    assert not (tmp_path / "nan.pt").exists()
    torch.save(model_dict(model.nets, model.modalities, model.marker, model.settings, 0.5), tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match=r"fused net's weights .* hold NaN/inf"):
        load_model(tmp_path / "nan.pt")
    good = tiny_model()
    torch.save(model_dict(good.nets, good.modalities, good.marker, good.settings, float("nan")), tmp_path / "c.pt")
    with pytest.raises(ModelFileError, match="cut-off nan is not a probability"):
        load_model(tmp_path / "c.pt")
    good.cutoff = float("nan")
    with pytest.raises(ModelFileError, match="cut-off"):
        save_model(tmp_path / "c2.pt", good)


# 7. boxes too small, far outside, or clipped
def _box_case(raw_cohort, roi: str):
    case = read_cohort(raw_cohort)[0]
    case.roi = roi
    return case


@pytest.mark.parametrize(("roi", "problem"), [
    ("ras:0,0,0,0.01,0.01,0.01", "at least 4 are needed across each slice"),
    ("ijk:0,0,0,5000,5000,5000", "outside the image"),
])
def test_tiny_or_far_off_box_is_refused(raw_cohort, roi, problem):
    case = _box_case(raw_cohort, roi)
    center = sitk.ReadImage(str(case.images["t1c"]))
    if roi.startswith("ras"):  # at the image centre, so that only its size is wrong
        mid = center.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in center.GetSize()])
        case.roi = f"ras:{-mid[0]},{-mid[1]},{mid[2]},0.01,0.01,0.01"
    with pytest.raises(PreprocessingError, match=problem) as error:
        case_slices(case, PreprocessSettings(**FAST, slice_size=32))
    assert str(error.value).startswith(f"case {case.patient_id}: ")


def test_box_clipped_by_the_image_warns(raw_cohort):
    image = sitk.ReadImage(str(read_cohort(raw_cohort)[0].images["t1c"]))
    size = image.GetSize()
    case = _box_case(raw_cohort, f"ijk:{size[0] // 2},{size[1] // 2},{size[2] // 2},{size[0] + 3},{size[1] - 1},"
                                 f"{size[2] - 1}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = case_slices(case, PreprocessSettings(**FAST, slice_size=32))
    assert stack.n_slices > 0
    assert [w for w in caught if issubclass(w.category, BoxClippedWarning) and "reaches beyond" in str(w.message)]


# 8. messages that say what is really wrong
def _with_image(raw_cohort, tmp_path, array_or_spacing):
    case = read_cohort(raw_cohort)[0]
    image = sitk.ReadImage(str(case.images["t2w"]), sitk.sitkFloat32)
    if isinstance(array_or_spacing, tuple):
        image.SetSpacing(array_or_spacing)
        changed = image
    else:
        changed = sitk.GetImageFromArray(np.full(sitk.GetArrayViewFromImage(image).shape, array_or_spacing,
                                                 np.float32))
        changed.CopyInformation(image)
    case.images["t2w"] = tmp_path / "t2w.nrrd"  # NRRD keeps NaN (ITK's NIfTI writer does too, its reader not)
    sitk.WriteImage(changed, str(case.images["t2w"]))
    return case


@pytest.mark.parametrize(("change", "message"), [
    (0.0, "blank: every voxel is 0"), (float("nan"), "NaN/inf voxels"), ((1000.0, 1000.0, 1000.0), "voxel spacing"),
])
def test_blank_nan_or_huge_spacing_image_is_named_as_such(raw_cohort, tmp_path, change, message):
    case = _with_image(raw_cohort, tmp_path, change)
    with pytest.raises(PreprocessingError, match=message) as error:
        case_slices(case, PreprocessSettings(**FAST, slice_size=32))
    assert "overlap" not in str(error.value) and str(case.images["t2w"]) in str(error.value)


def test_unquoted_inline_box_is_parsed_or_explained(tmp_path):
    table = tmp_path / "cohort.csv"
    table.write_text("patient_id,t1c,roi,label\nP1,a.nii.gz,ras:1,2,3,10,10,10,1\n", encoding="utf-8")
    (case,) = read_cohort(table)
    assert case.roi == "ras:1,2,3,10,10,10" and case.label == 1
    table.write_text("patient_id,t1c,roi,label\nP1,a.nii.gz,ras:1,2,3,1\n", encoding="utf-8")
    with pytest.raises(CohortError, match=r"inline ROI 'ras:1' has 1 of 6 numbers.*quote it"):
        read_cohort(table)


# tracebacks where a one-line error is promised
def test_windows_1252_cohort_is_read_and_undecodable_one_is_named(tmp_path):
    table = tmp_path / "cohort.csv"
    table.write_bytes("patient_id,t1c,roi\nRené,a.nii.gz,r.nii.gz\n".encode("cp1252"))
    assert read_cohort(table)[0].patient_id == "René"
    table.write_bytes("patient_id,t1c,roi\nRené,a.nii.gz,r.nii.gz\n".encode("utf-16"))
    assert read_cohort(table)[0].patient_id == "René"
    table.write_bytes(b"patient_id,t1c,roi\nP\x81\x8d,a,r\n")
    with pytest.raises(CohortError, match=f"{table}: not a text file"):
        read_cohort(table)


@pytest.mark.parametrize("device", ["bogus", "cuda:7", "cuda"])
@pytest.mark.parametrize("command", ["predict", "train"])
def test_unusable_device_is_one_line(raw_cohort, tmp_path, capsys, device, command):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = ["--model", str(save_model(tmp_path / "m.pt", tiny_model()))] if command == "predict" else []
    assert main([command, "--cohort", str(raw_cohort), "--out", str(tmp_path / "out"), "--device", device,
                 *args]) == 2
    assert f"device '{device}'" in one_line_error(capsys, command)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides", ['{"epochs": "abc"}', '{"lr": -1}', '{"batch_size": 0}',
                                       '{"test_fraction": 2}', '{"preprocessing": {"n4": "x"}}',
                                       '{"preprocessing": {"margin_mm": "5"}}'])
def test_bad_override_values_are_one_line(raw_cohort, tmp_path, capsys, overrides):
    assert main(["train", "--cohort", str(raw_cohort), "--out", str(tmp_path / "run"), "--overrides",
                 overrides]) == 2
    assert "settings" in one_line_error(capsys, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "100"])
def test_synth_bad_scale_is_one_line_and_writes_nothing(tmp_path, capsys, scale):
    assert main(["synth", "--out", str(tmp_path / "s"), "--patients", "2", "--scale", scale]) == 2
    assert "scale" in one_line_error(capsys, "synth")
    assert not (tmp_path / "s").exists()


def test_unreadable_input_files_are_one_line(raw_cohort):
    """As another user (root reads everything): a cohort table and an image without read permission."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as another user")
    folder = Path(tempfile.mkdtemp(prefix="dmif-perm-"))  # pytest's tmp_path lies in a 0700 folder
    try:
        folder.chmod(0o777)  # the other user may write here: a refused run must still leave no folder
        shutil.copytree(raw_cohort.parent, folder / "c")
        secret_table = folder / "c" / "secret.csv"
        shutil.copyfile(folder / "c" / "cohort.csv", secret_table)
        secret_table.chmod(0o600)
        first = read_cohort(folder / "c" / "cohort.csv")[0]
        first.images["t2w"].chmod(0o600)
        base = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "DMIFLib"]
        for table, what in [(secret_table, f"{secret_table}: cannot read the cohort file"),
                            (folder / "c" / "cohort.csv", f"case {first.patient_id}: t2w {first.images['t2w']}: "
                                                          "Permission denied")]:
            done = subprocess.run([*base, "train", "--cohort", str(table), "--out", str(folder / "run"),
                                   "--overrides", json.dumps(TINY_OVERRIDES)], capture_output=True, text=True,
                                  timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(folder),
                                                    "MPLCONFIGDIR": "/tmp"})
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
            assert what in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert not (folder / "run").exists()
    finally:
        shutil.rmtree(folder)


def test_evaluate_help_prints_one_percent_sign(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "95% CI" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "95% CI" in " ".join(out.split()) and "%%" not in out


def test_batch_exits_2_for_user_errors(raw_cohort, tmp_path, capsys):
    from DMIFLib.mrml.batch import main as batch_main

    table = tmp_path / "bad.csv"
    table.write_text("patient_id,t1c,roi,label\nP1,a.nii.gz,r.nii.gz,7\n", encoding="utf-8")
    model = save_model(tmp_path / "m.pt", tiny_model())
    assert batch_main([str(table), str(model), str(tmp_path / "out")]) == 2
    assert batch_main([str(raw_cohort), str(tmp_path / "missing.pt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("DMIFBatch: error: ") and "label '7' is not 0 or 1" in err[0]
    assert "model file not found" in err[1] and "Traceback" not in "".join(err)


def test_unnamed_trailing_columns_are_ignored(tmp_path):
    table = tmp_path / "cohort.csv"
    table.write_text("patient_id,t1c,roi,label,,\nP1,a.nii.gz,r.nii.gz,1,,\n", encoding="utf-8")
    (case,) = read_cohort(table)
    assert case.label == 1 and case.extra == {}
