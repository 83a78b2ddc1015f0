"""Methods: DMIF-Net (seed 000), deep + radiomics fusion (seed 001), ... behind one interface (docs/methods.md)."""

from DMIFLib.methods.base import Method
from DMIFLib.methods.case_input import CaseInput
from DMIFLib.methods.registry import DEFAULT_METHOD, METHODS, UnknownMethodError, get_method, register

__all__ = ["DEFAULT_METHOD", "METHODS", "CaseInput", "Method", "UnknownMethodError", "get_method", "register"]
