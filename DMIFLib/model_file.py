"""The DMIF model file: one ``.pt`` that holds everything prediction needs, in primitive types and tensors.

Layout (a dict; loads with ``torch.load(weights_only=True)``)::

    format: "dmif-model", format_version: 1 (a DMIF-Net model) or 2 (another method; older readers refuse it),
        package_version: DMIFLib version that wrote it
    method: the method's name (:mod:`DMIFLib.methods`); absent in files from before methods existed ("dmif")
    method_state: the method's own content beyond ``nets`` (plain types and tensors; absent for "dmif")
    marker: name of the predicted marker (e.g. "1p/19q co-deletion"); p = P(marker present)
    modalities: ["t1c", "t2w", ...] in MODALITIES order (the fused net's input channel order)
    preprocessing: PreprocessSettings.to_dict() used for training (prediction reuses it)
    cutoff: decision threshold on p_fused (Youden's J on the training patients)
    nets: {modality: {"spec", "state_dict"} (that modality's DMIF-Net), "fused": {...} (the multimodal net)};
        a single-modality model's "fused" entry is a copy of its modality's DMIF-Net, which loads as one shared net
    info: provenance (plain types: training preset, seed, cohort hash, metrics, ...)
    calibration (optional): the calibrator of p_fused fitted on validation patients (DMIFLib.trust.calibrate);
        absent in files written before it existed: they load and predict uncalibrated (p_fused = p_fused_raw)
    training_cohort (optional): per-feature ranges of the training patients (DMIFLib.trust.ood); absent: no
        out-of-distribution warning
    patient_slices (optional): a patient's p_<modality> and p_fused are the mean over the central
        ``patient_slices`` slices of its box, the subset the nets were trained on (``max_slices``); absent: all

Net specs are the nets' ``spec()`` dicts, rebuilt with :func:`DMIFLib.nets.build_net`. :func:`load_model` checks
what every method shares, then the file's method rebuilds its model (``Method.load``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from DMIFLib import __version__
from DMIFLib.atomic import atomic_path
from DMIFLib.cohort import MODALITIES

MODEL_FORMAT = "dmif-model"
FORMAT_VERSION = 2
DMIF_FORMAT_VERSION = 1  # DMIF-Net files keep version 1, so that older DMIFLib releases still read them
FUSED = "fused"
DEFAULT_METHOD = "dmif"


class ModelFileError(ValueError):
    """A model file that is missing, corrupt or incompatible; the message names the file and the problem."""


@dataclass
class LoadedModel:
    """A model ready for prediction: ``nets[modality]`` (B, 1, S, S) → logits, ``nets["fused"]`` (B, M, S, S).

    ``settings`` is a ``PreprocessSettings``; ``path`` the file it came from (None when built in memory);
    ``method`` the :mod:`DMIFLib.methods` name; ``state`` that method's own content (plain types and tensors,
    saved as the file's ``method_state``); ``members`` the fold models of a cross-validation ensemble of a
    method other than DMIF-Net (:mod:`DMIFLib.methods.fold_ensemble`), empty otherwise.
    """

    nets: dict[str, nn.Module]
    modalities: tuple[str, ...]
    marker: str
    settings: Any
    cutoff: float
    device: torch.device
    info: dict = field(default_factory=dict)
    package_version: str = __version__
    path: Path | None = None
    method: str = DEFAULT_METHOD
    state: dict = field(default_factory=dict)
    calibration: dict | None = None
    training_cohort: dict | None = None
    members: list[LoadedModel] = field(default_factory=list)
    patient_slices: int | None = None

    def __post_init__(self) -> None:
        # Channels-last (NHWC) weights make oneDNN keep the feature maps in NHWC: prediction with the paper-size
        # nets is about 20 % faster on CPU (docs/performance.md); values equal to float32 rounding. The state dict
        # keeps its names and shapes, so saving and loading are unchanged.
        for net in self.nets.values():
            net.to(memory_format=torch.channels_last)

    @property
    def net(self) -> nn.Module:
        """The multimodal (fused) net."""
        return self.nets[FUSED]


def model_dict(nets: dict[str, nn.Module], modalities: tuple[str, ...], marker: str, settings: Any, cutoff: float,
               info: dict | None = None, method: str = DEFAULT_METHOD, state: dict | None = None) -> dict:
    """The model file's content (see the module docstring); ``settings`` is a ``PreprocessSettings``."""
    content = {
        "format": MODEL_FORMAT, "format_version": DMIF_FORMAT_VERSION, "package_version": __version__,
        "method": method, "marker": marker, "modalities": list(modalities), "preprocessing": settings.to_dict(),
        "cutoff": float(cutoff), "info": dict(info or {}),
        "nets": {name: {"spec": net.spec(), "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
                 for name, net in nets.items()},
    }
    if method != DEFAULT_METHOD:
        content["format_version"] = FORMAT_VERSION
        content["method_state"] = dict(state or {})
    return content


def content_problem(content: dict) -> str | None:
    """Why a model's content cannot predict: NaN/inf weights (a diverged training) or a cut-off that is not a
    number in [0, 1]; None when it can."""
    cutoff = content["cutoff"]
    if not isinstance(cutoff, (int, float)) or not 0.0 <= float(cutoff) <= 1.0:  # NaN fails both comparisons
        return f"its cut-off {cutoff!r} is not a probability in [0, 1]"
    for name, entry in content["nets"].items():
        for key, tensor in entry["state_dict"].items():
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"the {name} net's weights '{key}' hold NaN/inf values (the training diverged)"
    return _state_problem(content.get("method_state", {}), "method_state")


def _state_problem(value: Any, where: str) -> str | None:
    """The first NaN/inf floating-point tensor inside a method's state (nested dicts / lists), or None."""
    if torch.is_tensor(value):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"'{where}' holds NaN/inf values (the training diverged)"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((p for k, v in items if (p := _state_problem(v, f"{where}/{k}"))), None)


def save_model(path: str | os.PathLike, model: LoadedModel) -> Path:
    """Write ``model`` to ``path`` atomically; :class:`ModelFileError` (nothing written) for NaN/inf weights or a
    cut-off outside [0, 1]."""
    path = Path(path)
    content = model_dict(model.nets, model.modalities, model.marker, model.settings, model.cutoff, model.info,
                         model.method, model.state)
    content.update(trust_entries(model))
    if model.patient_slices is not None:
        content["patient_slices"] = int(model.patient_slices)
    problem = content_problem(content)
    if problem:
        raise ModelFileError(f"{path}: not saved: {problem}")
    with atomic_path(path) as tmp:
        torch.save(content, tmp)
    return path


def trust_entries(model: LoadedModel) -> dict:
    """The optional top-level ``calibration`` and ``training_cohort`` entries of ``model`` (those that are set)."""
    return {key: value for key, value in (("calibration", model.calibration),
                                          ("training_cohort", model.training_cohort)) if value is not None}


def with_optional_entries(model: LoadedModel, content: dict) -> LoadedModel:
    """``model`` with the optional top-level entries of its file ``content`` (``calibration``,
    ``training_cohort``, ``patient_slices``) checked and set; ``ValueError`` for a malformed one."""
    from DMIFLib.trust.calibrate import check_entry
    from DMIFLib.trust.ood import check_profile

    model.calibration = check_entry(content.get("calibration"))
    model.training_cohort = check_profile(content.get("training_cohort"))
    value = content.get("patient_slices")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"patient_slices = {value!r}: a whole number of at least 1 is needed")
    model.patient_slices = value
    return model


def _same_net(a: dict, b: dict) -> bool:
    """True when two ``{"spec", "state_dict"}`` entries hold the same net and weights."""
    return a["spec"] == b["spec"] and a["state_dict"].keys() == b["state_dict"].keys() and all(
        torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def dmif_nets(content: dict, device: torch.device) -> dict[str, nn.Module]:
    """A DMIF-Net model's nets from a model file's content: each modality's DMIF-Net and ``"fused"`` (the
    multimodal net; a single-modality model's fused net is its one DMIF-Net, shared), on ``device``, eval mode."""
    from DMIFLib.nets import build_net

    modalities = tuple(content["modalities"])
    nets: dict[str, nn.Module] = {}
    for name in (*modalities, FUSED):
        entry = content["nets"][name]
        if name == FUSED and len(modalities) == 1 and _same_net(entry, content["nets"][modalities[0]]):
            nets[FUSED] = nets[modalities[0]]  # single-modality model: nothing to fuse
            continue
        net = build_net(entry["spec"])
        net.load_state_dict(entry["state_dict"])
        nets[name] = net.to(device).eval()
    return nets


def model_from_content(content: dict, nets: dict[str, nn.Module], path: Path | None, device: torch.device,
                       state: dict | None = None) -> LoadedModel:
    """A :class:`LoadedModel` of a model file's ``content`` with the nets (and method state) a method rebuilt."""
    from DMIFLib.preprocessing.settings import PreprocessSettings

    return LoadedModel(nets=nets, modalities=tuple(content["modalities"]), marker=str(content["marker"]),
                       settings=PreprocessSettings.from_dict(content["preprocessing"]),
                       cutoff=float(content["cutoff"]), device=device, info=dict(content.get("info", {})),
                       package_version=str(content.get("package_version")), path=path,
                       method=str(content.get("method", DEFAULT_METHOD)), state=dict(state or {}))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a model file and rebuild its nets on ``device`` (in eval mode).

    Raises :class:`ModelFileError` naming ``path`` when the file is missing, not a torch file, truncated,
    not a DMIF model, from a newer format, when its weights do not fit its net specs, hold NaN/inf values, or
    its cut-off is not a number in [0, 1].
    """
    from DMIFLib.methods.fold_ensemble import holds_members, load_members
    from DMIFLib.methods.registry import UnknownMethodError, get_method
    from DMIFLib.preprocessing.settings import PreprocessSettings
    from DMIFLib.training.device import resolve_device

    path = Path(path)
    device = resolve_device(device)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file can fail anywhere inside the unpickler
        first = (str(error).strip().splitlines() or [""])[0]  # torch's unpickler messages run to many lines
        raise ModelFileError(f"{path}: not a readable model file ({type(error).__name__}: {first})") from None
    if not isinstance(content, dict) or content.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a DMIF model file (no 'format: {MODEL_FORMAT}' entry)")
    version = content.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {version} was written by DMIFLib "
                             f"{content.get('package_version')}; this DMIFLib {__version__} reads up to "
                             f"{FORMAT_VERSION} — update the extension")
    try:
        modalities = tuple(content["modalities"])
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown or not modalities:
            raise ModelFileError(f"{path}: unknown modalities {unknown or '(none)'}; known: {', '.join(MODALITIES)}")
        PreprocessSettings.from_dict(content["preprocessing"])  # checked here, kept by model_from_content
        problem = content_problem(content)
        if problem:
            raise ModelFileError(f"{path}: unusable model: {problem}")
        method = content.get("method", DEFAULT_METHOD)
        try:
            implementation = get_method(method)
        except UnknownMethodError as error:
            raise ModelFileError(f"{path}: {error} (the file was written by DMIFLib "
                                 f"{content.get('package_version')})") from None
        model = (load_members(content, path, device, implementation) if holds_members(content)
                 else implementation.load(content, path, device))
        return with_optional_entries(model, content)
    except ModelFileError:
        raise
    except KeyError as error:
        raise ModelFileError(f"{path}: incompatible model file, entry {error} is missing") from None
    except (RuntimeError, ValueError, TypeError, AttributeError) as error:
        raise ModelFileError(f"{path}: incompatible model file ({error})") from None
