"""A cohort's preprocessing split across machines (``dmif preprocess --shard i/n``) and merged back (``--merge``).

Shard i of n gets every n-th subject of the cohort's subjects in sorted order, starting with the i-th (1-based):
a patient's timepoints (its ``subject``) stay together, and the split depends only on the ids, not on the rows'
order, so every node of a SLURM array computes the same split from the same table. A shard's folder is an
ordinary ``dmif preprocess`` output (``cohort.csv``, ``failures.tsv``, ``cases/``) plus ``shard.json``: the
shard, the full cohort's patient ids in the table's order, the source and the settings. :func:`merge_shards`
checks that the folders are the n shards of one cohort with one set of settings, that every patient is either
preprocessed or failed in exactly one of them (nothing missing, nothing twice), and writes the merged
``cohort.csv`` (rows in the source table's order, paths into the shard folders) and ``failures.tsv``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from DMIFLib.atomic import atomic_write_text
from DMIFLib.cohort import CohortCase, CohortError, read_cohort, write_cohort

SHARD_NAME = "shard.json"
SHARD_FORMAT = "dmif-shard"
SHARD_COHORT_NAME = "shard_cohort.csv"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 1 <= i <= n; ``ValueError`` with a one-line message otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 1/4 (shard i of n, counted from 1)")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text}: i must be between 1 and n (n >= 1)")
    return i, n


def shard_cases(cases: list[CohortCase], i: int, n: int) -> list[CohortCase]:
    """The cases of shard ``i`` of ``n`` (1-based), in the table's order: subjects sorted by id, the k-th
    (0-based) goes to shard k mod n + 1."""
    subjects = sorted({case.subject for case in cases})
    mine = {s for k, s in enumerate(subjects) if k % n == i - 1}
    return [case for case in cases if case.subject in mine]


def write_shard(cases: list[CohortCase], i: int, n: int, out_dir: Path, source: str, settings: dict) -> Path:
    """Write ``out_dir/shard_cohort.csv`` (shard ``i``'s input rows) and ``out_dir/shard.json``; returns the CSV.

    Raises :class:`CohortError` when the shard is empty (more shards than subjects) or ``out_dir`` holds
    another shard.
    """
    chosen = shard_cases(cases, i, n)
    if not chosen:
        raise CohortError(f"{source}: shard {i}/{n} is empty: the cohort has only "
                          f"{len({c.subject for c in cases})} subject(s); use at most that many shards")
    info = {"format": SHARD_FORMAT, "shard": i, "shards": n, "source": source, "settings": settings,
            "patients": [c.patient_id for c in cases], "assigned": [c.patient_id for c in chosen]}
    marker = out_dir / SHARD_NAME
    if marker.is_file():
        old = _read_marker(out_dir)
        if {k: old.get(k) for k in info} != info:
            raise CohortError(f"{marker}: this folder holds shard {old.get('shard')}/{old.get('shards')} of "
                              f"{old.get('source')} made from other patients or settings; give each shard its own "
                              "--out (or pass --overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(info, indent=1) + "\n")
    return write_cohort(chosen, out_dir / SHARD_COHORT_NAME)


def _read_marker(folder: Path) -> dict:
    marker = folder / SHARD_NAME
    if not marker.is_file():
        raise CohortError(f"{folder}: no {SHARD_NAME}; not a folder written by dmif preprocess --shard")
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CohortError(f"{marker}: unreadable ({error})") from None
    if not isinstance(info, dict) or info.get("format") != SHARD_FORMAT:
        raise CohortError(f"{marker}: not a dmif shard description")
    return info


def _failures(folder: Path) -> list[dict]:
    path = folder / "failures.tsv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def merge_shards(folders: list[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Merge the shard folders of one cohort into ``out_dir/cohort.csv`` (+ ``failures.tsv``); returns its path.

    Raises :class:`CohortError` naming the folder and the problem: not a shard, shards of another cohort,
    settings or number of shards, a shard given twice or missing, a shard whose run did not finish (a patient
    neither preprocessed nor failed), a patient in two shards.
    """
    out_dir = Path(out_dir)
    infos: dict[int, tuple[Path, dict]] = {}
    first: tuple[Path, dict] | None = None
    for folder in map(Path, folders):
        info = _read_marker(folder)
        if first is None:
            first = (folder, info)
        for key in ("shards", "patients", "settings", "source"):
            if info.get(key) != first[1].get(key):
                raise CohortError(f"{folder}: its {key} differ from those of {first[0]}; the shards to merge must "
                                  "come from one cohort, one --shard i/n split and one set of settings")
        i = info["shard"]
        if i in infos:
            raise CohortError(f"{folder}: shard {i}/{info['shards']} was given twice ({infos[i][0]} and {folder})")
        infos[i] = (folder, info)
    if first is None:
        raise CohortError("--merge: no shard folders given")
    n = first[1]["shards"]
    missing = [i for i in range(1, n + 1) if i not in infos]
    if missing:
        given = ", ".join(str(f) for f, _ in infos.values())
        raise CohortError(f"--merge: shard{'s' if len(missing) > 1 else ''} {', '.join(f'{i}/{n}' for i in missing)} "
                          f"missing (given: {given})")
    owner: dict[str, str] = {}
    rows: dict[str, CohortCase] = {}
    failures: list[dict] = []
    for i in sorted(infos):
        folder, info = infos[i]
        done = read_cohort(folder / "cohort.csv") if (folder / "cohort.csv").is_file() else []
        failed = _failures(folder)
        for pid in [c.patient_id for c in done] + [row["patient_id"] for row in failed]:
            if pid in owner:
                raise CohortError(f"{folder}: patient {pid} is also in {owner[pid]}; each patient must be in one "
                                  "shard")
            owner[pid] = str(folder)
        unfinished = [pid for pid in info["assigned"] if pid not in owner]
        if unfinished:
            raise CohortError(f"{folder}: shard {i}/{n} is incomplete: {len(unfinished)} patient(s) neither "
                              f"preprocessed nor failed (e.g. {', '.join(unfinished[:3])}); run its dmif "
                              "preprocess again")
        rows.update({c.patient_id: c for c in done})
        failures += failed
    foreign = sorted(set(owner) - set(first[1]["patients"]))
    if foreign:
        raise CohortError(f"{owner[foreign[0]]}: patient(s) {', '.join(foreign[:3])} are not in the cohort the "
                          "shards were made from")
    out_dir.mkdir(parents=True, exist_ok=True)
    order = {pid: k for k, pid in enumerate(first[1]["patients"])}
    failures.sort(key=lambda row: order[row["patient_id"]])
    header = list(failures[0]) if failures else ["patient_id", "file", "problem"]
    atomic_write_text(out_dir / "failures.tsv", "\n".join(
        ["\t".join(header)] + ["\t".join(row.get(k, "") for k in header) for row in failures]) + "\n")
    if not rows:
        raise CohortError(f"--merge: no patient was preprocessed in any shard ({len(failures)} failed; see "
                          f"{out_dir / 'failures.tsv'})")
    return write_cohort([rows[pid] for pid in first[1]["patients"] if pid in rows], out_dir / "cohort.csv")
