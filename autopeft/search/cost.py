"""Cost before training: a configuration's trainable parameters and adapter size, without training or weights.

The method is built for real on a *meta-device* copy of the model (shapes only, no memory, ~30 ms), and counted
by the same code that counts the trained model, so the prediction is not a formula that can drift from what the
worker builds: it is the same build. Used by ``autopeft space describe`` and by samplers that need costs known in
advance.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

import torch

from autopeft.methods import get_method
from autopeft.models.base import TASK_MODEL_CLASSES, load_model_config
from autopeft.models.pooling import apply_pooling, resolve_pooling
from autopeft.models.quantize import check_compatible
from autopeft.spec import ConstraintSpec, ModelSpec

# Measurements a constraint can be decided on before training: the spec's name -> the predicted cost's name.
KNOWN_BEFORE_TRAINING = {"trainable_params": "trainable_params", "trainable_percent": "trainable_percent",
                         "adapter_bytes": "adapter_tensor_bytes"}
LOWER_BOUNDS_ONLY = {"adapter_bytes"}  # the prediction bounds it from below (the file adds headers)


@lru_cache(maxsize=8)
def _meta_base(config_json: str, task: str, pooling: str = "cls", config_class: type | None = None,
               trust_remote_code: bool = False):
    """The base model on the meta device (shapes only), from its configuration. ``config_class``: the class of a
    configuration transformers does not register (a model's own code, ``trust_remote_code``)."""
    from transformers import AutoConfig

    raw = json.loads(config_json)
    model_type = raw.pop("model_type")
    config = config_class(**raw) if config_class is not None else AutoConfig.for_model(model_type, **raw)
    with torch.device("meta"):
        return apply_pooling(TASK_MODEL_CLASSES[task].from_config(config, trust_remote_code=trust_remote_code),
                             pooling)


def fresh_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a meta-device model that one build may change freely: every module, parameter, model configuration
    and module-level container is new, the (shape-only) tensors are shared, tied parameters stay tied.

    Why not ``copy.deepcopy``: it reduces every attribute of every module through pickle's protocol, 36–38 ms for
    MiniLM on an AVX2-only AMD EPYC against 8–9 ms for this copy, and the known-cost sampler counts hundreds of
    candidates a search within a time budget per proposal (peft's build, about 35 ms, is the rest of a count).
    ``tests/test_known_costs.py`` holds every method's prediction on it to the prediction on a deep copy, in an
    order where a leak from one build would show."""
    from transformers import PretrainedConfig

    copies: dict[int, Any] = {}  # id of an original -> its copy: what is shared stays shared

    def parameter(original: torch.nn.Parameter | None) -> torch.nn.Parameter | None:
        if original is None:
            return None
        if id(original) not in copies:
            copies[id(original)] = (torch.nn.Parameter(original.detach(), requires_grad=original.requires_grad)
                                    if type(original) is torch.nn.Parameter else copy.deepcopy(original))
        return copies[id(original)]

    def value(original: Any) -> Any:
        if isinstance(original, PretrainedConfig):
            if id(original) not in copies:
                copies[id(original)] = copy.deepcopy(original)
            return copies[id(original)]
        # The containers' own copy methods: copy.copy goes through pickle's protocol for an OrderedDict (a module
        # holds a dozen, its hooks).
        return original.copy() if isinstance(original, (dict, list, set)) else original

    def module(original: torch.nn.Module) -> torch.nn.Module:
        if id(original) in copies:
            return copies[id(original)]
        made = original.__class__.__new__(original.__class__)
        copies[id(original)] = made
        attributes = {name: value(v) for name, v in original.__dict__.items()}
        attributes["_parameters"] = {name: parameter(p) for name, p in original._parameters.items()}
        attributes["_modules"] = {name: None if child is None else module(child)
                                  for name, child in original._modules.items()}
        made.__dict__ = attributes  # not through Module.__setattr__, which sorts every value it is given
        return made

    return module(model)


# Counts already made in this process: (model configuration, task, pooling, configuration) -> (the method object
# that built it, its costs). The sampler counts a candidate when it draws it, the controller counts the proposal
# again before it trains, and a notebook's second search (or a test's) draws the same candidates again: each count
# is a peft build of 30-100 ms. A method registered again under its name (a notebook cell rerun) is a new object,
# so its configurations are counted afresh.
_COUNTED: dict[tuple[str, str, str, str], tuple[Any, dict[str, float]]] = {}
_COUNTED_MAX = 4096


def forget_counts() -> None:
    """Empty the memo of counts (tests that must build every time)."""
    _COUNTED.clear()


def predict_cost_for(model_config: Any, task: str, config: dict[str, Any], pooling: str = "cls",
                     trust_remote_code: bool = False) -> dict[str, float]:
    """Trainable parameters, their share of the base, and the bytes of the saved adapter tensors (``pooling``:
    the resolved pooling, which can take the base's pooler out of the count; ``trust_remote_code``: the model's
    own code builds it, as ``model.trust_remote_code`` allowed when it was loaded)."""
    model_json = model_config.to_json_string(use_diff=False)
    method = get_method(config["method"])
    key = (model_json, task, pooling, json.dumps(config, sort_keys=True, default=repr))
    counted = _COUNTED.get(key)
    if counted is not None and counted[0] is method:
        return dict(counted[1])
    base = _meta_base(model_json, task, pooling, type(model_config) if trust_remote_code else None,
                      trust_remote_code)
    check_compatible(method.name, method.library, int(config.get("base_bits", 16)), config)
    with torch.device("meta"):
        built = method.build(fresh_copy(base), config)
    trainable, _ = method.count(built)
    total = sum(p.numel() for p in base.parameters())
    costs = {"trainable_params": float(trainable), "trainable_percent": 100.0 * trainable / total,
             "adapter_tensor_bytes": float(method.saved_bytes(built, config))}
    if len(_COUNTED) >= _COUNTED_MAX:
        _COUNTED.pop(next(iter(_COUNTED)))  # the oldest
    _COUNTED[key] = (method, costs)
    return dict(costs)


def predict_cost(model: ModelSpec, num_labels: int, config: dict[str, Any]) -> dict[str, float]:
    """:func:`predict_cost_for` on a model named by the spec (its configuration only is read)."""
    model_config = copy.deepcopy(load_model_config(model))
    model_config.num_labels = num_labels
    pooling = resolve_pooling(model.pooling, model.name_or_path, model.task, model.revision)
    return predict_cost_for(model_config, model.task, config, pooling, model.trust_remote_code)


def known_violations(constraints: list[ConstraintSpec], predicted: dict[str, float]) -> list[float] | None:
    """The constraints evaluated on the costs known before training, or None if all may be met.

    Trainable parameters (and their share) are exact before training; the adapter's tensor bytes are a lower
    bound of its file, so only a ``max`` on ``adapter_bytes`` can be decided. A constraint on anything measured in
    training (accuracy, memory, time) is left undecided (violation 0) until the trial runs."""
    violations = []
    for constraint in constraints:
        known = KNOWN_BEFORE_TRAINING.get(constraint.name)
        value = None if known is None else predicted.get(known)
        if value is None or (constraint.name in LOWER_BOUNDS_ONLY and constraint.max is None):
            violations.append(0.0)
            continue
        violations.append(max(0.0, constraint.violation(value)))
    return violations if any(v > 0 for v in violations) else None


def module_roles(model: ModelSpec, model_config: Any) -> dict[str, Any]:
    """Where the space's module roles land on this model (built on the meta device), and whether the map is its
    type's own or inferred from its first block's module names; or why no roles can be placed."""
    from autopeft.errors import UserError
    from autopeft.models.architectures import ROLE_MODULES, role_modules

    base = _meta_base(model_config.to_json_string(use_diff=False), model.task, "cls",
                      type(model_config) if model.trust_remote_code else None, model.trust_remote_code)
    try:
        roles = role_modules(base)
    except UserError as exc:
        return {"roles": None, "source": str(exc)}
    own = model_config.model_type in ROLE_MODULES
    return {"roles": roles, "source": "the model type's own map" if own else
            f"inferred from its first block (no map for model type {model_config.model_type!r})"}


def describe_space(raw_space: Any, model: ModelSpec, *, num_labels: int = 2, samples: int = 200,
                   seed: int = 0) -> dict[str, Any]:
    """What a space contains on a model: its parameters, its size, and the trainable-parameter range.

    The range comes from ``samples`` random points, each built on the meta device and counted, so it is a
    measured range of real configurations, not a bound; rejected points are tallied by reason.
    """
    import optuna

    from autopeft.models.architectures import num_layers
    from autopeft.search.space import SearchSpace
    from autopeft.search.space_names import check_space_names

    model_config = load_model_config(model)
    space = SearchSpace.from_dict(raw_space, num_layers(model_config),
                                  hidden_size=getattr(model_config, "hidden_size", 768))
    check_space_names(space.definition)
    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a scratch study to draw from: not worth a log line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(quiet)
    per_method: dict[str, list[float]] = {}
    percents: list[float] = []
    adapter_bytes: list[float] = []
    rejected: dict[str, int] = {}
    for _ in range(samples):
        trial = study.ask()
        proposal = space.suggest(trial)
        reason = proposal.rejection
        if reason is None:
            try:
                cost = predict_cost(model, num_labels, proposal.config)
            except (ValueError, TypeError, KeyError) as exc:
                reason = str(exc)
            else:
                per_method.setdefault(proposal.config["method"], []).append(cost["trainable_params"])
                percents.append(cost["trainable_percent"])
                adapter_bytes.append(cost["adapter_tensor_bytes"])
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
        study.tell(trial, 0.0)
    return {
        "name": space.name,
        "description": space.definition.description,
        "model": model.name_or_path,
        "layers": space.num_layers,
        "hidden_size": space.hidden_size,
        "parameters": space.describe(),
        "size": space.size(),
        "samples": samples,
        "trainable_params": {m: (min(v), max(v), len(v)) for m, v in sorted(per_method.items())},
        "trainable_percent": (min(percents), max(percents)) if percents else None,
        "adapter_tensor_bytes": (min(adapter_bytes), max(adapter_bytes)) if adapter_bytes else None,
        "rejected": rejected,
        "module_roles": module_roles(model, model_config),
    }
