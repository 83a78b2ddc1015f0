"""`dmif train` under torchrun: two real gloo processes on the CPU against one process, a killed rank, resume.

Tolerance: with augmentation off, the two-process run takes the single-process steps (the same global batches,
DistributedDataParallel averages the gradients, BatchNorm normalises over the whole batch), so every history
loss must agree within 1e-4 (relative), every AUC within 1e-6 and every probability within 1e-4; only the
floating-point summation order differs. (With augmentation on, each process draws its own augmentations.)
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training_e2e import make_tiny_cohort

from DMIFLib.cli import main
from DMIFLib.model_file import load_model
from DMIFLib.training import train_cohort

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = {"net_width": "tiny", "epochs": 3, "slice_size": 32, "mi_scales": [2], "max_slices": 4, "batch_size": 16,
             "augment": None, "preprocessing": {"register": False, "n4": False, "skull_strip": "none"}}
LOSS_RTOL, AUC_ATOL, P_ATOL = 1e-4, 1e-6, 1e-4

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch without gloo")


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def torchrun(cohort: Path, out: Path, processes: int, *extra: str, device: str = "cpu") -> subprocess.Popen:
    """``nice -n 10 python -m torch.distributed.run --nproc-per-node N -m DMIFLib train ...`` (one thread each)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = ["nice", "-n", "10", sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--standalone", "-m", "DMIFLib", "train", "--cohort", str(cohort), "--out", str(out),
               "--device", device, "--overrides", json.dumps(OVERRIDES), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny cohort trained by one process (in this one) and by two gloo processes under torchrun."""
    cohort = make_tiny_cohort(tmp_path_factory.getbasetemp())
    base = tmp_path_factory.mktemp("distributed")
    one = train_cohort(cohort, base / "one", preset="quick", device="cpu", overrides=OVERRIDES)
    job = torchrun(cohort, base / "two", 2)
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output
    return cohort, one.out_dir, base / "two", output


def assert_same_run(one: Path, two: Path) -> None:
    h1, h2 = read_tsv(one / "history.tsv"), read_tsv(two / "history.tsv")
    assert [(r["stage"], r["epoch"]) for r in h1] == [(r["stage"], r["epoch"]) for r in h2]
    for a, b in zip(h1, h2, strict=True):
        for key in ("loss", "val_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=LOSS_RTOL), (a["stage"], a["epoch"], key)
        assert float(b["val_auc"]) == pytest.approx(float(a["val_auc"]), abs=AUC_ATOL, nan_ok=True)
    m1, m2 = read_tsv(one / "metrics.tsv"), read_tsv(two / "metrics.tsv")
    for a, b in zip(m1, m2, strict=True):
        assert (a["level"], a["model"], a["n"]) == (b["level"], b["model"], b["n"])
        assert float(b["auc"]) == pytest.approx(float(a["auc"]), abs=AUC_ATOL)
    p1, p2 = read_tsv(one / "predictions.tsv"), read_tsv(two / "predictions.tsv")
    assert [r["patient_id"] for r in p1] == [r["patient_id"] for r in p2]
    for a, b in zip(p1, p2, strict=True):
        for key in ("p_t1c", "p_t2w", "p_fused"):
            assert float(b[key]) == pytest.approx(float(a[key]), abs=P_ATOL)


def test_two_gloo_processes_train_what_one_process_trains(runs):
    _, one, two, output = runs
    assert_same_run(one, two)
    assert output.count("\nheld-out test patients (") == 1 and "warning" not in output  # rank 0 alone reports
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == \
        sorted(p.name for p in one.iterdir() if not p.name.startswith("."))
    run = json.loads((two / "run.json").read_text(encoding="utf-8"))
    assert (run["world_size"], run["backend"]) == (2, "gloo")
    single = json.loads((one / "run.json").read_text(encoding="utf-8"))
    assert (single["world_size"], single["backend"]) == (1, None)
    # the same model file format as a single-process run: same entries, same nets, same weights' names/shapes
    raw1 = torch.load(one / "model.pt", weights_only=True)
    raw2 = torch.load(two / "model.pt", weights_only=True)
    assert raw1.keys() == raw2.keys() and raw1["nets"].keys() == raw2["nets"].keys()
    for name, entry in raw1["nets"].items():
        assert entry["spec"] == raw2["nets"][name]["spec"]
        assert {k: v.shape for k, v in entry["state_dict"].items()} == \
            {k: v.shape for k, v in raw2["nets"][name]["state_dict"].items()}
    assert load_model(two / "model.pt").modalities == ("t1c", "t2w")


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _rank_pid(ancestor: int, rank: int) -> int | None:
    """The pid of the torchrun worker with ``RANK=rank`` among ``ancestor``'s descendants (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() not in environ or not any(v.startswith(b"TORCHELASTIC_RUN_ID=") for v in environ):
            continue
        pid = int(proc.name)
        while pid > 1 and pid != ancestor:
            pid = _parent(pid)
        if pid == ancestor:
            return int(proc.name)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds the rank's process through /proc")
def test_a_killed_rank_resumes_on_another_number_of_processes(runs, tmp_path):
    cohort, one, _, _ = runs
    out = tmp_path / "killed"
    job = torchrun(cohort, out, 2)
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.pt").is_file():  # the first epoch is done
            assert job.poll() is None and time.monotonic() < deadline, job.stdout.read() if job.poll() else "slow"
            time.sleep(0.02)
        pid = _rank_pid(job.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0, output  # torchrun stops rank 0 and fails the job
    assert not (out / "model.pt").exists() and (out / "checkpoint.pt").is_file()
    # continue in ONE process (world size 2 -> 1): the run equals the uninterrupted single-process run
    assert main(["train", "--cohort", str(cohort), "--out", str(out), "--resume", "--device", "cpu"]) == 0
    assert_same_run(one, out)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["resumed"] and (run["world_size"], run["backend"]) == (1, None)
    assert not (out / "checkpoint.pt").exists() and not list(out.glob(".*.tmp*"))


def test_cross_validation_is_refused_under_torchrun(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--cohort", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"), "--cv", "3"]) == 2
    assert "--cv runs in one process" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_with_nccl(runs, tmp_path):
    """NCCL, SyncBatchNorm and bfloat16/float16 autocast: the run completes with rank 0's outputs (autocast makes
    the figures differ from the float32 CPU run, so only the outputs are compared)."""
    cohort, one, _, _ = runs
    job = torchrun(cohort, tmp_path / "gpus", 2, device="cuda")
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output
    run = json.loads((tmp_path / "gpus" / "run.json").read_text(encoding="utf-8"))
    assert (run["world_size"], run["backend"], run["device"]) == (2, "nccl", "cuda:0")
    assert load_model(tmp_path / "gpus" / "model.pt").modalities == ("t1c", "t2w")
    assert len(read_tsv(tmp_path / "gpus" / "history.tsv")) == len(read_tsv(one / "history.tsv"))


def test_other_methods_are_refused_under_torchrun(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--cohort", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"),
                 "--method", "transfer"]) == 2
    assert "--method transfer runs in one process" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
