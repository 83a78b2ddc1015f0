"""predict_stack: patient probability = mean of slice probabilities; prediction at the model's cut-off."""

import numpy as np
import pytest
import torch
from test_model_file import tiny_model

from DMIFLib.inference import predict_stack, prediction_tables
from DMIFLib.preprocessing.slices import SliceStack


def _stack(n=5, size=32):
    rng = np.random.default_rng(0)
    images = {m: rng.normal(size=(n, size, size)).astype(np.float32) for m in ("t1c", "t2w")}
    return SliceStack(images=images, slice_indices=np.arange(10, 10 + n), slice_axis=2, patient_id="P1")


def test_patient_probability_is_the_mean_of_slice_probabilities():
    model, stack = tiny_model(), _stack()
    pred = predict_stack(model, stack)
    x = torch.from_numpy(stack.stacked(("t1c", "t2w")))
    with torch.no_grad():
        fused = torch.sigmoid(model.net(x)).numpy()
        t2w = torch.sigmoid(model.nets["t2w"](x[:, 1:])).numpy()
    assert np.allclose(pred.slice_probabilities["fused"], fused, atol=1e-6)
    assert pred.p_fused == pytest.approx(fused.mean(), abs=1e-6)
    assert pred.probabilities["t2w"] == pytest.approx(t2w.mean(), abs=1e-6)
    assert pred.n_slices == 5 and pred.prediction == int(pred.p_fused >= 0.42) and pred.cutoff == 0.42
    patient_tsv, slice_tsv = prediction_tables([pred], ("t1c", "t2w"))
    assert patient_tsv.splitlines()[0] == ("patient_id\tp_t1c\tp_t2w\tp_fused\tprediction\tcutoff\tn_slices\t"
                                           "p_fused_raw\tp_fused_low\tp_fused_high\tood_warning")
    assert pred.p_fused_raw == pred.p_fused  # no calibration in this model
    assert len(slice_tsv.splitlines()) == 6 and slice_tsv.splitlines()[1].startswith("P1\t10\t")


def test_a_model_trained_on_central_slices_scores_a_patient_on_the_same_slices(tmp_path):
    from DMIFLib.model_file import load_model, save_model

    model, stack = tiny_model(), _stack(n=7)
    everything = predict_stack(model, stack)
    model.patient_slices = 3  # trained on the 3 central slices of each patient: indices 2, 3, 4 of 7
    central = predict_stack(load_model(save_model(tmp_path / "m.pt", model)), stack)
    assert len(central.slice_probabilities["fused"]) == 7  # every slice is still predicted and listed
    np.testing.assert_allclose(central.slice_probabilities["fused"], everything.slice_probabilities["fused"],
                               atol=1e-6)
    assert central.p_fused == pytest.approx(everything.slice_probabilities["fused"][2:5].mean(), abs=1e-6)
    assert central.probabilities["t1c"] == pytest.approx(everything.slice_probabilities["t1c"][2:5].mean(), abs=1e-6)
    assert central.p_fused != pytest.approx(everything.p_fused, abs=1e-6)
    assert central.p_fused_low <= central.p_fused <= central.p_fused_high  # the interval is around the same score


def test_wrong_slice_size_or_missing_modality_is_named():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"P1: slices are \(16, 16\), the model needs 32×32"):
        predict_stack(model, _stack(size=16))
    stack = _stack()
    del stack.images["t2w"]
    with pytest.raises(KeyError, match="P1: no t2w slices"):
        predict_stack(model, stack)


def test_shared_scattering_gives_every_net_its_own_probabilities():
    from DMIFLib.inference import _shares_scattering
    from DMIFLib.training.stage import predict_proba

    model, stack = tiny_model(), _stack(n=7)
    assert _shares_scattering(model)
    pred = predict_stack(model, stack, batch_size=4)  # two batches
    x = torch.from_numpy(stack.stacked(("t1c", "t2w")))
    for i, m in enumerate(("t1c", "t2w")):
        assert np.allclose(pred.slice_probabilities[m], predict_proba(model.nets[m], x[:, i:i + 1]), atol=1e-6)
    assert np.allclose(pred.slice_probabilities["fused"], predict_proba(model.net, x), atol=1e-6)


def test_branches_with_another_scattering_are_run_separately():
    from DMIFLib.inference import _shares_scattering
    from DMIFLib.nets import DMIFNet, build_net, preset_spec

    model, stack = tiny_model(), _stack()
    mi = preset_spec("minet", "tiny")
    mi["config"].update(scales=[1], input_shape=[32, 32])
    model.net.branches["t2w"] = DMIFNet(build_net(preset_spec("dfnet", "tiny")), build_net(mi)).eval()
    assert not _shares_scattering(model)
    pred = predict_stack(model, stack)
    with torch.no_grad():
        fused = torch.sigmoid(model.net(torch.from_numpy(stack.stacked(("t1c", "t2w"))))).numpy()
    assert np.allclose(pred.slice_probabilities["fused"], fused, atol=1e-6)
