"""How much each branch counts when a fusion head starts: weights fitted on the validation patients (stacking).

Stage 2 (DF + MI → DMIF-Net) and stage 3 (modalities → multimodal net) of Algorithm 1 add a fusion head over
branches that were trained on the training patients. Those branches fit their training slices about equally
well, whether or not they generalise, so a head fitted there (or the plain mean of the branch logits) trusts a
branch that is no better than chance on new patients as much as a good one. The fusion head therefore starts as
``Σ c_i · logit_i + b`` with (c, b) from a logistic regression of the validation slices' labels on the branches'
logits, the coefficients constrained to c_i ≥ 0: a branch that is worse than chance on the validation patients
gets weight 0 rather than a flipped sign learnt from a few patients. A branch that did not fit its own training
slices (its kept epoch's training loss not below the cross-entropy of predicting the training class balance,
:func:`learned_branches`) also gets weight 0: it has learned nothing, so whatever its logits share with a few
validation patients' labels is chance (on 60-patient cohorts, a 4-epoch DF-Net at training loss 0.70-0.87 got
weights up to 1.5 from 8 validation patients and pulled fused held-out AUCs down; docs/training.md).
Fine-tuning then starts from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit
from torch import nn

from DMIFLib.training.stage import SliceSet, predict_logits


def learned_branches(train_losses: Sequence[float | None], train_labels: np.ndarray) -> list[bool]:
    """Per branch: did it fit its training slices? ``train_losses``: each branch's mean training BCE at the
    epoch it kept (None: unknown, counted as learned); ``train_labels`` (N,) 0/1 of the training slices.

    A branch has learned when its loss is below the BCE of a constant prediction of the class balance
    (ln 2 = 0.693 for balanced classes)."""
    p = float(np.clip(np.mean(train_labels), 1e-6, 1 - 1e-6))
    prior_loss = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return [loss is None or not np.isfinite(loss) or loss < prior_loss for loss in train_losses]


def fit_branch_weights(logits: np.ndarray, labels: np.ndarray, l2: float = 1.0,
                       learned: Sequence[bool] | None = None) -> tuple[list[float], float]:
    """Non-negative logistic regression: ``logits`` (N, K) of K branches, ``labels`` (N,) 0/1 → (c (K,), b).

    Minimises Σ_n BCE(σ(logits_n · c + b), y_n) + l2/2 · |c|² over c ≥ 0 and b (L-BFGS-B); ``l2`` = 1 is
    scikit-learn's default ``C`` = 1. ``learned`` (K,): branches marked False keep c_i = 0.
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"fit_branch_weights: logits (N, K) and labels (N,) expected, got {x.shape}, {y.shape}")
    k = x.shape[1]

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        c, b = params[:k], params[k]
        z = x @ c + b
        loss = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * c @ c
        residual = expit(z) - y
        return float(loss), np.concatenate([x.T @ residual + l2 * c, [residual.sum()]])

    learned = [True] * k if learned is None else list(learned)
    if len(learned) != k:
        raise ValueError(f"fit_branch_weights: {len(learned)} learned flags for {k} branches")
    start = np.concatenate([[1.0 / k if keep else 0.0 for keep in learned], [0.0]])
    bounds = [(0.0, None) if keep else (0.0, 0.0) for keep in learned] + [(None, None)]
    result = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return [float(c) for c in result.x[:k]], float(result.x[k])


def weight_branches_from_validation(net: nn.Module, val: SliceSet | None, batch_size: int,
                                    device: torch.device, learned: Sequence[bool] | None = None) -> dict | None:
    """Start ``net``'s fusion head (a DMIFNet or MultimodalDMIF) from the validation-fitted weighting, in place;
    branches with ``learned`` False (:func:`learned_branches`) get weight 0.

    Returns ``{"coefficients": [...], "intercept": b, "slices": N, "unlearned": [branch indices]}``, or None
    (the head stays the mean of the branch logits) when there is no validation set or it holds one class only.
    """
    if val is None or len(torch.unique(val.y)) < 2:
        return None
    logits = predict_logits(net.to(device), val, batch_size, device, forward=net.branch_logits)
    coefficients, intercept = fit_branch_weights(logits.double().numpy(), val.y.numpy(), learned=learned)
    net.weight_branches_(coefficients, intercept)
    unlearned = [i for i, keep in enumerate(learned or []) if not keep]
    return {"coefficients": coefficients, "intercept": intercept, "slices": len(val), "unlearned": unlearned}
