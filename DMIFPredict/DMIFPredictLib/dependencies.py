"""Install DMIF's Python dependencies on first use, never at import (asks first unless told not to).

- Slicer 5.10 or later is required (Python >= 3.10); :func:`unsupportedSlicerMessage` says so on an older one.
- torch comes from the PyTorch extension (``PyTorchUtilsLogic.installTorch`` with :data:`TORCH_REQUIREMENT` and
  the CPU choice), never from PyPI through pip.
- The other packages come from ``DMIFLib/requirements.txt`` (ranges that Slicer's bundled packages satisfy): with
  ``slicer.packaging.pip_ensure`` on Slicer 5.12, with ``slicer.util.pip_install`` after the same confirmation on
  Slicer 5.10 (which has no ``slicer.packaging``). Both get a constraints file that pins the installed versions
  of :data:`PROTECTED_PACKAGES`, so that pip never replaces a package Slicer (or the PyTorch extension) put there.

This file is imported by the module files at start-up: it must stay importable by Python 3.9 (Slicer 5.8), so
that an old Slicer shows :func:`unsupportedSlicerMessage` instead of a traceback.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path

import slicer

MINIMUM_SLICER_VERSION = (5, 10)
"""The oldest Slicer DMIF runs in: 5.10 ships Python 3.12; 5.8 ships Python 3.9, too old for DMIFLib."""

TORCH_REQUIREMENT = ">=2.8"
"""torch versions DMIF accepts: monai 1.6.1 requires torch>=2.8.0; the test suite runs torch 2.13.0."""

PROTECTED_PACKAGES = ("numpy", "scipy", "SimpleITK", "pydicom", "pillow", "packaging", "torch", "torchvision")
"""Packages that Slicer bundles (numpy, scipy, SimpleITK, pydicom, pillow, packaging) or the PyTorch extension
installed (torch, torchvision): pip is constrained to their installed versions."""

REQUESTER = "DMIF"


class DependencyError(RuntimeError):
    """A dependency that is missing and was not (or could not be) installed; the message says what to do."""


def slicerVersion() -> tuple[int, int]:
    """(major, minor) of the running Slicer application."""
    return int(slicer.app.majorVersion), int(slicer.app.minorVersion)


def unsupportedSlicerMessage(version: tuple[int, int] | None = None) -> str | None:
    """A sentence for the user when this Slicer is older than :data:`MINIMUM_SLICER_VERSION`, else None."""
    major, minor = version if version is not None else slicerVersion()
    if (major, minor) >= MINIMUM_SLICER_VERSION:
        return None
    return (f"DMIF needs 3D Slicer {MINIMUM_SLICER_VERSION[0]}.{MINIMUM_SLICER_VERSION[1]} or later (Python 3.10 "
            f"or later); this is Slicer {major}.{minor}. Please install a current Slicer from "
            "https://download.slicer.org.")


def requirementsFile() -> Path:
    """DMIFLib/requirements.txt, next to the scripted modules (installed extension) or in the source tree."""
    import DMIFLib

    return Path(DMIFLib.__file__).resolve().parent / "requirements.txt"


def loadRequirements(path: str | Path) -> list:
    """The requirements of a requirements file (``packaging.requirements.Requirement``; comments, blank lines
    and pip options skipped), like ``slicer.packaging.load_requirements`` of Slicer 5.12."""
    from packaging.requirements import Requirement

    requirements = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def installedVersion(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missingRequirements(requirements) -> list:
    """The requirements that no installed distribution satisfies."""
    missing = []
    for requirement in requirements:
        version = installedVersion(requirement.name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(requirement)
    return missing


def missingDependencies() -> list[str]:
    """What is missing for DMIFLib, one item per package ('torch>=2.8 (installed: 2.1)'); [] when all is there."""
    from packaging.requirements import Requirement

    missing = []
    for requirement in [Requirement("torch" + TORCH_REQUIREMENT), *loadRequirements(requirementsFile())]:
        if missingRequirements([requirement]):
            version = installedVersion(requirement.name)
            missing.append(f"{requirement}" + (f" (installed: {version})" if version else ""))
    return missing


def constraintsText() -> str:
    """``name==version`` lines pinning the installed :data:`PROTECTED_PACKAGES` (pip ``-c`` format)."""
    lines = []
    for name in PROTECTED_PACKAGES:
        version = installedVersion(name)
        if version is not None:
            lines.append(f"{name}=={version}\n")
    return "".join(lines)


def slicerPackaging():
    """``slicer.packaging`` (Slicer 5.12 and later; it is not imported at start-up), or None (Slicer 5.10)."""
    try:
        import slicer.packaging
    except ImportError:
        return None
    return slicer.packaging


def confirmInstall(missing) -> bool:
    """The confirmation ``slicer.packaging.pip_ensure`` shows (Slicer 5.12), for Slicer 5.10."""
    count = len(missing)
    what = "1 Python package needs" if count == 1 else f"{count} Python packages need"
    return slicer.util.confirmOkCancelDisplay(
        f"{what} to be installed.\n\nThis will modify Slicer's Python environment. Continue?",
        f"{REQUESTER} - Install Python Packages", detailedText="\n".join(f"- {r}" for r in missing))


def ensurePythonPackages(askConfirmation: bool = True) -> None:
    """Install the requirements of DMIFLib/requirements.txt that are missing, the installed versions of
    :data:`PROTECTED_PACKAGES` held fixed. Also in Slicer's testing mode (the self-tests need the packages)."""
    requirements = loadRequirements(requirementsFile())
    missing = missingRequirements(requirements)
    if not missing:
        return
    packaging = slicerPackaging()
    with tempfile.TemporaryDirectory(prefix="dmif-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(constraintsText(), encoding="utf-8")
        try:
            if packaging is not None:
                packaging.pip_ensure(missing, constraints=constraints, prompt_install=askConfirmation,
                                     requester=REQUESTER, skip_in_testing=False)
            else:
                if askConfirmation and not confirmInstall(missing):
                    raise DependencyError("DMIF needs these Python packages; installation was declined: "
                                          + ", ".join(str(r) for r in missing))
                slicer.util.pip_install(["-c", str(constraints), *(str(r) for r in missing)])
        except DependencyError:
            raise
        except Exception as error:  # pip failed or the user declined in pip_ensure's dialog
            raise DependencyError(f"DMIF could not install {', '.join(str(r) for r in missing)}: {error}. "
                                  "See the Python console for pip's messages.") from error
    still = missingRequirements(requirements)
    if still:
        raise DependencyError("after installation these requirements are still not met: "
                              + ", ".join(str(r) for r in still) + "; see the Python console for pip's messages")


def ensureTorch(askConfirmation: bool = True, forceCpu: bool | None = None) -> None:
    """Make ``import torch`` work with a torch that satisfies :data:`TORCH_REQUIREMENT`, installing it through
    the PyTorch extension. ``forceCpu``: True installs the CPU build, False lets light-the-torch pick the build
    that fits the NVIDIA driver, None asks (CPU without asking when ``askConfirmation`` is False)."""
    from packaging.specifiers import SpecifierSet

    wanted = SpecifierSet(TORCH_REQUIREMENT)
    version = installedVersion("torch")
    if version is not None:
        if not wanted.contains(version, prereleases=True):
            raise DependencyError(f"DMIF needs PyTorch {TORCH_REQUIREMENT}; this Slicer has torch {version}. In the "
                                  "PyTorch Utils module, uninstall PyTorch and install it again, then restart Slicer.")
        return
    try:
        import PyTorchUtils
    except ModuleNotFoundError as error:
        raise DependencyError("DMIF needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
                              "restart Slicer and try again.") from error
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            "DMIF needs PyTorch, which is not installed yet. Download and install it now?\n"
            "This can take several minutes and up to a few GB of disk space.", f"{REQUESTER}: install PyTorch"):
        raise DependencyError("DMIF needs PyTorch; installation was declined.")
    if forceCpu is None:
        forceCpu = not askConfirmation or slicer.util.confirmYesNoDisplay(
            "Install the CPU-only build of PyTorch?\n\nChoose 'Yes' on computers without a supported NVIDIA GPU "
            "(smaller download); 'No' lets PyTorch pick the CUDA build that fits this computer.",
            f"{REQUESTER}: PyTorch build")
    try:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, forceComputationBackend="cpu" if forceCpu else None,
            torchVersionRequirement=TORCH_REQUIREMENT)
    except Exception as error:  # light-the-torch / pip failed
        raise DependencyError(f"PyTorch could not be installed ({error}); see the Python console.") from error
    if torch is None:
        raise DependencyError("PyTorch could not be installed; see the Python console for pip's messages.")


def ensureDependencies(askConfirmation: bool = True, forceCpu: bool | None = None) -> None:
    """Check the Slicer version, then torch (through the PyTorch extension), then the other packages.
    Raises DependencyError with a sentence for the user."""
    problem = unsupportedSlicerMessage()
    if problem:
        raise DependencyError(problem)
    ensureTorch(askConfirmation, forceCpu)
    ensurePythonPackages(askConfirmation)
