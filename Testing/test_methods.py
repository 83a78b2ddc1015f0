"""The method interface: registry, the model file's `method` entry and its dispatch, `dmif train --method`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from DMIFLib.methods import METHODS, Method, UnknownMethodError, get_method
from DMIFLib.model_file import ModelFileError, load_model, save_model
from Testing.test_model_file import tiny_model


def test_registry_names_every_method_with_its_seed():
    assert "dmif" in METHODS
    for name in METHODS:
        method = get_method(name)
        assert isinstance(method, Method) and method.name == name and method.title and method.seed.isdigit()
    with pytest.raises(UnknownMethodError, match=r"'nope' is not available.*available: dmif"):
        get_method("nope")


def test_dmif_file_keeps_version_1_and_a_file_without_method_loads_as_dmif(tmp_path):
    model = tiny_model()
    path = save_model(tmp_path / "model.pt", model)
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 1 and raw["method"] == "dmif" and "method_state" not in raw
    del raw["method"]  # a file written before methods existed
    torch.save(raw, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    assert old.method == "dmif" and old.state == {}
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(old.net(x), load_model(path).net(x))


def test_a_file_of_an_unknown_method_is_refused_in_one_line(tmp_path):
    raw = torch.load(save_model(tmp_path / "model.pt", tiny_model()), weights_only=True)
    torch.save({**raw, "method": "future", "format_version": 2}, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match=r"future\.pt: method 'future' is not available"):
        load_model(tmp_path / "future.pt")
    torch.save({**raw, "format_version": 3}, tmp_path / "v3.pt")
    with pytest.raises(ModelFileError, match="format version 3"):
        load_model(tmp_path / "v3.pt")


def test_train_refuses_an_unknown_method_in_one_line(tmp_path):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("patient_id,t1c,roi,label\n")
    result = subprocess.run([sys.executable, "-m", "DMIFLib", "train", "--cohort", str(cohort), "--out",
                             str(tmp_path / "run"), "--method", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"dmif train: error: method 'nope' is not available in this DMIFLib; available: {', '.join(METHODS)}"]
    assert not (tmp_path / "run").exists()


def test_worker_reports_an_unknown_method_as_a_user_error(tmp_path):
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("patient_id,t1c,roi,label\n")
    done = subprocess.run([sys.executable, "-m", "DMIFLib.worker", "train", str(cohort), str(tmp_path / "run"),
                           "--method", "nope"], capture_output=True, text=True)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 2 and events[-1]["event"] == "error"
    assert "method 'nope' is not available" in events[-1]["message"]


def test_train_module_offers_every_method_and_passes_it_to_the_worker():
    pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DMIFTrain"))
    from DMIFTrainLib.logic import METHODS as OFFERED
    from DMIFTrainLib.logic import TrainLogic

    assert set(METHODS) <= set(OFFERED) and OFFERED[0] == "dmif"
    logic = TrainLogic(pythonExecutable="python")
    command = logic.workerCommand("c.csv", "out", method="radiomics")
    assert command[command.index("--method") + 1] == "radiomics"
    assert "--method" not in logic.workerCommand("c.csv", "out")  # dmif: the command line as before


def test_nan_in_a_method_state_is_refused_on_save_and_load(tmp_path):
    model = tiny_model()
    model.method, model.state = "radiomics", {"head": {"state_dict": {"w": torch.tensor([1.0, float("nan")])}}}
    with pytest.raises(ModelFileError, match=r"not saved: 'method_state/head/state_dict/w' holds NaN"):
        save_model(tmp_path / "bad.pt", model)
    raw = torch.load(save_model(tmp_path / "good.pt", tiny_model()), weights_only=True)
    torch.save({**raw, "method": "radiomics", "format_version": 2, "method_state": model.state}, tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match="unusable model: 'method_state/head/state_dict/w' holds NaN"):
        load_model(tmp_path / "nan.pt")
