"""autopeft: multi-objective search over parameter-efficient fine-tuning configurations."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_adapter", "load_merged"]


def __getattr__(name: str):
    # Lazy, so `import autopeft` (and the CLI's start) does not pay for importing torch.
    if name in __all__:
        from autopeft import loading

        return getattr(loading, name)
    raise AttributeError(name)
