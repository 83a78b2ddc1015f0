"""``python -m DMIFLib`` is the ``dmif`` command."""

from DMIFLib.cli import main

raise SystemExit(main())
