"""Every name a search space sets must be one a trial reads.

A configuration is a nested dict that the worker and the method read with defaults (``config["lora"].get("r",
8)``), so a misspelt name in a space (``lora.rnak``, ``learnig_rate``) or an option of the wrong method
(``lora.bottleneck``) is not an error anywhere downstream: every trial trains at the default, while the sampler
spends its model on a parameter that changes nothing and the dashboard shows it as searched. Here each name of
the space's ``parameters`` and ``fixed`` is checked against what is read: the configuration's own keys
(``CONFIGURATION_KEYS``) and, for ``METHOD.OPTION``, the options the method declares (``Method.options``; a
plugin's method that declares none is not checked).
"""

from __future__ import annotations

import difflib
from typing import Any

from autopeft.errors import UserError
from autopeft.search.space import CategoricalParam, SpaceDef

# The keys of a configuration that the worker reads beside the method's own block, and why.
CONFIGURATION_KEYS: dict[str, str] = {
    "method": "which PEFT method the trial builds",
    "layers": "the transformer layers the method is placed in",
    "learning_rate": "the optimizer's peak learning rate",
    "base_bits": "the bit width of the frozen base, 16, 8 or 4",
    "seed": "the seed of sparse fine-tuning's random selection",
}


def check_space_names(definition: SpaceDef) -> None:
    """Raise UserError naming every parameter or fixed value of the space that no trial would read."""
    problems = unread_names(definition)
    if problems:
        raise UserError("; ".join(problems))


def unread_names(definition: SpaceDef) -> list[str]:
    """One line per name of ``definition`` that no trial reads, with the name it most resembles."""
    from autopeft.methods.registry import available_methods, get_method

    methods = {name: get_method(name) for name in available_methods()}
    drawn = {str(c) for c in getattr(definition.parameters.get("method"), "choices", [])}
    if "method" in definition.fixed:
        drawn.add(str(definition.fixed["method"]))
    unknown = sorted(drawn - set(methods))
    if unknown:  # its options would all read as unread: the method's own name is the problem to fix
        where = "parameters.method.choices" if "method" in definition.parameters else "fixed.method"
        return [f"search_space.{where}: {name!r} is not a PEFT method{_did_you_mean(name, list(methods))}; "
                f"available: {', '.join(sorted(methods))}" for name in unknown]
    problems = []
    for section, names in (("parameters", dict(definition.parameters)), ("fixed", definition.fixed)):
        for name, value in names.items():
            options = value if section == "fixed" and isinstance(value, dict) and "." not in name else None
            for problem in _name_problems(name, options, methods, drawn):
                problems.append(f"search_space.{section}.{name}: {problem}")
    return problems + _conditions_that_never_hold(definition)


def _conditions_that_never_hold(definition: SpaceDef) -> list[str]:
    """A ``when`` that asks a categorical or fixed parameter for a value it never takes (``when: {method: lorra}``)
    leaves its parameter undrawn in every trial: searched on paper, never in fact."""
    problems = []
    for name, param in definition.parameters.items():
        for dependency, wanted in (param.when or {}).items():
            source = definition.parameters.get(dependency)
            if dependency in definition.fixed:
                takes = [definition.fixed[dependency]]
            elif isinstance(source, CategoricalParam):
                takes = list(source.choices)
            else:  # a range or a switch: what it takes is not a list to check against
                continue
            asked = wanted if isinstance(wanted, list) else [wanted]
            never = [value for value in asked if value not in takes]
            if never:
                close = _did_you_mean(str(never[0]), [str(t) for t in takes])
                problems.append(f"search_space.parameters.{name}.when: {dependency} never takes "
                                f"{', '.join(map(repr, never))}{close} (it takes {', '.join(map(repr, takes))})"
                                + ("; the parameter is never drawn" if len(never) == len(asked) else ""))
    return problems


def _name_problems(name: str, nested: dict[str, Any] | None, methods: dict[str, Any],
                   drawn: set[str]) -> list[str]:
    namespace, _, option = name.partition(".")
    if not option and nested is None:
        if namespace in CONFIGURATION_KEYS:
            return []
        known = [*CONFIGURATION_KEYS, *(f"{m}.{o}" for m in drawn if m in methods for o in methods[m].options or ())]
        return [f"no trial reads {name!r}{_did_you_mean(name, known)}; a configuration's own keys are "
                f"{', '.join(CONFIGURATION_KEYS)}, and a method's options are written METHOD.OPTION (lora.r)"]
    if namespace not in methods:
        return [f"{namespace!r} is not a PEFT method{_did_you_mean(namespace, list(methods))}, so no trial reads "
                f"{name!r}"]
    if namespace not in drawn:
        return [f"the space never draws method {namespace!r} (it draws {', '.join(sorted(drawn)) or 'none'}), so "
                f"no trial reads {name!r}"]
    declared = methods[namespace].options
    if declared is None:
        return []
    asked = [option.split(".")[0]] if option else list(nested or {})
    return [f"{namespace} has no option {key!r}{_did_you_mean(key, declared)}: a trial would train at its default; "
            f"its options: {', '.join(declared) or 'none'}" for key in asked if key not in declared]


def _did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
