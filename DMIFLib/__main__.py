"""``python -m DMIFLib`` is the ``dmif`` command."""

from DMIFLib.cli import entry_point

entry_point()
