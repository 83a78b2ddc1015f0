"""glibc ``malloc`` settings for DMIFLib's own processes (the ``dmif`` command and ``python -m DMIFLib.worker``).

By default glibc serves large blocks with fresh ``mmap`` pages (its threshold adapts, up to 32 MB) and trims the
heap top when more than twice that threshold is free. The scattering and the convolutions allocate and free
blocks of 1–30 MB hundreds of times per batch, so many of them are page-faulted in and zeroed by the kernel again
and again: up to 89 000 minor faults per 64-image scattering, about none with fixed thresholds. Fixed, per-patient
prediction takes 16–28 % less time with the same peak RSS (docs/performance.md). The process keeps up to
``TRIM_THRESHOLD_BYTES`` of freed memory instead of returning it, which suits a batch process, not an
application's process: Slicer's own process is never tuned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest dynamic threshold; accepted by every glibc
TRIM_THRESHOLD_BYTES = 256 * 2**20
OPT_OUT = "DMIF_DEFAULT_MALLOC"  # set to 1 to keep glibc's defaults
_tuned = False


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` set the thresholds in this process."""
    return _tuned


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when they were set.

    Does nothing (False) on other C libraries (macOS, Windows, musl), when ``DMIF_DEFAULT_MALLOC=1``, or when
    ``GLIBC_TUNABLES`` already sets malloc parameters (the user's choice wins).
    """
    if os.environ.get(OPT_OUT) == "1" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Both or neither: either one alone fixes the other at its 128 kB default (glibc then stops adapting), which is
    # far slower than the defaults. A refused mmap threshold leaves everything as it was; the trim one is never
    # refused.
    global _tuned
    if not mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        return False
    _tuned = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _tuned
