"""DMIF headless batch prediction: predictions.tsv + a Slicer scene of result tables for a cohort CSV.

    Slicer --no-main-window --python-script DMIFBatch.py -- cohort.csv model.pt out/
    python DMIFBatch.py cohort.csv model.pt out/          (PyPI slicer-core installed)

See docs/slicer.md. DMIFLib is found next to this file (source tree or installed extension).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from DMIFLib.mrml.batch import main

if __name__ == "__main__":
    code = main()
    import slicer

    if hasattr(slicer, "app"):
        slicer.util.exit(code)  # inside Slicer: quit the application with the batch's exit code
    else:
        sys.exit(code)
