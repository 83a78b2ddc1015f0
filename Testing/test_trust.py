"""Trust columns: calibration fitted on validation patients, the per-patient interval, the out-of-distribution
warning, and model files written before them (docs/trust.md)."""

import copy
import csv

import numpy as np
import pytest
import torch
from scipy.special import expit, logit
from test_inference import _stack
from test_model_file import tiny_model
from test_training_e2e import TINY_OVERRIDES

from DMIFLib.inference import predict_stack
from DMIFLib.model_file import FUSED, LoadedModel, ModelFileError, load_model, save_model
from DMIFLib.nets.ensemble import NetEnsemble
from DMIFLib.stats.calibration import expected_calibration_error
from DMIFLib.stats.interval import logit_half_width
from DMIFLib.trust.calibrate import calibrated, fit_validation_calibration
from DMIFLib.trust.interval import LEVEL, tta_probabilities
from DMIFLib.trust.ood import case_features, cohort_profile, ood_warning
from DMIFLib.trust.prediction import summary


def _read(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# -- calibration -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibration_on_validation_lowers_ece_on_held_out_patients(method):
    """An overfitted model (unregularised logistic regression on 40 patients, 30 features of which 3 carry the
    signal) is overconfident on new patients; the calibration fitted on 300 validation patients lowers the ECE
    and the Brier score of 3000 held-out patients."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)

    def patients(n):
        x = rng.normal(size=(n, 30))
        return x, (rng.random(n) < expit(x[:, :3].sum(axis=1))).astype(int)

    x_fit, y_fit = patients(40)
    x_val, y_val = patients(300)
    x_test, y_test = patients(3000)
    model = LogisticRegression(C=1e4, max_iter=5000).fit(x_fit, y_fit)
    entry = fit_validation_calibration(method, model.predict_proba(x_val)[:, 1], y_val)
    raw = model.predict_proba(x_test)[:, 1]
    cal = calibrated(entry, raw)
    assert entry["method"] == method and entry["n_val"] == 300
    assert expected_calibration_error(cal, y_test) < expected_calibration_error(raw, y_test)
    assert np.mean((cal - y_test) ** 2) < np.mean((raw - y_test) ** 2)


def test_no_calibration_without_two_validation_patients_per_class():
    assert fit_validation_calibration("temperature", [0.2, 0.9, 0.8], [0, 1, 1]) is None
    assert fit_validation_calibration("none", [0.2, 0.3, 0.8, 0.9], [0, 0, 1, 1]) is None
    assert calibrated(None, [0.3]).tolist() == [0.3]


# -- a real (tiny) training run ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    from DMIFLib.synth import synthesize_cohort
    from DMIFLib.training import train_cohort

    base = tmp_path_factory.mktemp("trust")
    cohort = synthesize_cohort(base / "cohort", 16, seed=3, scale=0.5)
    result = train_cohort(cohort, base / "run", preset="quick", device="cpu",
                          overrides={**TINY_OVERRIDES, "val_fraction": 0.4, "calibration": "platt"})
    return cohort, result


def test_training_stores_calibration_and_cohort_and_writes_the_columns(calibrated_run):
    _, result = calibrated_run
    raw = torch.load(result.model_path, weights_only=True)  # plain types only
    assert raw["calibration"]["method"] == "platt" and raw["calibration"]["n_val"] >= 4
    assert {"n_slices", "box_max_mm", "spacing_slice_mm", "mean_t1c", "sd_t2w"} <= set(raw["training_cohort"])
    model = load_model(result.model_path)
    rows = _read(result.predictions_path)
    assert rows and {"p_fused_raw", "p_fused_low", "p_fused_high", "ood_warning"} <= set(rows[0])
    for row in rows:
        p, low, high = float(row["p_fused"]), float(row["p_fused_low"]), float(row["p_fused_high"])
        assert p == pytest.approx(float(calibrated(model.calibration, float(row["p_fused_raw"]))), abs=1e-4)
        assert low <= p <= high and low < high
        assert int(row["prediction"]) == int(p >= float(row["cutoff"]))
    metrics = {(r["level"], r["model"]): r for r in _read(result.metrics_path)}
    fused = metrics[("patient", "fused")]
    assert 0 <= float(fused["ece"]) <= 1 and 0 <= float(fused["brier_raw"]) <= 1 and fused["ece_raw"] != ""
    assert metrics[("slice", "t1c")]["brier"] != "" and metrics[("slice", "t1c")]["ece_raw"] == ""


def test_ood_warning_fires_for_doubled_spacing_box_and_shifted_intensities_only(calibrated_run):
    from DMIFLib.cohort import read_cohort
    from DMIFLib.preprocessing.pipeline import case_slices

    cohort, result = calibrated_run
    model = load_model(result.model_path)
    stacks = [case_slices(case.only(model.modalities), model.settings) for case in read_cohort(cohort)]
    features = [case_features(s) for s in stacks]
    for i, own in enumerate(features):  # every patient against the other 15: in distribution, no warning
        assert ood_warning(own, cohort_profile(features[:i] + features[i + 1:])) == ""
    stack = stacks[0]
    assert predict_stack(model, stack).ood_warning == ""
    spacing = copy.deepcopy(stack)
    spacing.info["spacing_mm"] = [2 * v for v in stack.info["spacing_mm"]]
    assert "slice spacing" in predict_stack(model, spacing).ood_warning
    box = copy.deepcopy(stack)
    box.box = type(stack.box)(stack.box.center_ras, stack.box.axes_ras,
                              2 * np.asarray(stack.box.size_mm) * max(f["box_max_mm"] for f in features)
                              / stack.box.size_mm.max())
    assert "longest box side" in predict_stack(model, box).ood_warning
    shifted = copy.deepcopy(stack)
    shifted.images = {m: a + 3.0 for m, a in stack.images.items()}
    warning = predict_stack(model, shifted).ood_warning
    assert warning.startswith("outside the training cohort:") and "T1C intensity mean" in warning


def test_cli_summary_reads_value_and_interval(calibrated_run, capsys):
    from DMIFLib.commands.predict import print_summary

    _, result = calibrated_run
    print_summary(result.predictions_path)
    row = _read(result.predictions_path)[0]
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"{row['patient_id']}: {float(row['p_fused']):.2f} "
                           f"({float(row['p_fused_low']):.2f}–{float(row['p_fused_high']):.2f}) → ")
    assert summary(0.78, 0.64, 0.88, 1, 0.45, "slice spacing 6 mm") == \
        "0.78 (0.64–0.88) → positive (cut-off 0.45); WARNING: slice spacing 6 mm"


# -- interval mechanics ------------------------------------------------------------------------------------------

def test_plain_model_interval_is_test_time_augmentation_around_p():
    model, stack = tiny_model(), _stack()
    pred = predict_stack(model, stack)
    x = torch.from_numpy(stack.stacked(model.modalities))
    members = tta_probabilities(model, x, pred.p_fused_raw)
    half = logit_half_width(members[:, None], LEVEL)[0]
    assert len(members) == 4 and half > 0
    assert pred.p_fused_low == pytest.approx(expit(logit(pred.p_fused_raw) - half), abs=1e-9)
    assert pred.p_fused_high == pytest.approx(expit(logit(pred.p_fused_raw) + half), abs=1e-9)
    assert pred.p_fused_low < pred.p_fused < pred.p_fused_high


def test_cross_validation_model_interval_uses_the_fold_models():
    folds = []
    for seed in range(3):
        m = tiny_model()
        torch.manual_seed(seed)
        for net in m.nets.values():
            for p in net.parameters():
                p.data.mul_(1 + 0.1 * torch.randn_like(p))
        folds.append(m)
    nets = {name: NetEnsemble([f.nets[name] for f in folds]).eval() for name in (*folds[0].modalities, FUSED)}
    ensemble = LoadedModel(nets=nets, modalities=folds[0].modalities, marker="m", settings=folds[0].settings,
                           cutoff=0.5, device=torch.device("cpu"), info={"cross_validation": {"k": 3}},
                           calibration={"method": "temperature", "temperature": 2.0, "n_val": 10})
    stack = _stack()
    pred = predict_stack(ensemble, stack)
    assert 0.01 < pred.p_fused_raw < 0.99
    x = torch.from_numpy(stack.stacked(ensemble.modalities))
    with torch.no_grad():
        members = np.array([float(torch.sigmoid(f.nets[FUSED](x)).mean()) for f in folds])
    half = logit_half_width(members[:, None], LEVEL, folds=3)[0]
    low, high = calibrated(ensemble.calibration, expit(logit(pred.p_fused_raw) + np.array([-half, half])))
    assert pred.p_fused_low == pytest.approx(low, abs=1e-6) and pred.p_fused_high == pytest.approx(high, abs=1e-6)
    assert pred.p_fused == pytest.approx(expit(logit(pred.p_fused_raw) / 2.0), abs=1e-9)
    assert pred.p_fused_low < pred.p_fused < pred.p_fused_high


# -- model files written before the trust entries ----------------------------------------------------------------

def test_old_model_file_loads_and_predicts_uncalibrated_without_warning(tmp_path):
    model = tiny_model()
    model.calibration = {"method": "temperature", "temperature": 3.0, "n_val": 12}
    model.training_cohort = {"n_slices": {"n": 5, "min": 40.0, "median": 50.0, "max": 60.0}}
    path = save_model(tmp_path / "model.pt", model)
    content = torch.load(path, weights_only=True)
    assert content["calibration"]["temperature"] == 3.0
    new = predict_stack(load_model(path), _stack())
    assert new.p_fused != new.p_fused_raw and new.ood_warning.startswith("outside the training cohort: slice count")
    old = {k: v for k, v in content.items() if k not in ("calibration", "training_cohort")}
    torch.save(old, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.calibration is None and loaded.training_cohort is None
    pred = predict_stack(loaded, _stack())
    assert pred.p_fused == pred.p_fused_raw == new.p_fused_raw and pred.ood_warning == ""
    assert pred.p_fused_low <= pred.p_fused <= pred.p_fused_high
    torch.save({**old, "calibration": {"method": "magic"}}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"bad\.pt.*calibration method"):
        load_model(tmp_path / "bad.pt")
