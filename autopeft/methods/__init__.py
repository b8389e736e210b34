"""PEFT methods behind one contract (see base.py), found by name through the registry.

Importing this package registers every built-in method: one module per method family.
"""

from autopeft.methods import (  # noqa: F401  (importing registers the methods)
    adalora,
    bitfit,
    bottleneck,
    full,
    ia3,
    ln_tuning,
    lora,
    lora_variants,
    partial,
    prefix,
    sparse,
    union,
)
from autopeft.methods.registry import available_methods, get_method

__all__ = ["available_methods", "get_method"]
