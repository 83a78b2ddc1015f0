"""Benchmark script: the same figures as ``dmif bench`` (run it from the repository root, in the venv).

    python bench/bench_scattering.py [--device cuda] [--threads N] [--slices 900] [--json out.json]
"""

import sys

from DMIFLib.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
