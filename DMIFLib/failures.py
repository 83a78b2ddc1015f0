"""``failures.tsv``: the cases a cohort run (``dmif predict``, the headless batch) could not do, one per row.

Columns ``patient_id`` and ``problem`` (one line each); header only when every case succeeded. The good cases'
results are written as usual and the command exits 1 when the table has a row.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from DMIFLib.atomic import atomic_write_text

FAILURES_NAME = "failures.tsv"
FAILURE_COLUMNS = ("patient_id", "problem")


def write_failures(path: str | os.PathLike, failures: list[tuple[str, str]]) -> Path:
    """Write ``failures`` ((patient_id, problem) pairs) to ``path`` atomically; returns ``path``."""
    def clean(value: str) -> str:
        return " ".join(str(value).split())

    lines = ["\t".join(FAILURE_COLUMNS), *("\t".join((clean(pid), clean(problem))) for pid, problem in failures)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def read_failures(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a failures table (empty when the file is absent)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter="\t"))
    except FileNotFoundError:
        return []
