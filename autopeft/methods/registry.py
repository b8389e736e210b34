"""Method name -> implementation. Adding a method is adding a module that calls :func:`register`."""

from __future__ import annotations

from autopeft.errors import UserError
from autopeft.methods.base import PeftMethod

_METHODS: dict[str, PeftMethod] = {}


def register(cls: type[PeftMethod]) -> type[PeftMethod]:
    _METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> PeftMethod:
    if name not in _METHODS:
        raise UserError(f"unknown PEFT method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def available_methods() -> list[str]:
    return sorted(_METHODS)
