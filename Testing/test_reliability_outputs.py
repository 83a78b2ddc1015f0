"""Nothing lost: the output-folder rule of every command (DMIFLib/run_folder.py), the folder lock, failures files,
the early writability check, Ctrl-C, and the permissions of preprocessed case folders.

Every command runs as a real ``dmif`` process (or ``DMIFBatch.py``) on a tiny synthetic cohort and a tiny model.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from DMIFLib.run_folder import LOCK_NAME, MANIFEST_NAME, FolderLock, OutputFolderError, run_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = {"net_width": "tiny", "epochs": 1, "slice_size": 32, "mi_scales": [2], "max_slices": 4, "batch_size": 16,
        "preprocessing": {"register": False, "n4": False, "skull_strip": "none"}}
FAST_PREPROCESS = ["--no-register", "--no-n4", "--skull-strip", "none", "--no-qa"]


def dmif_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "DMIFLib", *map(str, args)]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def dmif(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(dmif_command(*args), capture_output=True, text=True, timeout=timeout, env=environment(),
                          cwd=ROOT)


def batch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "DMIFBatch.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=environment(), cwd=ROOT)


def folder_state(folder: Path) -> dict[str, str]:
    """Every file (hidden ones too) and folder under ``folder`` -> content hash (files) or "dir"."""
    state = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        state[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def assert_one_line_error(done: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def subset_cohort(cohort: Path, ids: list[str], path: Path, broken: dict[str, str] | None = None) -> Path:
    """A cohort CSV of ``ids`` with absolute paths; ``broken`` maps a patient to a replacement t2w path."""
    from DMIFLib.cohort import read_cohort, write_cohort

    cases = [c for c in read_cohort(cohort) if c.patient_id in ids]
    for case in cases:
        if broken and case.patient_id in broken:
            case.images["t2w"] = Path(broken[case.patient_id])
    return write_cohort(cases, path)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from DMIFLib.synth import synthesize_cohort

    return synthesize_cohort(tmp_path_factory.mktemp("synth") / "cohort", 6, seed=1, scale=0.5)


@pytest.fixture(scope="module")
def train_run(cohort, tmp_path_factory) -> Path:
    """A finished ``dmif train`` run folder (tiny nets)."""
    out = tmp_path_factory.mktemp("train") / "run"
    done = dmif("train", "--cohort", cohort, "--out", out, "--device", "cpu", "--overrides", json.dumps(TINY))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def cohort_predictions(cohort, train_run, tmp_path_factory) -> Path:
    """predictions.tsv of all six patients (three of each class: the DeLong table is written)."""
    out = tmp_path_factory.mktemp("predictions") / "out"
    done = dmif("predict", "--cohort", cohort, "--model", train_run / "model.pt", "--out", out, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out / "predictions.tsv"


@pytest.fixture(scope="module")
def other_run(train_run, tmp_path_factory) -> Path:
    """A folder holding an earlier run (the training run) and a user's own file."""
    import shutil

    folder = tmp_path_factory.mktemp("other") / "run"
    shutil.copytree(train_run, folder)
    (folder / "my_notes.txt").write_text("the user's own file\n", encoding="utf-8")
    return folder


# -- the rule: a folder holding another run is refused unless --overwrite --------------------------------------

def test_run_folder_rule(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), run_folder(out, "predict"):  # fails before writing: leaves nothing
        raise RuntimeError("bad input")
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt), run_folder(out, "synth", resume=True, key={"seed": 1}):
        (out / "a.tsv").write_text("1\n", encoding="utf-8")
        raise KeyboardInterrupt
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["status"] == "incomplete" and manifest["outputs"] == ["a.tsv"]
    with run_folder(out, "synth", resume=True, key={"seed": 1}) as run:  # the same run continues
        assert run.continued
        (out / "b.tsv").write_text("2\n", encoding="utf-8")
    assert json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["outputs"] == ["a.tsv", "b.tsv"]
    (out / "mine.txt").write_text("the user's\n", encoding="utf-8")
    before = folder_state(out)
    for command, key in (("synth", {"seed": 2}), ("predict", None)):
        with pytest.raises(OutputFolderError, match="already holds a run of dmif synth; pass --overwrite"), \
                run_folder(out, command, resume=True, key=key):
            pass
        assert folder_state(out) == before
    with run_folder(out, "predict", overwrite=True, protect=[out / "b.tsv"]) as run:
        assert run.removed == ["a.tsv"]
        (out / "c.tsv").write_text("3\n", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "b.tsv", "c.tsv", "mine.txt"]
    assert json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["outputs"] == ["c.tsv"]


def refusal_commands(cohort: Path, model: Path, predictions: Path, out: Path) -> dict[str, list[str]]:
    return {
        "preprocess": ["preprocess", "--cohort", cohort, "--out", out, *FAST_PREPROCESS],
        "train": ["train", "--cohort", cohort, "--out", out, "--device", "cpu"],
        "predict": ["predict", "--cohort", cohort, "--model", model, "--out", out, "--device", "cpu"],
        "evaluate": ["evaluate", "--predictions", predictions, "--cohort", cohort, "--out", out, "--n-boot", "10"],
        "compare": ["compare", "--cohort", cohort, "--out", out, "--device", "cpu"],
        "synth": ["synth", "--out", out, "--patients", "2", "--scale", "0.5"],
        "demo": ["demo", "--out", out, "--patients", "4", "--scale", "0.5", "--device", "cpu"],
    }


@pytest.mark.parametrize("command", ["preprocess", "train", "predict", "evaluate", "compare", "synth", "demo",
                                     "batch"])
def test_a_folder_holding_another_run_is_refused_and_left_unchanged(command, cohort, train_run, other_run,
                                                                    tmp_path):
    import shutil

    model = tmp_path / "model.pt"
    shutil.copyfile(train_run / "model.pt", model)
    predictions = tmp_path / "predictions.tsv"
    shutil.copyfile(train_run / "predictions.tsv", predictions)
    before = folder_state(other_run)
    if command == "batch":
        done = batch(cohort, model, other_run, "--device", "cpu")
    else:
        done = dmif(*refusal_commands(cohort, model, predictions, other_run)[command])
    assert_one_line_error(done, 2, str(other_run), "--overwrite", "already holds a run of dmif train")
    assert folder_state(other_run) == before


def test_train_into_its_own_finished_run_names_resume_and_overwrite(cohort, train_run):
    before = folder_state(train_run)
    done = dmif("train", "--cohort", cohort, "--out", train_run, "--device", "cpu")
    assert_one_line_error(done, 2, "--resume", "--overwrite")
    assert folder_state(train_run) == before


def test_predict_overwrite_replaces_a_training_run_and_keeps_user_files_and_inputs(cohort, train_run, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(train_run, folder)
    (folder / "my_notes.txt").write_text("mine\n", encoding="utf-8")
    done = dmif("predict", "--cohort", cohort, "--model", folder / "model.pt", "--out", folder, "--device", "cpu",
                "--overwrite")
    assert done.returncode == 0, done.stderr
    left = {p.name for p in folder.iterdir()}
    # the training run's other outputs are gone; the model (an input of this run) and the user's file stay
    assert left == {"predictions.tsv", "slice_predictions.tsv", "failures.tsv", "model.pt", "my_notes.txt",
                    MANIFEST_NAME}
    assert len(read_tsv(folder / "predictions.tsv")) == 6
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["command"] == "predict" and manifest["status"] == "complete"
    assert manifest["outputs"] == ["failures.tsv", "predictions.tsv", "slice_predictions.tsv"]
    # predicting into it again replaces nothing silently
    again = dmif("predict", "--cohort", cohort, "--model", folder / "model.pt", "--out", folder, "--device", "cpu")
    assert_one_line_error(again, 2, "already holds a run of dmif predict", "--overwrite")


def test_evaluate_overwrite_leaves_no_stale_delong_table(cohort, cohort_predictions, tmp_path):
    out = tmp_path / "evaluation"
    first = dmif("evaluate", "--predictions", cohort_predictions, "--cohort", cohort, "--out", out, "--cutoff", "0.5",
                 "--n-boot", "10")
    assert first.returncode == 0, first.stderr
    assert (out / "delong_tests.tsv").is_file()
    fused_only = tmp_path / "fused" / "predictions.tsv"  # one score column: no DeLong table
    fused_only.parent.mkdir()
    rows = read_tsv(cohort_predictions)
    columns = ["patient_id", "p_fused", "prediction", "cutoff", "n_slices"]
    fused_only.write_text("\n".join(["\t".join(columns), *("\t".join(r[c] for c in columns) for r in rows)]) + "\n",
                          encoding="utf-8")
    before = folder_state(out)
    refused = dmif("evaluate", "--predictions", fused_only, "--cohort", cohort, "--out", out, "--cutoff", "0.5",
                   "--n-boot", "10")
    assert_one_line_error(refused, 2, str(out), "--overwrite")
    assert folder_state(out) == before
    done = dmif("evaluate", "--predictions", fused_only, "--cohort", cohort, "--out", out, "--cutoff", "0.5",
                "--n-boot", "10", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert not (out / "delong_tests.tsv").exists()
    assert [r["model"] for r in read_tsv(out / "table2_metrics.tsv") if r["level"] == "patient"] == ["DMIF-Net"]


def test_preprocess_new_cohort_is_refused_same_cohort_continues_overwrite_replaces(cohort, tmp_path):
    first = subset_cohort(cohort, ["SYN001", "SYN002"], tmp_path / "first.csv")
    second = subset_cohort(cohort, ["SYN003"], tmp_path / "second.csv")
    out = tmp_path / "prep"
    assert dmif("preprocess", "--cohort", first, "--out", out, *FAST_PREPROCESS).returncode == 0
    before = folder_state(out)
    refused = dmif("preprocess", "--cohort", second, "--out", out, *FAST_PREPROCESS)
    assert_one_line_error(refused, 2, str(out), "--overwrite", "a run of dmif preprocess")
    assert folder_state(out) == before
    again = dmif("preprocess", "--cohort", first, "--out", out, *FAST_PREPROCESS)  # skip-finished-cases resume
    assert again.returncode == 0 and again.stderr.count("cached") == 2, again.stderr
    replaced = dmif("preprocess", "--cohort", second, "--out", out, *FAST_PREPROCESS, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["SYN003"]
    assert [r["patient_id"] for r in csv.DictReader(open(out / "cohort.csv", encoding="utf-8"))] == ["SYN003"]


def test_synth_overwrite_with_fewer_patients_removes_the_old_patients(tmp_path):
    out = tmp_path / "synth"
    assert dmif("synth", "--out", out, "--patients", "3", "--scale", "0.5").returncode == 0
    done = dmif("synth", "--out", out, "--patients", "2", "--scale", "0.5", "--seed", "4", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["SYN001", "SYN002", "cohort.csv"]


def test_report_refuses_an_existing_report_and_is_removed_with_its_run(train_run, tmp_path):
    out = tmp_path / "report.html"
    assert dmif("report", "--run", train_run, "--out", out).returncode == 0
    before = out.read_bytes()
    assert_one_line_error(dmif("report", "--run", train_run, "--out", out), 2, str(out), "--overwrite")
    assert out.read_bytes() == before
    assert dmif("report", "--run", train_run, "--out", out, "--overwrite").returncode == 0


def test_train_overwrite_removes_the_earlier_runs_report(cohort, train_run, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(train_run, folder)
    assert dmif("report", "--run", folder).returncode == 0  # RUN/report.html joins the run's outputs
    assert "report.html" in json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))["outputs"]
    (folder / "my_notes.txt").write_text("mine\n", encoding="utf-8")
    done = dmif("train", "--cohort", cohort, "--out", folder, "--device", "cpu", "--overrides", json.dumps(TINY),
                "--overwrite")
    assert done.returncode == 0, done.stderr
    assert not (folder / "report.html").exists() and (folder / "my_notes.txt").is_file()
    assert (folder / "model.pt").is_file()


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from DMIFLib.run_folder import run_folder
    with run_folder(sys.argv[1], "preprocess", resume=True, key={"cohort": "a"}):
        (Path(sys.argv[1]) / "cases").mkdir()
        (Path(sys.argv[1]) / "cases" / "P1.txt").write_text("done", encoding="utf-8")
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_run_killed_with_sigkill_is_continued_or_replaced_but_not_mixed(tmp_path):
    out = tmp_path / "prep"
    out.mkdir()
    (out / "mine.txt").write_text("the user's\n", encoding="utf-8")
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out)], env=environment())
    assert killed.returncode == -signal.SIGKILL
    before = folder_state(out)
    assert before.pop(LOCK_NAME)  # left by the killed process; the next run's lock takes it over and removes it
    with pytest.raises(OutputFolderError, match="a run of dmif preprocess, unfinished; pass --overwrite"), \
            run_folder(out, "preprocess", resume=True, key={"cohort": "b"}):
        pass
    assert folder_state(out) == before
    with run_folder(out, "preprocess", resume=True, key={"cohort": "a"}) as run:  # the same run continues
        assert run.continued and run.previous["outputs"] == ["cases"]
    with run_folder(out, "preprocess", resume=True, key={"cohort": "b"}, overwrite=True) as run:
        assert run.removed == ["cases"]
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


# -- the lock ----------------------------------------------------------------------------------------------------

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from DMIFLib.run_folder import run_folder
    with run_folder(sys.argv[1], "train"):
        print("locked", flush=True)
        time.sleep(600)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True,
                              env=environment())
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_folder_in_use_is_refused_and_a_dead_holder_does_not_block(cohort, tmp_path):
    folder = tmp_path / "busy"
    holder = hold_lock(folder)
    try:
        done = dmif("train", "--cohort", cohort, "--out", folder, "--device", "cpu")
        assert_one_line_error(done, 2, str(folder), "in use by another dmif run", f"process {holder.pid}")
        with pytest.raises(OutputFolderError, match="in use"), run_folder(folder, "predict"):
            pass
    finally:
        holder.kill()  # like kill -9: the OS drops the lock with the process
        holder.wait()
    with run_folder(folder, "predict", overwrite=True) as run:
        assert run.path == folder
    assert not (folder / LOCK_NAME).exists()


def test_fallback_lock_file_of_a_dead_process_is_taken_over(tmp_path, monkeypatch):
    import socket

    # a file system that cannot lock: the fallback is an O_EXCL lock file holding "pid host"
    monkeypatch.setattr(FolderLock, "_os_lock", lambda self, fd: None)
    lock = FolderLock(tmp_path)
    lock.acquire()
    assert (tmp_path / LOCK_NAME).read_text(encoding="utf-8").split()[0] == str(os.getpid())
    with pytest.raises(OutputFolderError, match=f"process {os.getpid()}.*delete"):
        FolderLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()}\n", encoding="utf-8")  # left by a crash
    with run_folder(tmp_path, "predict"):
        assert (tmp_path / LOCK_NAME).read_text(encoding="utf-8").split()[0] == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_train_holds_the_lock_and_ctrl_c_names_the_exact_resume_command(cohort, tmp_path):
    out = tmp_path / "run with space"
    slow = {**TINY, "epochs": 12}  # 84 epochs in all: the run is still going when the first checkpoint appears
    train = subprocess.Popen(dmif_command("train", "--cohort", cohort, "--out", out, "--device", "cpu",
                                          "--overrides", json.dumps(slow)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(), cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").is_file():
            assert train.poll() is None and time.monotonic() < deadline, train.communicate()[1]
            time.sleep(0.2)
        second = dmif("train", "--cohort", cohort, "--out", out, "--device", "cpu", "--resume")
        assert_one_line_error(second, 2, "in use by another dmif run")
        train.send_signal(signal.SIGINT)
        _, stderr = train.communicate(timeout=120)
    finally:
        if train.poll() is None:
            train.kill()
    assert train.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("dmif train: interrupted; to continue run: "), stderr
    words = shlex.split(line.split("to continue run: ", 1)[1])
    assert words == ["dmif", "train", "--cohort", str(cohort), "--out", str(out), "--resume", "--device", "cpu"]
    resumed = dmif(*words[1:])  # the printed command, as printed
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "model.pt").is_file() and not (out / "checkpoint.pt").exists()
    assert json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["status"] == "complete"


# -- one bad case ------------------------------------------------------------------------------------------------

@pytest.fixture
def cohort_with_a_bad_case(cohort, tmp_path) -> Path:
    bad = tmp_path / "broken_t2w.nii.gz"
    bad.write_bytes(b"this is not an image")
    return subset_cohort(cohort, ["SYN001", "SYN002", "SYN003"], tmp_path / "bad.csv", {"SYN002": str(bad)})


def test_predict_keeps_the_good_cases_and_lists_the_bad_one(cohort_with_a_bad_case, train_run, tmp_path):
    out = tmp_path / "pred"
    done = dmif("predict", "--cohort", cohort_with_a_bad_case, "--model", train_run / "model.pt", "--out", out,
                "--device", "cpu")
    assert done.returncode == 1 and "1 case(s) failed" in done.stderr and "Traceback" not in done.stderr
    assert [r["patient_id"] for r in read_tsv(out / "predictions.tsv")] == ["SYN001", "SYN003"]
    failures = read_tsv(out / "failures.tsv")
    assert [r["patient_id"] for r in failures] == ["SYN002"] and "broken_t2w.nii.gz" in failures[0]["problem"]


def test_batch_keeps_the_good_cases_and_lists_the_bad_one(cohort_with_a_bad_case, train_run, tmp_path):
    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    out = tmp_path / "batch"
    done = batch(cohort_with_a_bad_case, train_run / "model.pt", out, "--device", "cpu")
    assert done.returncode == 1 and "1 case(s) failed" in done.stderr and "Traceback" not in done.stderr
    assert [r["patient_id"] for r in read_tsv(out / "predictions.tsv")] == ["SYN001", "SYN003"]
    assert [r["patient_id"] for r in read_tsv(out / "failures.tsv")] == ["SYN002"]
    assert (out / "DMIF_predictions.mrml").is_file()


def test_train_names_every_bad_case_before_any_work(cohort, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    bad = subset_cohort(cohort, ["SYN001", "SYN002", "SYN003", "SYN004"], tmp_path / "bad.csv",
                        {"SYN002": str(tmp_path / "missing.nii.gz"), "SYN004": str(broken)})
    out = tmp_path / "run"
    done = dmif("train", "--cohort", bad, "--out", out, "--device", "cpu", "--overrides", json.dumps(TINY))
    line = assert_one_line_error(done, 2, "case SYN002", "missing.nii.gz", "case SYN004", "broken.nii.gz")
    assert "SYN001" not in line and "slices:" not in done.stdout
    assert not out.exists()  # refused before anything was written


def test_slice_extraction_names_every_failed_case_and_caches_the_others(cohort, tmp_path):
    from DMIFLib.cohort import read_cohort
    from DMIFLib.preprocessing.errors import PreprocessingError
    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.training.data import load_cohort_slices

    cases = read_cohort(cohort)[:3]
    for case in (cases[0], cases[2]):  # readable files, but a box far outside the head
        case.roi = "ras:5000,5000,5000,10,10,10"
    settings = PreprocessSettings.from_dict({**PreprocessSettings().to_dict(), "register": False, "n4": False,
                                             "skull_strip": "none", "slice_size": 32})
    with pytest.raises(PreprocessingError, match=r"2 of 3 cases failed.*case SYN001.*case SYN003") as error:
        load_cohort_slices(cases, settings, cache_dir=tmp_path / "slices")
    assert len(str(error.value).splitlines()) == 1
    assert len(list((tmp_path / "slices").glob("SYN002-*.npz"))) == 1


# -- an output folder that cannot be written -----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "predict", "synth", "evaluate", "preprocess", "compare"])
def test_an_unwritable_out_is_refused_before_the_work(command, cohort, train_run, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x", encoding="utf-8")
    out = blocker / "out"  # a folder cannot be made inside a file, whoever runs this
    done = dmif(*refusal_commands(cohort, train_run / "model.pt", train_run / "predictions.tsv", out)[command])
    assert_one_line_error(done, 2, str(out), "cannot write there")
    assert done.stdout.strip() == ""


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that file modes apply to")
def test_a_read_only_out_is_refused_before_the_work(cohort, train_run, tmp_path):
    out = tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    try:
        done = dmif("predict", "--cohort", cohort, "--model", train_run / "model.pt", "--out", out)
        assert_one_line_error(done, 2, str(out), "cannot write there")
    finally:
        out.chmod(0o755)


# -- Ctrl-C and permissions of preprocessing -----------------------------------------------------------------------

def test_ctrl_c_stops_the_queued_cases_of_a_parallel_preprocess(cohort, tmp_path):
    out = tmp_path / "prep"
    run = subprocess.Popen(dmif_command("preprocess", "--cohort", cohort, "--out", out, "--workers", "2"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(), cwd=ROOT)
    try:
        line = ""
        while "1/6" not in line:  # the progress line of the first finished case
            line = run.stderr.readline()
            assert line, "preprocess ended before its first case"
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130 and "run the same command again" in stderr, stderr
    done = [p for p in (out / "cases").iterdir() if not p.name.startswith(".")]
    assert len(done) <= 3  # the first case and the two that were running; the other three never started
    assert not (out / "cohort.csv").exists()
    assert json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))["status"] == "incomplete"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_case_folders_follow_the_umask(umask, mode, cohort, tmp_path):
    from DMIFLib.cohort import read_cohort
    from DMIFLib.preprocessing.cohort_runner import preprocess_case
    from DMIFLib.preprocessing.settings import PreprocessSettings

    settings = PreprocessSettings.from_dict({**PreprocessSettings().to_dict(), "register": False, "n4": False,
                                             "skull_strip": "none"})
    previous = os.umask(umask)
    try:
        preprocess_case(read_cohort(cohort)[0], tmp_path, settings, qa=False)
    finally:
        os.umask(previous)
    case_dir = tmp_path / "cases" / "SYN001"
    assert case_dir.stat().st_mode & 0o777 == mode
    assert (case_dir / "t1c.nii.gz").stat().st_mode & 0o777 == mode & 0o666
