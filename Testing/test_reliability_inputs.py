"""Reliability suite: a table of bad inputs fed to every command through ``DMIFLib.cli.main``.

For each row the command must refuse with exit code 2 and exactly one stderr line that starts with
``dmif <command>:`` and names the file or case, no traceback, no output folder, and the inputs unchanged (the
whole input tree is hashed before and after). Fixtures are tiny and built once per module; no row trains a net.
Per-case problems go to ``dmif train`` with the bad case first (train refuses a cohort with a bad case before
it writes anything; ``predict`` and ``preprocess`` report them per case instead, see docs/refusals.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
import torch
from test_model_file import tiny_model
from test_training_e2e import TINY_OVERRIDES, make_tiny_cohort

from DMIFLib.cli import main
from DMIFLib.cohort import read_cohort, write_cohort
from DMIFLib.model_file import model_dict, save_model
from DMIFLib.preprocessing.cohort_runner import preprocess_cohort
from DMIFLib.preprocessing.settings import PreprocessSettings

FAST = {"register": False, "n4": False, "skull_strip": "none"}


@dataclass
class World:
    """The shared good inputs (never changed) and a scratch folder for a row's bad inputs."""

    cohort: Path          # raw tiny cohort (8 patients, labels)
    pre: Path             # 2 of its patients preprocessed with FAST settings
    model: Path           # a tiny model with default settings, 32×32 slices
    predictions: Path     # a predictions.tsv for the cohort
    bad: Path             # this row's scratch folder (inputs the row writes)
    out: Path             # the output folder a refusal must not create


def tree_digest(*roots: Path) -> str:
    """SHA-256 over every file's relative path, bytes and mode under ``roots``."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(oct(path.stat().st_mode).encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    base = tmp_path_factory.mktemp("reliability")
    write_cohort(read_cohort(cohort)[:2], base / "two.csv")
    pre = preprocess_cohort(base / "two.csv", base / "pre", PreprocessSettings(**FAST), qa=False)
    model = save_model(base / "model.pt", tiny_model())
    ids = [c.patient_id for c in read_cohort(cohort)]
    lines = ["patient_id\tp_t1c\tp_t2w\tp_fused\tprediction\tcutoff\tn_slices"]
    lines += [f"{pid}\t0.{i}\t0.{i}\t0.{i}\t{int(i > 4)}\t0.5\t3" for i, pid in enumerate(ids, start=1)]
    (base / "predictions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cohort, pre, model, base / "predictions.tsv"


@pytest.fixture
def world(shared, tmp_path):
    cohort, pre, model, predictions = shared
    (tmp_path / "bad").mkdir()
    return World(cohort, pre, model, predictions, tmp_path / "bad", tmp_path / "out")


# -- bad inputs: each writes into world.bad and returns (argv, texts the error line must contain) ---------------
def _table(w: World, text: str | bytes, name: str = "cohort.csv") -> Path:
    path = w.bad / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _cohort_with_first_case(w: World, change: Callable[[object], None]) -> tuple[Path, str]:
    """A copy of the raw cohort (absolute paths) whose first case ``change`` altered; returns (csv, patient_id)."""
    cases = read_cohort(w.cohort)
    change(cases[0])
    return write_cohort(cases, w.bad / "cohort.csv"), cases[0].patient_id


def _image_file(w: World, case, array_change=None, spacing=None, name="t2w.nrrd") -> Path:
    image = sitk.ReadImage(str(case.images["t2w"]), sitk.sitkFloat32)
    if array_change is not None:
        changed = sitk.GetImageFromArray(array_change(sitk.GetArrayFromImage(image)).astype(np.float32))
        changed.CopyInformation(image)
        image = changed
    if spacing is not None:
        image.SetSpacing(spacing)
    path = w.bad / name
    sitk.WriteImage(image, str(path))
    return path


def _train(w: World, csv: Path, *extra: str) -> list[str]:
    return ["train", "--cohort", str(csv), "--out", str(w.out), "--device", "cpu",
            "--overrides", json.dumps(TINY_OVERRIDES), *extra]


def truncated_t2w(w: World):
    def change(case):
        data = case.images["t2w"].read_bytes()
        (w.bad / "t2w.nii.gz").write_bytes(data[:len(data) // 2])
        case.images["t2w"] = w.bad / "t2w.nii.gz"
    csv, pid = _cohort_with_first_case(w, change)
    return _train(w, csv), [f"case {pid}", str(w.bad / "t2w.nii.gz"), "truncated"]


def blank_t2w(w: World):
    def change(case):
        case.images["t2w"] = _image_file(w, case, array_change=np.zeros_like)
    csv, pid = _cohort_with_first_case(w, change)
    return _train(w, csv), [f"case {pid}", "t2w.nrrd", "blank"]


def huge_spacing(w: World):
    def change(case):
        case.images["t2w"] = _image_file(w, case, spacing=(1000.0, 1000.0, 1000.0))
    csv, pid = _cohort_with_first_case(w, change)
    return _train(w, csv), [f"case {pid}", "t2w.nrrd", "voxel spacing"]


def tiny_box(w: World):
    def change(case):
        image = sitk.ReadImage(str(case.images["t1c"]))
        mid = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
        case.roi = f"ras:{-mid[0]:.2f},{-mid[1]:.2f},{mid[2]:.2f},0.01,0.01,0.01"
    csv, pid = _cohort_with_first_case(w, change)
    return _train(w, csv), [f"case {pid}", "at least 4"]


def far_box(w: World):
    csv, pid = _cohort_with_first_case(w, lambda case: setattr(case, "roi", "ijk:0,0,0,4000,4000,4000"))
    return _train(w, csv), [f"case {pid}", "outside the image"]


def missing_image(w: World):
    csv, pid = _cohort_with_first_case(w, lambda case: case.images.update(t2w=w.bad / "gone.nii.gz"))
    return _train(w, csv), [f"case {pid}", "gone.nii.gz", "not found"]


def undecodable_cohort(w: World):
    return _train(w, _table(w, b"patient_id,t1c,roi,label\nP\x81\x8d,a,r,1\n")), ["cohort.csv", "not a text file"]


def label_typo(w: World):
    csv = _table(w, "patient_id,t1c,roi,label\nP1,a.nii.gz,r.nii.gz,yes\n")
    return _train(w, csv), ["cohort.csv, line 2 (P1)", "label 'yes'"]


def modality_typo(w: World):
    csv = _table(w, "patient_id,t1c,T2,roi,label\nP1,a.nii.gz,b.nii.gz,r.nii.gz,1\n")
    return _train(w, csv), ["cohort.csv", "column 'T2' looks like modality 't2w'"]


def unquoted_box(w: World):
    csv = _table(w, "patient_id,t1c,roi,label,split\nP1,a.nii.gz,ras:1,2,3,4,1,train\n")
    return _train(w, csv), ["cohort.csv, line 2 (P1)", "quote it"]


def epochs_zero(w: World):
    return _train(w, w.cohort, "--epochs", "0"), ["epochs[stage1] = 0"]


def epochs_text(w: World):
    argv = ["train", "--cohort", str(w.cohort), "--out", str(w.out), "--overrides", '{"epochs": "abc"}']
    return argv, ["epochs[stage1] = 'abc'"]


def train_bogus_device(w: World):
    return _train(w, w.cohort, "--device", "bogus"), ["device 'bogus'"]


def train_contradicts_cohort(w: World):
    argv = ["train", "--cohort", str(w.pre), "--out", str(w.out), "--overrides",
            json.dumps({**TINY_OVERRIDES, "preprocessing": {"n4": True}})]
    return argv, [str(w.pre), "preprocessed with n4=False"]


def _predict(w: World, csv: Path, model: Path | None = None, device: str = "cpu") -> list[str]:
    return ["predict", "--cohort", str(csv), "--model", str(model or w.model), "--out", str(w.out),
            "--device", device]


def predict_bogus_device(w: World):
    return _predict(w, w.cohort, device="bogus"), ["device 'bogus'"]


def predict_cuda_without_cuda(w: World):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return _predict(w, w.cohort, device="cuda"), ["device 'cuda'", "no CUDA"]


def predict_nan_model(w: World):
    model = tiny_model()
    with torch.no_grad():
        next(model.nets["t1c"].parameters()).fill_(float("nan"))
    torch.save(model_dict(model.nets, model.modalities, model.marker, model.settings, 0.5), w.bad / "nan.pt")
    return _predict(w, w.cohort, w.bad / "nan.pt"), ["nan.pt", "NaN/inf"]


def predict_nan_cutoff(w: World):
    model = tiny_model()
    torch.save(model_dict(model.nets, model.modalities, model.marker, model.settings, float("nan")),
               w.bad / "cut.pt")
    return _predict(w, w.cohort, w.bad / "cut.pt"), ["cut.pt", "cut-off nan"]


def predict_text_as_model(w: World):
    return _predict(w, w.cohort, _table(w, "not a model", "model.pt")), ["model.pt", "not a readable model file"]


def predict_other_settings(w: World):
    return _predict(w, w.pre), [str(w.pre), "preprocessed with other settings", "n4=False vs True"]


def predict_missing_modality(w: World):
    csv = _table(w, "patient_id,t1c,roi\nP1,a.nii.gz,r.nii.gz\n")
    return _predict(w, csv), ["cohort.csv", "column(s) t2w missing"]


def _preprocess(w: World, csv: Path, *extra: str) -> list[str]:
    return ["preprocess", "--cohort", str(csv), "--out", str(w.out), "--no-qa", *extra]


def preprocess_case_collision(w: World):
    cases = read_cohort(w.cohort)[:2]
    cases[0].patient_id, cases[1].patient_id = "pat1", "PAT1"
    return _preprocess(w, write_cohort(cases, w.bad / "cohort.csv")), ["'pat1' and 'PAT1' differ only"]


def preprocess_undecodable(w: World):
    return _preprocess(w, _table(w, b"patient_id,t1c,roi\n\xff\x81,a,r\n")), ["cohort.csv", "not a text file"]


def preprocess_bad_settings(w: World):
    settings = _table(w, '{"n4": true, "n4_shrnk": 2}', "settings.json")
    return _preprocess(w, w.cohort, "--settings", str(settings)), ["n4_shrnk"]


def evaluate_missing_predictions(w: World):
    argv = ["evaluate", "--predictions", str(w.bad / "none.tsv"), "--cohort", str(w.cohort), "--out", str(w.out)]
    return argv, ["none.tsv", "not found"]


def evaluate_undecodable_cohort(w: World):
    csv = _table(w, b"patient_id,t1c,roi,label\n\x81\x8d,a,r,1\n")
    argv = ["evaluate", "--predictions", str(w.predictions), "--cohort", str(csv), "--out", str(w.out)]
    return argv, ["cohort.csv", "not a text file"]


def synth_scale_zero(w: World):
    return ["synth", "--out", str(w.out), "--patients", "2", "--scale", "0"], ["scale 0.0"]


def synth_one_patient(w: World):
    return ["synth", "--out", str(w.out), "--patients", "1"], ["at least 2 patients"]


def report_missing_run(w: World):
    return ["report", "--run", str(w.bad / "no-run"), "--out", str(w.out / "r.html")], ["no-run"]


def compare_bogus_device(w: World):
    return ["compare", "--cohort", str(w.cohort), "--out", str(w.out), "--device", "bogus"], ["device 'bogus'"]


def compare_label_typo(w: World):
    csv = _table(w, "patient_id,t1c,t2w,roi,label\nP1,a.nii.gz,b.nii.gz,r.nii.gz,2\n")
    return ["compare", "--cohort", str(csv), "--out", str(w.out)], ["line 2 (P1)", "label '2'"]


ROWS = [truncated_t2w, blank_t2w, huge_spacing, tiny_box, far_box, missing_image, undecodable_cohort, label_typo,
        modality_typo, unquoted_box, epochs_zero, epochs_text, train_bogus_device, train_contradicts_cohort,
        predict_bogus_device, predict_cuda_without_cuda, predict_nan_model, predict_nan_cutoff,
        predict_text_as_model, predict_other_settings, predict_missing_modality, preprocess_case_collision,
        preprocess_undecodable, preprocess_bad_settings, evaluate_missing_predictions, evaluate_undecodable_cohort,
        synth_scale_zero, synth_one_patient, report_missing_run, compare_bogus_device, compare_label_typo]


@pytest.mark.parametrize("row", ROWS, ids=[r.__name__ for r in ROWS])
def test_bad_input_is_refused_in_one_line(world, capsys, row):
    argv, expected = row(world)
    shared_roots = [world.cohort.parent, world.pre.parent, world.model.parent]
    before = tree_digest(world.bad, *shared_roots)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err + captured.out
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith(f"dmif {argv[0]}: "), captured.err
    for text in expected:
        assert text in lines[0], lines[0]
    assert tree_digest(world.bad, *shared_roots) == before, "an input file changed"
    assert not world.out.exists(), f"partial output: {sorted(p.name for p in world.out.rglob('*'))}"


def test_dmif_entry_point_refuses_without_traceback(tmp_path):
    """The installed entry point (a real process): the same one-line contract as ``main``."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "DMIFLib", "synth", "--out", str(tmp_path / "s"), "--scale", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_console_that_cannot_encode_the_output_does_not_end_the_command(tmp_path):
    """`dmif` prints "→", "–" and the user's own paths; a pipe or console in ASCII (or cp1252 on Windows) must get
    them escaped, not a UnicodeEncodeError traceback after the work is done."""
    import os
    import subprocess
    import sys

    out = tmp_path / "cohort→1"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "DMIFLib", "synth", "--out", str(out), "--patients", "2",
                           "--scale", "0.25"], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode("ascii", "replace")
    assert done.stdout.decode("ascii").strip() == str(out / "cohort.csv").replace("→", "\\u2192")
    assert (out / "cohort.csv").is_file()
