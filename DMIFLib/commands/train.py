"""`dmif train`: Algorithm 1 on a labelled cohort -> model.pt, history.tsv, metrics.tsv (held-out test patients)."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "train DMIF-Net (Algorithm 1) or another --method on a labelled cohort; held-out test metrics; --resume"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", required=True, help="cohort CSV with a 0/1 'label' column")
    parser.add_argument("--out", required=True, help="run folder (model.pt, history.tsv, metrics.tsv, ...)")
    parser.add_argument("--method", default="dmif",
                        help="dmif (DMIF-Net, default), radiomics (deep + radiomics fusion, seed 001), transfer "
                             "(transfer-learning CNNs, seed 002); see docs/methods.md")
    parser.add_argument("--preset", default="quick", choices=("quick", "paper"),
                        help="quick: small nets, few epochs (CPU demo); paper: Algorithm 1 as published")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier run in --out (refused otherwise); its other outputs are removed")
    parser.add_argument("--seed", type=int, default=None, help="random seed (split, init, shuffling, augmentation)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs for every stage (overrides the preset)")
    parser.add_argument("--marker", default=None, help="name of the predicted marker (default: 1p/19q co-deletion)")
    parser.add_argument("--overrides", default=None, help="JSON object of training settings (see docs/training.md)")
    parser.add_argument("--cv", type=int, default=None, metavar="K",
                        help="K-fold cross-validation by patient instead of one held-out split: out-of-fold "
                             "predictions for every patient, pooled AUC; the model is the ensemble of the folds")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="with --cv: repeat the K folds R times with different seeds (default 1)")


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The TrainConfig overrides given by ``--overrides`` JSON and the shortcut options."""
    from DMIFLib.training import TrainingError

    try:
        overrides = json.loads(args.overrides) if args.overrides else {}
    except json.JSONDecodeError as error:
        raise TrainingError(f"--overrides is not valid JSON ({error})") from None
    if not isinstance(overrides, dict):
        raise TrainingError("--overrides must be a JSON object")
    for key in ("seed", "epochs", "marker"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return overrides


def print_progress(event: dict) -> None:
    """One line per epoch, per 10 cases of slice extraction, and per stage of the evaluation."""
    stage = event.get("stage")
    if stage == "slices" and (event["case"] % 10 == 0 or event["case"] == event["cases"]):
        print(f"slices: {event['case']}/{event['cases']} patients", flush=True)
    elif stage == "radiomics" and (event["case"] % 10 == 1 or event["case"] == event["cases"]):
        print(f"radiomics features: patient {event['case']}/{event['cases']}", flush=True)
    elif "epoch" in event and "batch" not in event:
        print(f"[{event['step']}/{event['steps']}] {stage:<20} epoch {event['epoch']:>3}/{event['epochs']:<3} "
              f"loss {event['loss']:.4f}  val_loss {event['val_loss']:.4f}  val_auc {event['val_auc']:.3f}  "
              f"lr {event['lr']:.1e}  ({event['seconds']:.1f} s)", flush=True)
    elif stage == "evaluate":
        print("evaluating on the held-out test patients", flush=True)
    if "fold" in event and event.get("stage") == "slices" and event.get("case") == 1:
        print(f"--- repeat {event['repeat']}/{event['repeats']}, fold {event['fold']}/{event['folds']} ---",
              flush=True)


def continue_command(args: argparse.Namespace) -> str:
    """The command line that continues an interrupted run in ``args.out``: ``--resume`` once a checkpoint
    exists (it carries the settings), otherwise the same command again with ``--overwrite``."""
    import shlex
    import subprocess
    from pathlib import Path

    from DMIFLib.training.checkpoint import CHECKPOINT_NAME

    deep = Path(args.out) / "deep"  # method radiomics trains its DMIF-Net there first
    if (Path(args.out) / CHECKPOINT_NAME).is_file() or (
            args.method == "radiomics" and any((deep / name).is_file() for name in (CHECKPOINT_NAME, "model.pt"))):
        words = ["dmif", "train", "--cohort", args.cohort, "--out", args.out, "--resume"]
        words += ["--method", args.method] if args.method != "dmif" else []
        words += ["--device", args.device] if args.device != "auto" else []
    else:
        words = ["dmif", "train", "--cohort", args.cohort, "--out", args.out, "--preset", args.preset,
                 "--device", args.device, "--overwrite"]
        words += ["--method", args.method] if args.method != "dmif" else []
        for key in ("seed", "epochs", "marker", "overrides"):
            if getattr(args, key) is not None:
                words += [f"--{key}", str(getattr(args, key))]
    return subprocess.list2cmdline(words) if sys.platform == "win32" else shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from DMIFLib.methods import get_method
    from DMIFLib.run_folder import OutputFolderError, run_folder
    from DMIFLib.training import RunCancelledError, distributed
    from DMIFLib.training.errors import user_errors

    if distributed.launched() and args.cv is not None:
        print("dmif train: error: --cv runs in one process; start it without torchrun", file=sys.stderr)
        return 2
    if distributed.launched() and args.method != "dmif":
        print(f"dmif train: error: --method {args.method} runs in one process; start it without torchrun",
              file=sys.stderr)
        return 2
    if args.resume and args.overwrite:
        print("dmif train: error: --resume continues the run in --out and --overwrite replaces it; give one",
              file=sys.stderr)
        return 2
    try:
        method = get_method(args.method)
    except user_errors() as error:
        print(f"dmif train: error: {error}", file=sys.stderr)
        return 2
    if args.cv is not None:
        return _run_cv(args)
    if args.repeats != 1:
        print("dmif train: error: --repeats needs --cv K", file=sys.stderr)
        return 2
    try:
        # under torchrun (docs/training.md): one process per GPU; rank 0 holds the folder and writes the outputs
        with distributed.session(args.device) as device, distributed.on_main(lambda: run_folder(
                args.out, "train", overwrite=args.overwrite, resume=args.resume, protect=(args.cohort,),
                resume_hint="--resume"), OutputFolderError):
            result = method.train(args.cohort, args.out, preset=args.preset, device=device, resume=args.resume,
                                  progress=print_progress if distributed.is_main() else None,
                                  overrides=overrides_from_args(args))
    except (OutputFolderError, *user_errors()) as error:
        print(f"dmif train: error: {error}", file=sys.stderr)
        return 2
    except (RunCancelledError, KeyboardInterrupt) as error:
        print(f"dmif train: {str(error) or 'interrupted'}; to continue run: {continue_command(args)}", file=sys.stderr)
        return 130
    if not result.metrics:  # a torchrun process other than rank 0
        return 0
    print(f"\nheld-out test patients ({result.metrics_path}):")
    for row in result.metrics:
        print(f"  {row['level']:<8} {row['model']:<6} n={row['n']:<5} AUC={row['auc']:.4f} acc={row['accuracy']:.4f} "
              f"sens={row['sensitivity']:.4f} spec={row['specificity']:.4f} cut-off={row['cutoff']:.3f}")
    print(f"model: {result.model_path}  ({result.seconds:.0f} s)")
    return 0


def _run_cv(args: argparse.Namespace) -> int:
    from DMIFLib.run_folder import OutputFolderError, run_folder
    from DMIFLib.training import RunCancelledError
    from DMIFLib.training.cross_validation import cross_validate
    from DMIFLib.training.errors import user_errors

    try:
        with run_folder(args.out, "train", overwrite=args.overwrite, resume=args.resume, protect=(args.cohort,),
                        resume_hint="--resume"):
            result = cross_validate(args.cohort, args.out, k=args.cv, repeats=args.repeats, preset=args.preset,
                                    device=args.device, resume=args.resume, progress=print_progress,
                                    overrides=overrides_from_args(args), method=args.method)
    except (OutputFolderError, *user_errors()) as error:
        print(f"dmif train: error: {error}", file=sys.stderr)
        return 2
    except (RunCancelledError, KeyboardInterrupt) as error:
        print(f"dmif train: {str(error) or 'interrupted'}; continue with the same command and --resume",
              file=sys.stderr)
        return 130
    print(f"\nout-of-fold predictions, {args.cv}-fold cross-validation x {args.repeats} ({result.metrics_path}):")
    for row in result.metrics:
        print(f"  {row['level']:<8} {row['model']:<6} n={row['n']:<5} AUC={row['auc']:.4f} "
              f"[{row['auc_ci_low']:.4f}, {row['auc_ci_high']:.4f}] (DeLong)  repeats: mean "
              f"{row['auc_repeat_mean']:.4f} sd {row['auc_repeat_sd']:.4f}  acc={row['accuracy']:.4f} "
              f"cut-off={row['cutoff']:.3f}")
    print(f"model (ensemble of {args.cv * args.repeats} fold models): {result.model_path}  ({result.seconds:.0f} s)")
    return 0
