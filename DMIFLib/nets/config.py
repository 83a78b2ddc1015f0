"""Base class for the nets' typed configurations: dataclasses that round-trip through plain types.

``to_dict()`` gives only ``dict``/``list``/``str``/``int``/``float``/``bool`` values (tuples become lists), so a
model file that stores it loads with ``torch.load(weights_only=True)`` and can be written as JSON;
``from_dict()`` rebuilds the dataclass (lists become tuples again, nested configs are rebuilt) and rejects
unknown keys with a clear error.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

C = TypeVar("C", bound="NetConfig")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass
class NetConfig:
    """Mixin for a net's configuration dataclass."""

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain types (nested configs as dicts, tuples as lists)."""
        return _plain(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Rebuild from :meth:`to_dict`'s output; missing keys take their defaults."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown configuration keys {unknown}; known: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        kwargs = {name: _from_plain(hints[name], value) for name, value in data.items()}
        return cls(**kwargs)


def _from_plain(hint: Any, value: Any) -> Any:
    if isinstance(hint, type) and issubclass(hint, NetConfig):
        return hint.from_dict(value)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin is dict and isinstance(value, dict):
        _, value_hint = typing.get_args(hint)
        return {k: _from_plain(value_hint, v) for k, v in value.items()}
    return value
