"""A per-patient interval for ``p_fused`` from what training already produced.

- **Cross-validation model** (its fused net is a :class:`~DMIFLib.nets.ensemble.NetEnsemble` of the K·R fold
  models): each member's patient probability (mean of its slice probabilities) is captured while the ensemble
  predicts (forward hooks, no extra pass); the fold models of one k-fold share (k − 2)/(k − 1) of their training
  patients, so their spread is widened by √(k − 1) (:func:`DMIFLib.stats.interval.logit_half_width`).
- **Plain run** (one model): test-time augmentation, the model's fused net on the slices flipped left-right
  and shifted by ±``TTA_SHIFT`` pixels (the training augmentation's flip and translation), four members.

Either way the interval is ``LEVEL`` (90 %) wide on the logit scale around the raw ``p_fused``, mapped through the
model's calibration: low ≤ p_fused ≤ high always holds, since every calibrator is non-decreasing. Coverage of
retrained models' predictions measured on synthetic data: ``bench/bench_interval.py``, docs/trust.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from scipy.special import expit, logit

from DMIFLib.stats.interval import logit_half_width
from DMIFLib.trust.calibrate import calibrated

LEVEL = 0.9
TTA_SHIFT = 4


def members_of(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The fold models of an ensemble net; empty for a single net."""
    return list(getattr(net, "members", []) or [])


@contextmanager
def capture_members(net: torch.nn.Module) -> Iterator[list[list[torch.Tensor]]]:
    """While active, every forward of ``net``'s ensemble members appends its logits (B,) to the member's list."""
    captured: list[list[torch.Tensor]] = [[] for _ in members_of(net)]
    handles = [member.register_forward_hook(lambda _m, _i, out, k=k: captured[k].append(out.detach().float().cpu()))
               for k, member in enumerate(members_of(net))]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def member_probabilities(captured: list[list[torch.Tensor]], n_slices: int,
                         slices: np.ndarray | None = None) -> np.ndarray | None:
    """(K,) patient probabilities (mean of sigmoid slice logits over ``slices``, indices into the ``n_slices``;
    None: all) of the captured members; None when nothing usable was captured (not an ensemble, or the members
    ran more than once per slice)."""
    if len(captured) < 2:
        return None
    out = []
    for parts in captured:
        logits = torch.cat(parts) if parts else torch.empty(0)
        if logits.numel() != n_slices:
            return None
        p = torch.sigmoid(logits)
        out.append(float((p if slices is None else p[torch.as_tensor(slices)]).mean()))
    return np.asarray(out)


def tta_probabilities(model, x: torch.Tensor, p_raw: float, batch_size: int = 64) -> np.ndarray:
    """(4,) patient probabilities of the fused net on (N, M, S, S) slices: ``p_raw`` (the slices as given,
    already predicted), flipped left-right, flipped and shifted by (+TTA_SHIFT, +TTA_SHIFT) pixels, and shifted
    by (−TTA_SHIFT, −TTA_SHIFT) pixels (circular shifts, along rows and columns)."""
    from DMIFLib.model_file import FUSED
    from DMIFLib.training.stage import predict_proba

    s = TTA_SHIFT
    flipped = torch.flip(x, dims=(-1,))
    variants = (flipped, torch.roll(flipped, (s, s), dims=(-2, -1)), torch.roll(x, (-s, -s), dims=(-2, -1)))
    return np.asarray([p_raw, *(float(np.mean(predict_proba(model.nets[FUSED], v, batch_size, model.device)))
                                for v in variants)])


def interval(model, p_raw: float, members: np.ndarray) -> tuple[float, float]:
    """(low, high) calibrated bounds around the raw ``p_raw`` from the members' probabilities (K,).

    ``model.info["cross_validation"]["k"]`` present: the members are fold models (widened, see module
    docstring); otherwise independent (test-time augmentation)."""
    folds = (model.info.get("cross_validation") or {}).get("k")
    half = float(logit_half_width(np.asarray(members, dtype=float)[:, None], LEVEL,
                                  folds=int(folds) if folds else None)[0])
    centre = float(logit(np.clip(p_raw, 1e-6, 1 - 1e-6)))
    low, high = calibrated(model.calibration, expit([centre - half, centre + half]))
    return float(low), float(high)


def format_interval(p: float, low: float, high: float) -> str:
    """'0.78 (0.64–0.88)'; just '0.78' when the bounds are unknown (NaN)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{p:.2f}"
    return f"{p:.2f} ({low:.2f}–{high:.2f})"
