"""`dmif bench`: scattering throughput vs kymatio, MI-Net epoch with vs without the scattering cache, inference."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "benchmark: scattering vs kymatio, MI-Net epoch cached vs on the fly, per-patient inference time and memory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all CPU cores)")
    parser.add_argument("--slices", type=int, default=900, help="synthetic slices in the MI-Net epoch (default 900)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up (default 3)")
    parser.add_argument("--presets", default="quick,paper",
                        help="net presets for the inference figure, comma-separated (default quick,paper)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON (atomically)")


def run(args: argparse.Namespace) -> int:
    from DMIFLib.atomic import atomic_write_text
    from DMIFLib.scattering.benchmark import format_table, run_benchmark

    presets = tuple(p for p in args.presets.split(",") if p)
    try:
        results = run_benchmark(device=args.device, threads=args.threads, slices=args.slices, repeats=args.repeats,
                                presets=presets, progress=lambda message: print(message, file=sys.stderr, flush=True))
    except (ValueError, RuntimeError) as error:
        print(f"dmif bench: {error}", file=sys.stderr)
        return 1
    print(format_table(results))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0
