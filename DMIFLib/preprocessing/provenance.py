"""What a preprocessed case records: input hashes, package versions, the cache key."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("DMIFLib", "SimpleITK", "numpy", "scipy", "torch", "matplotlib")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages the preprocessing depends on (plus Python)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "DMIFLib":
                from DMIFLib import __version__

                versions[name] = __version__
            else:
                versions[name] = "not installed"
    return versions


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of every file in a folder (a DICOM series), in sorted name order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_key(input_hashes: dict[str, str], roi: str, settings: dict, backend: str) -> str:
    """SHA-256 over the input hashes, the inline ROI text (if any), the settings and the backend name.

    The DMIFLib version is part of it too: a new release may preprocess differently.
    """
    from DMIFLib import __version__

    blob = json.dumps({"inputs": input_hashes, "roi": roi, "settings": settings, "backend": backend,
                       "dmiflib": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
