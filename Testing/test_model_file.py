"""The model file: round trip, plain weights_only content, and clear errors for bad files."""

import copy

import pytest
import torch

from DMIFLib.model_file import FUSED, LoadedModel, ModelFileError, load_model, save_model
from DMIFLib.nets import DMIFNet, MultimodalDMIF, build_net, preset_spec
from DMIFLib.preprocessing.settings import PreprocessSettings

MODALITIES = ("t1c", "t2w")


def tiny_model(size=32) -> LoadedModel:
    """An untrained two-modality model of tiny nets on size×size slices."""
    torch.manual_seed(0)
    branches = {}
    for m in MODALITIES:
        mi = preset_spec("minet", "tiny")
        mi["config"].update(scales=[2], input_shape=[size, size])
        branches[m] = DMIFNet(build_net(preset_spec("dfnet", "tiny")), build_net(mi))
    nets = {m: b.eval() for m, b in branches.items()}
    nets[FUSED] = MultimodalDMIF({m: DMIFNet.from_config(b.config) for m, b in branches.items()}).eval()
    return LoadedModel(nets=nets, modalities=MODALITIES, marker="1p/19q co-deletion",
                       settings=PreprocessSettings(slice_size=size), cutoff=0.42, device=torch.device("cpu"),
                       info={"seed": 0})


def test_patient_slices_round_trip_and_bad_values_are_refused(tmp_path):
    model = tiny_model()
    assert load_model(save_model(tmp_path / "all.pt", model)).patient_slices is None
    assert "patient_slices" not in torch.load(tmp_path / "all.pt", weights_only=True)  # older readers unaffected
    model.patient_slices = 8
    assert load_model(save_model(tmp_path / "eight.pt", model)).patient_slices == 8
    content = torch.load(tmp_path / "eight.pt", weights_only=True)
    content["patient_slices"] = 0
    torch.save(content, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"bad\.pt: incompatible model file \(patient_slices = 0"):
        load_model(tmp_path / "bad.pt")


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = tiny_model()
    path = save_model(tmp_path / "model.pt", model)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "dmif-model" and raw["modalities"] == ["t1c", "t2w"]
    assert set(raw["nets"]) == {"t1c", "t2w", "fused"} and raw["preprocessing"]["slice_size"] == 32
    loaded = load_model(path)
    assert loaded.cutoff == 0.42 and loaded.marker == "1p/19q co-deletion" and loaded.modalities == MODALITIES
    assert loaded.settings == model.settings and loaded.info == {"seed": 0}
    x = torch.randn(3, 2, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.net(x), model.net(x))
        assert torch.allclose(loaded.nets["t2w"](x[:, 1:]), model.nets["t2w"](x[:, 1:]))


def test_prediction_runs_channels_last_with_the_same_values():
    reference = {name: copy.deepcopy(net).to(memory_format=torch.contiguous_format)
                 for name, net in tiny_model().nets.items()}
    assert all(m.weight.is_contiguous() for net in reference.values() for m in net.modules()
               if isinstance(m, torch.nn.Conv2d))
    model = LoadedModel(nets={name: copy.deepcopy(net) for name, net in reference.items()}, modalities=MODALITIES,
                        marker="m", settings=PreprocessSettings(slice_size=32),
                        cutoff=0.5, device=torch.device("cpu"))
    convs = [m for net in model.nets.values() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not all(c.weight.is_contiguous() for c in convs)
    x = torch.randn(3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), reference[FUSED](x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.nets["t1c"](x[:, :1]), reference["t1c"](x[:, :1]), rtol=1e-5, atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file(tmp_path, damage):
    path = save_model(tmp_path / "model.pt", tiny_model())
    data = path.read_bytes()
    path.write_bytes(b"this is not a model" * 10 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"model\.pt: not a readable model file"):
        load_model(path)


def test_incompatible_files(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match="not a DMIF model file"):
        load_model(path)
    good = torch.load(save_model(tmp_path / "model.pt", tiny_model()), weights_only=True)
    torch.save({**good, "format_version": 99}, path)
    with pytest.raises(ModelFileError, match=r"format version 99.*update"):
        load_model(path)
    spec = good["nets"]["t1c"]["spec"]
    wider = {**spec, "config": {**spec["config"], "df": {**spec["config"]["df"], "stem_channels": 12}}}
    torch.save({**good, "nets": {**good["nets"], "t1c": {**good["nets"]["t1c"], "spec": wider}}}, path)
    with pytest.raises(ModelFileError, match="incompatible model file"):
        load_model(path)
    torch.save({k: v for k, v in good.items() if k != "cutoff"}, path)
    with pytest.raises(ModelFileError, match="'cutoff' is missing"):
        load_model(path)
