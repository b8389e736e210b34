"""The built-in search spaces (``search_space: lora`` names ``lora.yaml`` here), as YAML files.

A package, not only a folder, so that an installed autopeft carries them (pyproject.toml's package data) and finds
them beside its own code wherever it is installed (``autopeft.spec.SEARCH_SPACES_DIR``).
"""
