"""autopeft: multi-objective search over parameter-efficient fine-tuning configurations.

The public Python API (docs/api.md)::

    import autopeft

    search = autopeft.run_search("examples/sst2.yaml")     # or a dict, or a SearchSpec; data= for your own rows
    search.trials_dataframe()
    search.export("exported", picks=["knee"])
"""

from __future__ import annotations

__version__ = "0.1.0"

# Name -> the module that defines it. Imported lazily, so `import autopeft` (and the CLI's start) does not pay for
# importing torch, Ray or Optuna.
_EXPORTS = {
    "run_search": "autopeft.api",
    "resume_search": "autopeft.api",
    "join_search": "autopeft.api",
    "load_search": "autopeft.api",
    "list_searches": "autopeft.api",
    "delete_search": "autopeft.api",
    "search_summaries": "autopeft.api",
    "Search": "autopeft.api",
    "SearchInterrupted": "autopeft.api",
    "SearchSpec": "autopeft.spec",
    "UserError": "autopeft.errors",
    "register_metric": "autopeft.plugins",
    "register_method": "autopeft.plugins",
    "load_adapter": "autopeft.loading",
    "load_merged": "autopeft.loading",
    "describe_space": "autopeft.search.space_info",
    "draft_spec": "autopeft.tasks.draft",
    "list_methods": "autopeft.search.space_info",
    # The types a user meets in what the API hands back: progress events, trial records, the noise report.
    "Progress": "autopeft.search.controller",
    "TrialRecord": "autopeft.store.storage",
    "NoiseReport": "autopeft.results.noise",
    "Draft": "autopeft.tasks.draft",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
