"""``dmif preprocess``: preprocess a whole cohort into a folder that training and prediction read directly.

Layout of ``out_dir``::

    cohort.csv           the input rows, pointing at the preprocessed volumes; column ``preprocessed`` = 1
    failures.tsv         patient_id, file, problem — one row per case that failed (header only when none)
    cases/<patient>/     t1c.nii.gz, t2w.nii.gz[, flair.nii.gz]  z-scored float32 volumes on the reference grid
                         brain_mask.nii.gz, roi.* (a copy of the ROI file), <modality>_to_<reference>.tfm
                         provenance.json (parameters, versions, input hashes, timings, Mattes MI before/after)
                         qa_box.png (box over every modality), qa_registration_<modality>.png (checkerboard)

A case folder is built in a temporary folder and renamed into place, so it is complete or absent. A case whose
inputs (by content hash), ROI and settings are unchanged is not redone (``status: cached``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from DMIFLib.atomic import atomic_write_text, current_umask
from DMIFLib.cohort import CohortCase, CohortError, read_cohort, write_cohort
from DMIFLib.preprocessing.backend import PreprocessingBackend, default_backend
from DMIFLib.preprocessing.errors import PreprocessingError
from DMIFLib.preprocessing.geometry import slice_axis
from DMIFLib.preprocessing.io import read_image, write_image
from DMIFLib.preprocessing.pipeline import is_preprocessed, preprocess_volumes, read_case_images
from DMIFLib.preprocessing.provenance import cache_key, file_sha256, package_versions
from DMIFLib.preprocessing.qa import box_overlay_png, checkerboard_png
from DMIFLib.preprocessing.roi import OrientedBox, check_box, load_roi
from DMIFLib.preprocessing.roi_space import ROI_SPACE_COLUMN, label_on_reference, roi_space
from DMIFLib.preprocessing.settings import PreprocessSettings

FAILURE_COLUMNS = ("patient_id", "file", "problem")


def case_folder_name(patient_id: str) -> str:
    """A file-system-safe folder name for a patient id, distinct for distinct ids.

    An id made of letters, digits, ``.``, ``_`` and ``-`` (not starting with ``.``) is its own folder name;
    any other id gets its characters outside that set replaced by ``_`` and a hash of the whole id appended
    (``P/1`` -> ``P_1-3c8b9f5e``), so that ``P/1``, ``P 1`` and ``P_1`` get three folders.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", patient_id).lstrip(".")
    if safe == patient_id and safe:
        return safe
    return f"{safe[:60] or 'case'}-{hashlib.sha1(patient_id.encode()).hexdigest()[:8]}"


def check_case_folders(cases: list[CohortCase], cohort_csv: Path) -> None:
    """Refuse ids whose folder names differ only in letter case (one folder on macOS and Windows)."""
    seen: dict[str, str] = {}
    for case in cases:
        key = case_folder_name(case.patient_id).casefold()
        if key in seen:
            raise CohortError(f"{cohort_csv}: patient ids '{seen[key]}' and '{case.patient_id}' differ only in "
                              "letter case, so their case folders would be one on many file systems; rename one")
        seen[key] = case.patient_id


def _inputs(case: CohortCase) -> dict[str, Path]:
    files = {m: Path(case.images[m]) for m in case.modalities}
    if not case.roi_is_inline():
        files["roi"] = Path(case.roi)
    if case.brain_mask is not None:
        files["brain_mask"] = Path(case.brain_mask)
    return files


def _hash_inputs(case: CohortCase) -> dict[str, str]:
    hashes = {}
    for name, path in _inputs(case).items():
        if not path.exists():
            raise PreprocessingError(f"{name} file not found", case=case.patient_id, file=path)
        try:
            hashes[name] = file_sha256(path)
        except OSError as error:
            raise PreprocessingError(f"cannot read the {name} file ({error})", case=case.patient_id,
                                     file=path) from error
    return hashes


def _roi_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".mrk.json", ".nii.gz", ".seg.nrrd", ".json", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.endswith(suffix):
            return suffix
    return "".join(path.suffixes) or ".nii.gz"


def _swap_into_place(tmp_dir: Path, case_dir: Path) -> None:
    """Rename the finished ``tmp_dir`` onto ``case_dir`` (replacing an older version of it)."""
    old = None
    if case_dir.exists():
        old = case_dir.with_name(f".old-{case_dir.name}-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(case_dir, old)
    os.replace(tmp_dir, case_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _cached(case_dir: Path, key: str) -> dict | None:
    try:
        provenance = json.loads((case_dir / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if provenance.get("cache_key") != key:
        return None
    if not all((case_dir / name).is_file() for name in provenance.get("outputs", [])):
        return None
    return provenance


def output_case(case: CohortCase, case_dir: Path, provenance: dict) -> CohortCase:
    """The output cohort row of a preprocessed case (paths into ``case_dir``)."""
    outputs = provenance["outputs"]
    roi = case.roi if case.roi_is_inline() else str(case_dir / provenance["roi_file"])
    return CohortCase(
        patient_id=case.patient_id, roi=roi, label=case.label, split=case.split,
        images={m: case_dir / f"{m}.nii.gz" for m in case.modalities if f"{m}.nii.gz" in outputs},
        brain_mask=case_dir / "brain_mask.nii.gz",
        extra={**{k: v for k, v in case.extra.items() if k != ROI_SPACE_COLUMN}, "preprocessed": "1",
               "provenance": os.path.relpath(case_dir / "provenance.json", case_dir.parent.parent)})


def preprocess_case(case: CohortCase, out_dir: str | os.PathLike, settings: PreprocessSettings,
                    backend: PreprocessingBackend | None = None, qa: bool = True) -> dict:
    """Preprocess one case into ``out_dir/cases/<patient>/`` (or find it cached); returns its provenance dict.

    Raises :class:`PreprocessingError` naming the case and file; nothing is left behind on error.
    """
    backend = backend or default_backend()
    if is_preprocessed(case):
        raise PreprocessingError("this case is already preprocessed (its cohort row says preprocessed=1)",
                                 case=case.patient_id)
    case_dir = Path(out_dir) / "cases" / case_folder_name(case.patient_id)
    hashes = _hash_inputs(case)
    reference_name = case.reference
    try:
        space = roi_space(case, reference_name)
    except ValueError as error:
        raise PreprocessingError(str(error), case=case.patient_id) from None
    roi_key = ((case.roi if case.roi_is_inline() else (f"{ROI_SPACE_COLUMN}:{space}" if space else ""))
               + (f"|labels={case.extra['roi_labels']}" if case.roi_labels else ""))
    key = cache_key(hashes, roi_key, settings.to_dict(), backend.name)
    cached = _cached(case_dir, key)
    if cached is not None:
        return {**cached, "status": "cached"}
    started = time.perf_counter()
    start = time.perf_counter()
    images = read_case_images(case)
    mask = None
    if case.brain_mask is not None:
        mask = read_image(case.brain_mask, what="brain mask", case=case.patient_id)
    box = load_roi(case.roi, images[reference_name], settings.margin_mm, case=case.patient_id, labels=case.roi_labels)
    # a box outside the image, too small or mostly outside fails here, before the work
    lo, hi = check_box(box, images[reference_name], slice_axis(images[reference_name]), case.patient_id)
    read_s = time.perf_counter() - start
    prepared = preprocess_volumes(images, settings, mask, backend, case.patient_id)
    carried = None
    if space is not None:  # the label lies on another modality's grid: carry it through its registration
        registration = prepared.registrations.get(space)
        carried = label_on_reference(read_image(case.roi, what="ROI label", case=case.patient_id),
                                     prepared.volumes[prepared.reference], registration and registration.transform)
        try:
            box = OrientedBox.from_label(carried, settings.margin_mm, file=case.roi)
        except PreprocessingError as error:
            raise error.with_case(case.patient_id) from None
        lo, hi = box.ijk_bounds(prepared.volumes[prepared.reference])
    case_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{case_dir.name}-", dir=case_dir.parent))
    try:
        os.chmod(tmp_dir, 0o777 & ~current_umask())  # mkdtemp makes 0700; the case folder follows the umask
        start = time.perf_counter()
        outputs = []
        for name, volume in prepared.volumes.items():
            write_image(volume, tmp_dir / f"{name}.nii.gz")
            outputs.append(f"{name}.nii.gz")
        write_image(prepared.mask, tmp_dir / "brain_mask.nii.gz")
        outputs.append("brain_mask.nii.gz")
        for name, result in prepared.registrations.items():
            sitk.WriteTransform(result.transform, str(tmp_dir / f"{name}_to_{prepared.reference}.tfm"))
            outputs.append(f"{name}_to_{prepared.reference}.tfm")
        roi_file = None
        if not case.roi_is_inline():
            roi_file = f"roi{_roi_suffix(Path(case.roi))}" if carried is None else "roi.nii.gz"
            if carried is None:
                shutil.copyfile(case.roi, tmp_dir / roi_file)
            else:
                write_image(carried, tmp_dir / roi_file)
            outputs.append(roi_file)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        if qa:
            box_overlay_png(prepared.volumes, box, tmp_dir / "qa_box.png", title=f"{case.patient_id}: ROI box")
            outputs.append("qa_box.png")
            reference = prepared.volumes[prepared.reference]
            for name, result in prepared.registrations.items():
                before = sitk.Resample(sitk.Cast(images[name], sitk.sitkFloat32), reference, sitk.Transform(),
                                       sitk.sitkLinear, 0.0, sitk.sitkFloat32)
                checkerboard_png(reference, prepared.volumes[name], tmp_dir / f"qa_registration_{name}.png",
                                 title=f"{case.patient_id}: {prepared.reference} / {name}  Mattes MI "
                                       f"{result.mi_before:.3f} → {result.mi_after:.3f}",
                                 moving_before=before)
                outputs.append(f"qa_registration_{name}.png")
        qa_s = time.perf_counter() - start
        mask_array = sitk.GetArrayViewFromImage(prepared.mask)
        voxel_ml = float(np.prod(prepared.mask.GetSpacing())) / 1000.0
        provenance = {
            "patient_id": case.patient_id,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "cache_key": key,
            "settings": settings.to_dict(),
            "backend": backend.name,
            "versions": package_versions(),
            "inputs": {name: {"path": str(path), "sha256": hashes[name]} for name, path in _inputs(case).items()},
            "input_geometry": {m: {"size": list(im.GetSize()), "spacing_mm": list(im.GetSpacing()),
                                   "origin_lps_mm": list(im.GetOrigin()), "direction_lps": list(im.GetDirection())}
                               for m, im in images.items()},
            "reference": prepared.reference,
            "roi": {"value": case.roi, "box": box.to_dict(), "ijk_lo": lo.tolist(), "ijk_hi": hi.tolist()},
            "roi_file": roi_file,
            "registration": {name: {"mattes_mi_before": r.mi_before, "mattes_mi_after": r.mi_after,
                                    "backend": r.backend, **r.rigid_parameters(),
                                    **{k: v for k, v in r.details.items() if isinstance(v, (int, float, str))}}
                             for name, r in prepared.registrations.items()},
            "brain_mask": {"source": prepared.mask_source, "volume_ml": float(mask_array.sum()) * voxel_ml},
            "zscore": prepared.stats,
            "timings_s": {"read": read_s, **prepared.timings, "write": write_s, "qa": qa_s,
                          "total": time.perf_counter() - started},
            "outputs": outputs,
        }
        atomic_write_text(tmp_dir / "provenance.json", json.dumps(provenance, indent=2))
        _swap_into_place(tmp_dir, case_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return {**provenance, "status": "done"}


def _worker(case: CohortCase, out_dir: str, settings: dict, backend: PreprocessingBackend | None, qa: bool,
            threads: int) -> dict:
    """Run one case in a worker process; every failure becomes a failure row (never an exception)."""
    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        result = preprocess_case(case, out_dir, PreprocessSettings.from_dict(settings), backend, qa)
        return {"patient_id": case.patient_id, "status": result["status"], "provenance": result}
    except PreprocessingError as error:
        return {"patient_id": case.patient_id, "status": "failed", "file": error.file or "",
                "problem": error.problem}
    except Exception as error:  # one broken case must not stop the cohort
        return {"patient_id": case.patient_id, "status": "failed", "file": "",
                "problem": f"{type(error).__name__}: {error}".strip()}


def _failures_text(failures: list[dict]) -> str:
    def clean(value: str) -> str:
        return " ".join(str(value).split())

    lines = ["\t".join(FAILURE_COLUMNS)]
    lines += ["\t".join(clean(f.get(c, "")) for c in FAILURE_COLUMNS) for f in failures]
    return "\n".join(lines) + "\n"


def _run_parallel(cases: list[CohortCase], workers: int, job: Callable, record: Callable[[dict], None],
                  cancel: threading.Event | None) -> None:
    """Run ``job(case, threads)`` (a function and its arguments) for every case in ``workers`` processes.

    At most ``workers`` cases are submitted at a time, so that ``cancel`` or Ctrl-C (``KeyboardInterrupt``)
    leaves no queued case to run on: the running cases finish (or stop on their own Ctrl-C), nothing new starts.
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = list(reversed(cases))
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: set = set()
    try:
        while queue or pending:
            while queue and len(pending) < workers:
                function, *arguments = job(queue.pop(), threads)
                pending.add(pool.submit(function, *arguments))
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                record(future.result())
            if cancel is not None and cancel.is_set():
                raise InterruptedError(f"preprocessing cancelled after {len(cases) - len(queue) - len(pending)} "
                                       f"of {len(cases)} cases")
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def preprocess_cohort(cohort_csv: str | os.PathLike, out_dir: str | os.PathLike,
                      settings: PreprocessSettings | None = None, workers: int = 1,
                      progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                      backend: PreprocessingBackend | None = None, qa: bool = True) -> Path:
    """Preprocess every case of ``cohort_csv`` into ``out_dir`` (layout in the module docstring).

    Returns ``out_dir/cohort.csv`` listing the cases that succeeded; failed cases go to ``out_dir/failures.tsv``
    and do not stop the others. ``workers`` > 1 runs cases in parallel processes. ``progress`` gets
    ``{"stage": "preprocess", "case": done, "cases": total, "patient_id", "status"}`` after each case;
    ``cancel`` stops before the next case (finished cases stay cached) and raises :class:`InterruptedError`.
    Raises :class:`CohortError` for an unusable table (nothing is written then).
    """
    settings = settings or PreprocessSettings()
    cohort_csv = Path(cohort_csv)
    out_dir = Path(out_dir)
    cases = read_cohort(cohort_csv)
    check_case_folders(cases, cohort_csv)
    out_csv = out_dir / "cohort.csv"
    if out_csv.resolve() == cohort_csv.resolve():
        raise CohortError(f"{cohort_csv}: the output folder must not hold the input cohort.csv (it would be replaced)")
    if out_csv.exists():
        with open(out_csv, encoding="utf-8-sig") as handle:
            header = handle.readline()
        if "preprocessed" not in header.split(","):
            raise CohortError(f"{out_csv} exists and was not written by dmif preprocess; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings_dict = settings.to_dict()
    results: dict[str, dict] = {}

    def record(result: dict) -> None:
        results[result["patient_id"]] = result
        if progress is not None:
            progress({"stage": "preprocess", "case": len(results), "cases": len(cases),
                      "patient_id": result["patient_id"], "status": result["status"],
                      "problem": result.get("problem", "")})

    if workers <= 1:
        for case in cases:
            if cancel is not None and cancel.is_set():
                raise InterruptedError(f"preprocessing cancelled after {len(results)} of {len(cases)} cases")
            record(_worker(case, str(out_dir), settings_dict, backend, qa, 0))
    else:
        _run_parallel(cases, workers, lambda case, threads: (_worker, case, str(out_dir), settings_dict, backend,
                                                             qa, threads), record, cancel)
    failures = [results[c.patient_id] for c in cases if results[c.patient_id]["status"] == "failed"]
    atomic_write_text(out_dir / "failures.tsv", _failures_text(failures))
    succeeded = [c for c in cases if results[c.patient_id]["status"] != "failed"]
    out_cases = [output_case(c, out_dir / "cases" / case_folder_name(c.patient_id), results[c.patient_id]
                              ["provenance"]) for c in succeeded]
    if out_cases:
        write_cohort(out_cases, out_csv)
    elif out_csv.exists():
        out_csv.unlink()
    return out_csv

