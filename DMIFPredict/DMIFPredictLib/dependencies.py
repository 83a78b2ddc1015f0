"""Install DMIF's Python dependencies on first use, never at import (GUI side: asks before installing).

torch comes from the PyTorch extension (``PyTorchUtils``: confirmation, CPU or CUDA build); everything else from
``DMIFLib/requirements.txt`` through ``slicer.packaging.pip_ensure``, with torch excluded so that pip never pulls
a second torch from PyPI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import slicer


class DependencyError(RuntimeError):
    """A dependency that is missing and was not (or could not be) installed."""


def requirementsFile() -> Path:
    """DMIFLib/requirements.txt, next to the scripted modules (installed extension) or in the source tree."""
    import DMIFLib

    return Path(DMIFLib.__file__).resolve().parent / "requirements.txt"


def ensureTorch(askConfirmation: bool = True) -> None:
    """Make ``import torch`` work, installing it through the PyTorch extension after the user agrees."""
    if importlib.util.find_spec("torch") is not None:
        return
    try:
        import PyTorchUtils
    except ModuleNotFoundError as error:
        raise DependencyError("DMIF needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
                              "restart Slicer and try again.") from error
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if torchLogic.torchInstalled():
        return
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            "DMIF needs PyTorch, which is not installed yet. Download and install it now?\n"
            "This can take several minutes and up to a few GB of disk space.", "DMIF: install PyTorch"):
        raise DependencyError("PyTorch is needed; installation was declined.")
    forceCpu = slicer.util.confirmYesNoDisplay(
        "Install the CPU-only build of PyTorch?\n\nChoose 'Yes' on computers without a supported NVIDIA GPU "
        "(smaller download); 'No' lets PyTorch pick the CUDA build that fits this computer.",
        "DMIF: PyTorch build")
    torch = torchLogic.installTorch(askConfirmation=False, forceComputationBackend="cpu" if forceCpu else None)
    if torch is None:
        raise DependencyError("PyTorch could not be installed; see the Python console for pip's messages.")


def ensurePythonPackages(prompt: bool = True) -> None:
    """Install the pinned packages of DMIFLib/requirements.txt that are missing (asks first when ``prompt``)."""
    from packaging.requirements import Requirement

    lines = requirementsFile().read_text(encoding="utf-8").splitlines()
    requirements = [Requirement(line) for line in (raw.split("#")[0].strip() for raw in lines) if line]
    slicer.packaging.pip_ensure(requirements, skip_packages=["torch", "torchvision"], prompt_install=prompt,
                                requester="DMIF")


def ensureDependencies(askConfirmation: bool = True) -> None:
    """torch first (through the PyTorch extension), then the other packages."""
    ensureTorch(askConfirmation)
    ensurePythonPackages(askConfirmation)
