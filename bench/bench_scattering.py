"""Benchmark script: the same figures as ``dmif bench`` (run it from the repository root, in the venv).

    python bench/bench_scattering.py [--device cuda] [--threads N] [--slices 900] [--json out.json]
"""

import sys

from DMIFLib.allocator import tune_allocator
from DMIFLib.cli import main

if __name__ == "__main__":
    tune_allocator()  # as the dmif command does
    sys.exit(main(["bench", *sys.argv[1:]]))
