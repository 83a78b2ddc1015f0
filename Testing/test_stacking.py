"""Fusion heads that start from validation-fitted branch weights (DMIFLib.training.stacking)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from DMIFLib.nets import DMIFNet, MultimodalDMIF, build_net, preset_spec
from DMIFLib.training.stacking import fit_branch_weights, learned_branches, weight_branches_from_validation
from DMIFLib.training.stage import SliceSet


def test_fit_branch_weights_equals_scikit_learn_when_the_constraint_is_inactive():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    logits = np.stack([2.0 * y - 1 + rng.normal(0, 1.5, 300), 0.5 * y + rng.normal(0, 1.0, 300)], axis=1)
    coefficients, intercept = fit_branch_weights(logits, y)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(logits, y)
    assert min(coefficients) > 0
    np.testing.assert_allclose(coefficients, reference.coef_[0], rtol=1e-4)
    assert intercept == pytest.approx(reference.intercept_[0], rel=1e-4, abs=1e-6)


def test_a_branch_worse_than_chance_on_validation_gets_weight_zero():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    good = 3.0 * (2 * y - 1) + rng.normal(0, 2.0, 200)
    flipped = -(2 * y - 1) + rng.normal(0, 2.0, 200)  # overfit branch: anti-correlated on new patients
    coefficients, _ = fit_branch_weights(np.stack([flipped, good], axis=1), y)
    assert coefficients[0] == 0.0 and coefficients[1] > 0.1


def test_a_branch_that_did_not_fit_its_training_slices_gets_weight_zero():
    # 8 validation patients: the unlearned branch (training loss above ln 2) happens to correlate with their labels
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 32)
    lucky = 0.8 * (2 * y - 1) + rng.normal(0, 0.5, 64)
    weak = 0.3 * (2 * y - 1) + rng.normal(0, 1.0, 64)
    logits = np.stack([lucky, weak], axis=1)
    assert fit_branch_weights(logits, y)[0][0] > 0.5  # without the rule the lucky branch dominates
    learned = learned_branches([0.74, 0.21], np.repeat([0, 1], 100))
    assert learned == [False, True]
    coefficients, _ = fit_branch_weights(logits, y, learned=learned)
    assert coefficients[0] == 0.0 and coefficients[1] > 0.1


def test_learned_branches_compares_with_the_loss_of_predicting_the_class_balance():
    balanced, skewed = np.repeat([0, 1], 50), np.array([1] * 90 + [0] * 10)
    assert learned_branches([0.69, 0.70, None, float("nan")], balanced) == [True, False, True, True]
    # 90 % positives: always saying 0.9 costs 0.325, so a loss of 0.5 has learned nothing
    assert learned_branches([0.5, 0.3], skewed) == [False, True]
    with pytest.raises(ValueError, match="1 learned flags for 2 branches"):
        fit_branch_weights(np.zeros((4, 2)), np.array([0, 1, 0, 1]), learned=[True])


def _tiny_dmifnet(seed: int) -> DMIFNet:
    torch.manual_seed(seed)
    return DMIFNet(build_net(preset_spec("dfnet", "tiny")), build_net(preset_spec("minet", "tiny")))


def test_weighted_fusion_heads_give_the_weighted_sum_of_branch_logits():
    x = torch.randn(4, 1, 128, 128)
    dmif = _tiny_dmifnet(0).eval()
    dmif.weight_branches_([0.3, 1.7], intercept=-0.4)
    with torch.no_grad():
        torch.testing.assert_close(dmif(x), 0.3 * dmif.df(x) + 1.7 * dmif.mi(x) - 0.4, rtol=1e-5, atol=1e-5)
        fused = MultimodalDMIF({"t1c": dmif, "t2w": _tiny_dmifnet(1)}).eval()
        fused.weight_branches_([0.0, 2.0], intercept=0.25)
        xm = torch.randn(4, 2, 128, 128)
        torch.testing.assert_close(fused(xm), 2.0 * fused.modality_logits(xm)[:, 1] + 0.25, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="2 branches but 3 coefficients"):
        dmif.weight_branches_([1.0, 1.0, 1.0])


def test_weight_branches_from_validation_fits_the_head_on_the_validation_slices():
    net = _tiny_dmifnet(2)
    torch.manual_seed(3)
    x = torch.randn(24, 1, 128, 128)
    y = (torch.arange(24) % 2).float()
    info = weight_branches_from_validation(net, SliceSet(x, y), batch_size=8, device=torch.device("cpu"))
    with torch.no_grad():
        logits = net.branch_logits(x).double().numpy()
        expected = fit_branch_weights(logits, y.numpy())
        assert info["coefficients"] == pytest.approx(expected[0]) and info["intercept"] == pytest.approx(expected[1])
        c, b = info["coefficients"], info["intercept"]
        torch.testing.assert_close(net(x), c[0] * net.df(x) + c[1] * net.mi(x) + b, rtol=1e-4, atol=1e-4)
    assert info["slices"] == 24 and info["unlearned"] == []
    info = weight_branches_from_validation(net, SliceSet(x, y), 8, torch.device("cpu"), learned=[False, True])
    assert info["coefficients"][0] == 0.0 and info["unlearned"] == [0]
    assert weight_branches_from_validation(net, SliceSet(x, torch.zeros(24)), 8, torch.device("cpu")) is None
    assert weight_branches_from_validation(net, None, 8, torch.device("cpu")) is None
