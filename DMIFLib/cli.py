"""The ``dmif`` command line.

Every sub-command is one module in :mod:`DMIFLib.commands`; the module's name (``_`` read as ``-``) is the
command's name. A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Heavy imports (torch, SimpleITK) stay inside ``run`` so that ``dmif --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence

from DMIFLib import __version__, commands


def command_modules() -> dict[str, str]:
    """Map of command name -> module name, in alphabetical order."""
    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_"))
    return {name.replace("_", "-"): f"{commands.__name__}.{name}" for name in names}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmif",
        description="DMIF-Net glioma molecular-status prediction from MRI (research use only).",
    )
    parser.add_argument("--version", action="version", version=f"DMIFLib {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in command_modules().items():
        module = importlib.import_module(module_name)
        # help= is %-formatted by argparse (a literal % is written %%), description= is printed as it is
        sub = subparsers.add_parser(name, help=module.HELP.replace("%", "%%"), description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def entry_point() -> None:
    """The installed ``dmif`` script and ``python -m DMIFLib``: :func:`main` in a process of its own, whose
    allocator is tuned for large arrays (:mod:`DMIFLib.allocator`)."""
    from DMIFLib.allocator import tune_allocator

    tune_allocator()
    raise SystemExit(main())


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr, ``dmif: warning: MESSAGE`` (no source file and line)."""
    print(f"dmif: warning: {' '.join(str(message).split())}", file=file or sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from DMIFLib.run_folder import OutputFolderError

    args = build_parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a console or pipe that cannot encode "→" or "–" must not end the run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return int(args.run(args) or 0)
    except OutputFolderError as error:  # a command that does not catch it itself
        print(f"dmif {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmif: interrupted", file=sys.stderr)
        return 130
