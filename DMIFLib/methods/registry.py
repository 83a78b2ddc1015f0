"""The methods this DMIFLib knows, by name: ``METHODS``, :func:`get_method`, :func:`register`.

A new method is one file with a :class:`~DMIFLib.methods.base.Method` subclass and one line here.
"""

from __future__ import annotations

import importlib

from DMIFLib.methods.base import Method

# name -> "module:class", imported on first use (heavy dependencies stay out of `dmif --help`)
METHODS: dict[str, str] = {
    "dmif": "DMIFLib.methods.dmif:DMIFMethod",
    "radiomics": "DMIFLib.methods.radiomics:RadiomicsFusionMethod",
    "transfer": "DMIFLib.methods.transfer:TransferMethod",
}
DEFAULT_METHOD = "dmif"


class UnknownMethodError(ValueError):
    """A method name this DMIFLib does not provide."""


def register(name: str, target: str) -> None:
    """Add a method: ``target`` is ``"module:Class"`` of a :class:`Method` subclass."""
    METHODS[name] = target


def get_method(name: str) -> Method:
    """The method called ``name``; :class:`UnknownMethodError` (one line, lists the known ones) otherwise."""
    target = METHODS.get(name)
    if target is None:
        raise UnknownMethodError(f"method {name!r} is not available in this DMIFLib; available: "
                                 f"{', '.join(METHODS)}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()
