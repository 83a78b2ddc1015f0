"""One module per ``dmif`` sub-command (see :mod:`DMIFLib.cli`)."""
