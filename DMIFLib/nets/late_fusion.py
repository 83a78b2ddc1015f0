"""Late fusion of single-modality nets (seed 002): averaged sigmoid probabilities, logistic regression or a linear SVM.

A slice's fused probability is a function of its modality nets' probabilities p = (p_1, …, p_M):

- ``mean``: the mean of p (the paper's "averaged sigmoid probabilities");
- ``logistic``: sigmoid(w · p + b), scikit-learn's ``LogisticRegression`` (L2, C = 1);
- ``svm``: a linear SVM (scikit-learn's ``SVC(kernel="linear")``, C = 1) whose decision value d = w · p + b is
  mapped to a probability by Platt scaling, sigmoid(A · d + B), a logistic fit of d on the same slices.

``logistic`` and ``svm`` are fitted on the validation patients' slices (never on the test patients). The fitted
combiner is plain numbers (:meth:`LateFusion.to_dict`), so the model file holds no pickled scikit-learn object.
:class:`LateFusionNet` wraps the modality nets and a combiner as a net with the common interface, for code that
wants ``nets["fused"]``; it does not own the modality nets' weights (they are saved once, per modality).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

COMBINERS = ("mean", "logistic", "svm")


@dataclass
class LateFusion:
    """A fitted combiner: ``method`` in :data:`COMBINERS`; ``weights`` (M,) and ``bias`` of w · p + b (logistic,
    svm); ``platt`` (A, B) of the SVM's Platt scaling; unused fields stay empty."""

    method: str = "mean"
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    platt: list[float] = field(default_factory=list)

    def logit(self, p: torch.Tensor) -> torch.Tensor:
        """(N, M) slice probabilities in [0, 1] → fused logits (N,) (P = sigmoid)."""
        if self.method == "mean":
            return torch.logit(p.mean(dim=1), eps=1e-6)
        w = torch.tensor(self.weights, dtype=p.dtype, device=p.device)
        score = p @ w + self.bias
        if self.method == "svm":
            score = self.platt[0] * score + self.platt[1]
        return score

    def proba(self, p: np.ndarray) -> np.ndarray:
        """(N, M) slice probabilities → fused probabilities (N,) float64."""
        return torch.sigmoid(self.logit(torch.as_tensor(np.asarray(p, dtype=np.float64)))).numpy()

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weights": [float(w) for w in self.weights], "bias": float(self.bias),
                "platt": [float(v) for v in self.platt]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LateFusion:
        fusion = cls(method=str(data["method"]), weights=[float(w) for w in data.get("weights", [])],
                     bias=float(data.get("bias", 0.0)), platt=[float(v) for v in data.get("platt", [])])
        if fusion.method not in COMBINERS:
            raise ValueError(f"unknown late fusion {fusion.method!r}; choose one of {', '.join(COMBINERS)}")
        if fusion.method == "svm" and len(fusion.platt) != 2:
            raise ValueError("an SVM late fusion needs its Platt scaling (A, B)")
        return fusion


def fit_late_fusion(method: str, p: np.ndarray, y: np.ndarray, seed: int = 0) -> LateFusion:
    """Fit combiner ``method`` on slice probabilities ``p`` (N, M) with labels ``y`` (N,) 0/1.

    ``mean`` needs no data. ``logistic`` and ``svm`` raise ``ValueError`` unless ``y`` holds both classes.
    """
    if method not in COMBINERS:
        raise ValueError(f"unknown late fusion {method!r}; choose one of {', '.join(COMBINERS)}")
    if method == "mean":
        return LateFusion("mean")
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    if p.ndim != 2 or len(p) != len(y) or len(np.unique(y)) != 2:
        raise ValueError(f"{method} late fusion needs validation slices of both classes (got {len(y)} slices, "
                         f"classes {sorted(set(y.tolist()))})")
    from sklearn.linear_model import LogisticRegression

    if method == "logistic":
        model = LogisticRegression(C=1.0, random_state=seed).fit(p, y)
        return LateFusion("logistic", model.coef_[0].tolist(), float(model.intercept_[0]))
    from sklearn.svm import SVC

    svm = SVC(kernel="linear", C=1.0, random_state=seed).fit(p, y)
    d = svm.decision_function(p)[:, None]
    platt = LogisticRegression(C=1.0, random_state=seed).fit(d, y)
    return LateFusion("svm", svm.coef_[0].tolist(), float(svm.intercept_[0]),
                      [float(platt.coef_[0, 0]), float(platt.intercept_[0])])


class LateFusionNet(nn.Module):
    """The modality nets + a :class:`LateFusion` as one net: input (B, M, H, W) with the modalities as channels in
    the model's order, ``forward`` → fused logits (B,), ``features`` → the members' features concatenated.

    The members are referenced, not registered: this net has no weights of its own (``state_dict()`` is empty).
    """

    kind = "late_fusion"

    def __init__(self, members: Sequence[nn.Module], fusion: LateFusion) -> None:
        super().__init__()
        self._members = tuple(members)
        self.fusion = fusion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) → fused logits (B,)."""
        p = torch.stack([torch.sigmoid(net(x[:, i:i + 1])) for i, net in enumerate(self._members)], dim=1)
        return self.fusion.logit(p.float())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, H, W) → (B, Σ F)."""
        return torch.cat([net.features(x[:, i:i + 1]) for i, net in enumerate(self._members)], dim=1)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": {"fusion": self.fusion.to_dict(), "members": len(self._members)}}
