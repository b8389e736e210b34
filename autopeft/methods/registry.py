"""Method name -> implementation. Adding a method is adding a module that decorates its class with :func:`register`.

Installed plugins (``autopeft.methods`` entry points, autopeft/plugins.py) join on the first look-up, so every
process that asks for a method by name — the cost model, the workers, the export — sees them.
"""

from __future__ import annotations

from autopeft.errors import UserError
from autopeft.methods.base import Method

_METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    _METHODS[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def _load_installed() -> None:
    from autopeft.plugins import METHOD_GROUP, load_installed

    load_installed(METHOD_GROUP)


def registered(name: str) -> Method | None:
    """The method registered under ``name`` so far, without loading plugins (for the plugin loader itself)."""
    return _METHODS.get(name)


def get_method(name: str) -> Method:
    _load_installed()
    if name not in _METHODS:
        from autopeft.plugins import METHOD_GROUP, broken_note

        raise UserError(f"unknown PEFT method {name!r}; available: {', '.join(sorted(_METHODS))}"
                        f"{broken_note(METHOD_GROUP)}")
    return _METHODS[name]


def available_methods() -> list[str]:
    _load_installed()
    return sorted(_METHODS)
