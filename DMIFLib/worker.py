"""``python -m DMIFLib.worker train|predict ...``: a long run in its own process, JSON lines on stdout.

Used by the DMIFTrain module (which reads the lines and kills the process tree on Cancel). Every line is one
JSON object (NaN written as null):

- ``{"event": "start", "command": ..., "pid": ...}``
- ``{"event": "progress", "stage": ..., "fraction": 0..1, ...}`` (the training's / prediction's progress dict)
- ``{"event": "done", "message": ..., ...paths...}`` — exit code 0
- ``{"event": "error", "message": ..., "kind": ...}`` — exit code 2 for a user error (bad cohort, case,
  model file, run folder), 1 for anything else (traceback on stderr)
- ``{"event": "cancelled", "message": ...}`` — exit code 130, after SIGTERM (or SIGINT): the run stops at the
  next batch; a training run keeps its last epoch's checkpoint and continues with ``--resume``.

Usage: ``train COHORT OUT [--method dmif|radiomics|transfer] [--preset quick|paper] [--device D] [--resume]
[--seed S] [--marker M] [--overrides JSON] [--cv K [--repeats R]]`` (``--cv``: cross-validation run of the method,
progress events carry ``repeat``/``repeats``/``fold``/``folds``) and ``predict COHORT MODEL OUT [--device D]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def emit(event: str, **fields) -> None:
    """Print one JSON line ``{"event": event, ...}`` and flush."""
    sys.stdout.write(json.dumps(_plain({"event": event, **fields})) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m DMIFLib.worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model (Algorithm 1)")
    train.add_argument("cohort")
    train.add_argument("out")
    train.add_argument("--method", default="dmif", help="dmif, radiomics, transfer (docs/methods.md)")
    train.add_argument("--preset", default="quick", choices=("quick", "paper"))
    train.add_argument("--device", default="auto")
    train.add_argument("--resume", action="store_true")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--marker", default=None)
    train.add_argument("--overrides", default=None, help="JSON object of training settings")
    train.add_argument("--cv", type=int, default=None, metavar="K", help="K-fold cross-validation run")
    train.add_argument("--repeats", type=int, default=1, metavar="R", help="with --cv: repeats of the K folds")
    predict = sub.add_parser("predict", help="predict a cohort with a model file")
    predict.add_argument("cohort")
    predict.add_argument("model")
    predict.add_argument("out")
    predict.add_argument("--device", default="auto")
    return parser


def _run(args: argparse.Namespace, cancel: threading.Event) -> dict:
    def progress(event: dict) -> None:
        emit("progress", **event)

    if args.command == "train" and args.cv is not None:
        from DMIFLib.commands.train import overrides_from_args
        from DMIFLib.training.cross_validation import cross_validate

        cv = cross_validate(args.cohort, args.out, k=args.cv, repeats=args.repeats, preset=args.preset,
                            device=args.device, resume=args.resume, progress=progress, cancel=cancel,
                            overrides=overrides_from_args(args), method=args.method)
        return {"message": f"cross-validation finished: {cv.model_path}", "out_dir": str(cv.out_dir),
                "model": str(cv.model_path), "metrics": str(cv.metrics_path), "oof_predictions": str(cv.oof_path),
                "folds": str(cv.folds_path), "cv_metrics": cv.metrics, "seconds": cv.seconds}
    if args.command == "train":
        from DMIFLib.commands.train import overrides_from_args
        from DMIFLib.methods import get_method

        result = get_method(args.method).train(args.cohort, args.out, preset=args.preset, device=args.device,
                                               resume=args.resume, progress=progress, cancel=cancel,
                                               overrides=overrides_from_args(args))
        return {"message": f"training finished: {result.model_path}", "out_dir": str(result.out_dir),
                "model": str(result.model_path), "history": str(result.history_path),
                "metrics": str(result.metrics_path), "predictions": str(result.predictions_path),
                "test_metrics": result.metrics, "seconds": result.seconds}
    from DMIFLib.inference import predict_cohort

    path = predict_cohort(args.cohort, args.model, args.out, device=args.device, progress=progress, cancel=cancel)
    return {"message": f"predictions written: {path}", "predictions": str(path)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cancel = threading.Event()

    def request_cancel(signum, frame) -> None:
        cancel.set()

    signal.signal(signal.SIGTERM, request_cancel)
    signal.signal(signal.SIGINT, request_cancel)
    emit("start", command=args.command, pid=os.getpid())
    from DMIFLib.training import RunCancelledError
    from DMIFLib.training.errors import user_errors

    try:
        emit("done", **_run(args, cancel))
        return 0
    except RunCancelledError as error:
        emit("cancelled", message=str(error))
        return 130
    except user_errors() as error:
        emit("error", message=str(error), kind=type(error).__name__)
        return 2
    except Exception as error:  # report anything to the GUI, with the traceback on stderr
        traceback.print_exc()
        emit("error", message=f"{type(error).__name__}: {error}", kind=type(error).__name__)
        return 1


if __name__ == "__main__":
    from DMIFLib.allocator import tune_allocator

    tune_allocator()
    raise SystemExit(main())
