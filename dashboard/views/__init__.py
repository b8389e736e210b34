"""One module per view; each has ``render(ctx)`` and reads only through ``dashboard.cache``."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.data import Search


@dataclass(frozen=True)
class Context:
    url: str
    search: str | None
    searches: tuple[Search, ...]
    live: bool

    def names(self) -> list[str]:
        return [s.name for s in self.searches]
