"""Method name -> implementation. Adding a method is adding a module that decorates its class with :func:`register`."""

from __future__ import annotations

from autopeft.errors import UserError
from autopeft.methods.base import Method

_METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    _METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise UserError(f"unknown PEFT method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def available_methods() -> list[str]:
    return sorted(_METHODS)
