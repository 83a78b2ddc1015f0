"""The model of a cross-validation run of a method other than DMIF-Net: the fold models, averaged.

DMIF-Net's cross-validation model averages the fold nets' logits (:class:`~DMIFLib.nets.ensemble.NetEnsemble`).
The other methods hold more than nets (a radiomics selection and head, a late-fusion combiner, each fitted per
fold), so their cross-validation model keeps every fold model whole and predicts a case with each through the
method's own ``predict``; ``p_<modality>``, ``p_fused`` and each slice probability are the means over the fold
models, ``prediction`` = ``p_fused >= cutoff`` (the run's cut-off: the mean of the folds' cut-offs).
``p_fused_raw`` / ``p_fused_low`` / ``p_fused_high`` are NaN (no calibration or interval is fitted over the folds);
``ood_warning`` joins the fold models' distinct warnings.

Model file: ``method`` = the folds' method (format version 2), ``nets`` empty, ``method_state = {"members":
[...]}`` with each fold's model file content as it was saved (its own nets, method_state, cut-off, calibration,
training-cohort profile). Loaded, ``model.members`` are the fold models and ``model.nets`` the
:class:`NetEnsemble` of their nets per modality and fused (for saliency maps; prediction does not use them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from DMIFLib.methods.base import Method
from DMIFLib.methods.case_input import CaseInput

MEMBERS = "members"


def holds_members(content: dict) -> bool:
    """True when a model file's content is a fold-model ensemble (module docstring)."""
    state = content.get("method_state")
    return isinstance(state, dict) and MEMBERS in state


def fold_ensemble(paths: list[str | os.PathLike], cutoff: float, info: dict):
    """The ensemble (a ``LoadedModel`` on CPU, ready for ``save_model``) of the fold model files ``paths`` (one
    method, modalities and preprocessing); ``ModelFileError`` naming a file that does not load or differs."""
    from DMIFLib.model_file import LoadedModel, ModelFileError, load_model

    models = [load_model(path, "cpu") for path in paths]
    first = models[0]
    for path, model in zip(paths, models, strict=True):
        if (model.method, model.modalities, model.settings.to_dict()) != \
                (first.method, first.modalities, first.settings.to_dict()):
            raise ModelFileError(f"{path}: its method, modalities or preprocessing differ from {paths[0]}'s")
    contents = [torch.load(path, map_location="cpu", weights_only=True) for path in paths]
    return LoadedModel(nets={}, modalities=first.modalities, marker=first.marker, settings=first.settings,
                       cutoff=cutoff, device=first.device, info=info, method=first.method,
                       state={MEMBERS: contents})


def load_members(content: dict, path: Path | None, device: torch.device, method: Method):
    """The ensemble held by a model file's ``content`` (checked by ``load_model``): each member rebuilt by
    ``method.load`` with its own calibration, training-cohort profile and patient slices."""
    from DMIFLib.model_file import FUSED, model_from_content, with_optional_entries
    from DMIFLib.nets.ensemble import NetEnsemble

    members = []
    for number, member in enumerate(content["method_state"][MEMBERS], start=1):
        if member.get("method") != content.get("method") or holds_members(member):
            raise ValueError(f"ensemble member {number} is not a single {content.get('method')} model")
        members.append(with_optional_entries(method.load(member, path, device), member))
    if not members:
        raise ValueError("an ensemble without members")
    nets = {name: NetEnsemble([m.nets[name] for m in members]).eval()
            for name in (*tuple(content["modalities"]), FUSED)}
    model = model_from_content(content, nets, path, device, content["method_state"])
    model.members = members
    return model


def predict_members(model, case: CaseInput, method: Method):
    """One patient's ``CasePrediction``: the mean of the members' predictions (module docstring)."""
    from DMIFLib.inference import CasePrediction

    preds = [method.predict(member, case) for member in model.members]
    p_fused = float(np.mean([p.p_fused for p in preds]))
    names = (*model.modalities, "fused")
    warnings = dict.fromkeys(p.ood_warning for p in preds if p.ood_warning)
    return CasePrediction(
        patient_id=preds[0].patient_id,
        probabilities={m: float(np.mean([p.probabilities[m] for p in preds])) for m in model.modalities},
        p_fused=p_fused, prediction=int(p_fused >= model.cutoff), cutoff=model.cutoff, n_slices=preds[0].n_slices,
        slice_probabilities={n: np.mean([p.slice_probabilities[n] for p in preds], axis=0) for n in names},
        slice_indices=preds[0].slice_indices, ood_warning="; ".join(warnings))
