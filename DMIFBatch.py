"""DMIF headless batch prediction: predictions.tsv + a Slicer scene of result tables for a cohort CSV.

    Slicer --no-main-window --python-script <this file> -- cohort.csv model.pt out/ [--install-dependencies]
        [--saliency [gradcam|occlusion|integrated_gradients]] [--report]
    python DMIFBatch.py cohort.csv model.pt out/          (PyPI slicer-core and DMIFLib installed)

The built extension installs this file in ``<extension>/share/Slicer-X.Y/DMIF/``, not in qt-scripted-modules:
Slicer loads every .py file there as a module. Inside Slicer, DMIFLib and DMIFPredictLib are found on the module
paths of the installed extension; in the source tree, next to this file.

Any failure (an older Slicer, a missing dependency, a bad cohort or model, an unexpected error) ends with one
line "DMIFBatch: error: ..." on stderr and a non-zero exit code (2: bad input, 1: anything else), and inside
Slicer the application exits with that code (``--python-script`` alone would leave it running). See docs/slicer.md.
"""

import os
import sys

INSTALL_FLAG = "--install-dependencies"


def _add_source_tree_paths() -> None:
    """In the source tree, DMIFLib is next to this file and DMIFPredictLib in DMIFPredict/."""
    root = os.path.dirname(os.path.abspath(__file__))
    for path in (root, os.path.join(root, "DMIFPredict")):
        if os.path.isfile(os.path.join(path, "DMIFLib", "__init__.py")) or \
                os.path.isfile(os.path.join(path, "DMIFPredictLib", "__init__.py")):
            if path not in sys.path:
                sys.path.append(path)


def _slicer_application():
    """slicer.app inside the Slicer application, None under plain Python (slicer-core)."""
    try:
        import slicer
    except ImportError:
        return None
    return getattr(slicer, "app", None)


def _ensure_dependencies(argv) -> None:
    """Inside Slicer: the Slicer version, then (with --install-dependencies) install what is missing: torch
    through the PyTorch extension (CPU build with --device cpu), the rest with pip. Everywhere: raise
    DependencyError naming what is still missing."""
    from DMIFPredictLib.dependencies import (
        DependencyError,
        ensureDependencies,
        missingDependencies,
        unsupportedSlicerMessage,
    )

    inside_slicer = _slicer_application() is not None
    if inside_slicer:
        problem = unsupportedSlicerMessage()
        if problem:
            raise DependencyError(problem)
        if INSTALL_FLAG in argv:
            cpu = "--device=cpu" in argv or any(argv[i:i + 2] == ["--device", "cpu"] for i in range(len(argv)))
            ensureDependencies(askConfirmation=False, forceCpu=cpu)
    missing = missingDependencies()
    if missing:
        hint = f"run again with {INSTALL_FLAG}" if inside_slicer else "pip install DMIFLib (see README)"
        raise DependencyError(f"missing Python packages: {', '.join(missing)}; {hint}")


def run_batch(argv) -> int:
    """The batch with every failure turned into one line on stderr and an exit code."""
    try:
        _add_source_tree_paths()
        if not {"-h", "--help"} & set(argv):
            _ensure_dependencies(argv)
        from DMIFLib.mrml.batch import main

        return main(argv)
    except SystemExit as stop:  # argparse: usage errors (2) and --help (0)
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:  # any failure must end the batch with one clear line
        print(f"DMIFBatch: error: {error or type(error).__name__}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:  # Slicer --python-script passes what follows '--' through
        arguments = arguments[1:]
    code = run_batch(arguments)
    if _slicer_application() is not None:
        import slicer

        slicer.util.exit(code)  # inside Slicer: quit the application with the batch's exit code
    else:
        sys.exit(code)
