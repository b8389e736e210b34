"""PEFT methods behind one contract (see base.py), found by name through the registry.

Importing this package registers every built-in method.
"""

from autopeft.methods import lora  # noqa: F401  (registers the method)
from autopeft.methods.registry import available_methods, get_method

__all__ = ["available_methods", "get_method"]
