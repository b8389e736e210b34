"""Search spaces as data: parameters declared in YAML, sampled define-by-run through an Optuna trial.

A space maps dotted parameter names (``lora.r``) to distributions, with optional conditions (``when``) so that a
parameter is only drawn where it means something. Two composite kinds exist because PEFT needs them:
``subset`` (one on/off switch per element, e.g. target modules) and ``layers`` (one switch per transformer layer,
AutoPEFT's per-layer placement; its length comes from the model). A sampled point decodes to a nested
configuration dict; a point that breaks a rule (no layer on) is rejected with a reason instead of trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autopeft.errors import SpecError


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: dict[str, Any] | None = Field(None, description="Draw only when these parameters have these values "
                                        "(a list: any of them).")


class _PerMethod:
    """A parameter whose settings some methods override (``by_method``). Each override is a parameter of its own to
    the sampler, named with the method as a suffix (``learning_rate[partial]``): Optuna's samplers model a parameter
    by its name and expect its distribution to stay fixed."""

    by_method: dict[str, Any]

    def variant_for(self, method: Any) -> tuple[str, Any]:
        """(suffix of the sampler's parameter name, settings) for a point of ``method``: its own, or the shared."""
        if method in self.by_method:
            return f"[{method}]", self.by_method[method]
        return "", self

    def variants(self) -> list[tuple[str, Any]]:
        """Every set of settings, with where it is declared ("" or "by_method.NAME"), for validation messages."""
        return [("", self), *((f"by_method.{m}", v) for m, v in self.by_method.items())]


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float
    high: float


class FloatParam(_Param, _PerMethod):
    """A continuous parameter. ``by_method`` gives some methods a range of their own: methods differ by orders of
    magnitude in the learning rate they train at (full or partial fine-tuning ~5e-5, adapters ~1e-3, LayerNorm
    tuning ~1e-2), and one shared range wastes most draws. Each such range is a parameter of its own to the
    sampler (``learning_rate[partial]``), so its model of one method's rates is not blurred by another's."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    by_method: dict[str, FloatRange] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        for where, bounds in self.variants():
            where = f"{where}: " if where else ""
            if not bounds.low < bounds.high:
                raise ValueError(f"{where}low ({bounds.low}) must be below high ({bounds.high})")
            if self.log and bounds.low <= 0:
                raise ValueError(f"{where}a log-scaled range needs low > 0")
        return self



class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)


class SubsetParam(_Param):
    type: Literal["subset"]
    choices: list[str] = Field(min_length=1)
    min_size: int = Field(1, ge=0)


class LayerPlacement(BaseModel):
    """How a method's layers are drawn.

    ``form: switches`` (default) is AutoPEFT's per-layer placement: one on/off switch per layer, at least
    ``min_on`` on. ``form: top`` is a contiguous block that ends at the top layer, drawn as its first layer from
    ``starts`` (negative counts from the top: -2 is the top two layers; default every start leaving ``min_on``
    layers); it is the placement that lets the frozen layers below be cached (docs/decisions.md).
    """

    model_config = ConfigDict(extra="forbid")
    form: Literal["switches", "top"] = "switches"
    min_on: int = Field(1, ge=0)
    starts: list[int] | None = Field(None, min_length=1, description="form top: the first layers to choose from")

    def start_choices(self, num_layers: int) -> list[int]:
        if self.starts is None:
            return list(range(0, max(num_layers - max(self.min_on, 1), 0) + 1))
        resolved = [s + num_layers if s < 0 else s for s in self.starts]
        bad = [s for s, r in zip(self.starts, resolved) if not 0 <= r < num_layers]
        if bad:
            raise ValueError(f"starts {bad} are outside a model with {num_layers} layers (0..{num_layers - 1}, or "
                             f"-1..-{num_layers} from the top)")
        return list(dict.fromkeys(resolved))

    def domain(self, num_layers: int) -> str:
        if self.form == "top":
            return f"layers from one of {self.start_choices(num_layers)} to the top"
        return f"any of {num_layers} layers (≥ {self.min_on})"


class LayersParam(_Param, LayerPlacement, _PerMethod):
    """Which transformer layers a method goes into (see ``LayerPlacement``). ``by_method`` gives some methods a
    placement of their own, for the same reason floats have per-method ranges: partial fine-tuning pays off as a
    block of top layers, while an adapter's best layers are scattered (bench/live_baselines), and one shared form
    makes the sampler search 2^L subsets where a handful of blocks would do. Each such placement is a parameter
    of its own to the sampler (``layers[partial].from``)."""

    type: Literal["layers"]
    by_method: dict[str, LayerPlacement] = Field(default_factory=dict)


class SizesParam(_Param):
    """AutoPEFT's size ladder: 0 (off, if ``zero``), 1, 3, 6, 12, ... doubling up to ``up_to``.

    ``up_to`` is a number or ``hidden_size`` (the model's), so one space fits models of any width.
    """

    type: Literal["sizes"]
    up_to: int | Literal["hidden_size"] = "hidden_size"
    zero: bool = True

    def choices(self, hidden_size: int) -> list[int]:
        limit = hidden_size if self.up_to == "hidden_size" else self.up_to
        ladder = [0] if self.zero else []
        size = 1
        while size <= limit:
            ladder.append(size)
            size = 3 if size == 1 else size * 2
        if ladder[-1] != limit:
            ladder.append(limit)
        return ladder


ParamDef = Annotated[
    Union[FloatParam, IntParam, CategoricalParam, SubsetParam, LayersParam, SizesParam], Field(discriminator="type")
]


class RuleDef(BaseModel):
    """A rule across parameters: at least one of ``any_positive`` must be > 0 (where ``when`` holds)."""

    model_config = ConfigDict(extra="forbid")
    any_positive: list[str] = Field(min_length=1)
    when: dict[str, Any] | None = None


class SpaceDef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    parameters: dict[str, ParamDef]
    fixed: dict[str, Any] = Field(default_factory=dict)
    rules: list[RuleDef] = Field(default_factory=list)

    @field_validator("fixed")
    @classmethod
    def _fixed_learning_rate_is_a_number(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        # A parameter's bounds are typed; a fixed value is whatever the YAML or dict held, and the worker would
        # train on float("3e-4") while every view of the trial failed on the text.
        rate = fixed.get("learning_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"learning_rate: expected a positive number, e.g. 0.001 (got {rate!r})")
        return fixed

    @model_validator(mode="after")
    def _method_given(self) -> SpaceDef:
        if "method" not in self.parameters and "method" not in self.fixed:
            raise ValueError("the space must set 'method' (as a parameter or under fixed)")
        methods = self.parameters.get("method")
        choices = set(getattr(methods, "choices", [])) or {self.fixed.get("method")}
        for name, param in self.parameters.items():
            for dependency in (param.when or {}):
                if dependency not in self.parameters and dependency not in self.fixed:
                    raise ValueError(f"parameter {name!r} depends on unknown parameter {dependency!r}")
            unknown = sorted(set(param.by_method) - choices) if isinstance(param, _PerMethod) else []
            if unknown:
                raise ValueError(f"parameter {name!r}: by_method names {unknown}, which the space never draws "
                                 f"(its methods: {sorted(map(str, choices))})")
            if isinstance(param, _PerMethod) and param.by_method and "method" in self.parameters and \
                    list(self.parameters).index(name) < list(self.parameters).index("method"):
                raise ValueError(f"parameter {name!r} has by_method settings, so it must come after 'method'")
        return self


@dataclass
class Proposal:
    """A sampled point: its configuration, or why it cannot be trained."""

    config: dict[str, Any]
    rejection: str | None = None


def _set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _holds(condition: dict[str, Any] | None, config: dict[str, Any]) -> bool:
    """A `when` condition: every named parameter has the value, or one of the values when a list is given."""
    for name, wanted in (condition or {}).items():
        value = _get_dotted(config, name)
        if not (value in wanted if isinstance(wanted, list) else value == wanted):
            return False
    return True


def _get_dotted(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _leaves(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of every value in a nested configuration that is neither a dict nor None (unset)."""
    leaves: list[tuple[str, Any]] = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.extend(_leaves(value, dotted + "."))
        elif value is not None:
            leaves.append((dotted, value))
    return leaves


def _same(decoded: Any, wanted: Any) -> bool:
    """Whether a decoded option is the one a configuration asked for (absent: the method's default, taken as is;
    a list: the same elements, as a subset decodes in the space's order)."""
    if decoded is None:
        return True
    if isinstance(decoded, list) and isinstance(wanted, list):
        return sorted(map(str, decoded)) == sorted(map(str, wanted))
    return decoded == wanted


class SearchSpace:
    """A validated space bound to a model's layer count."""

    def __init__(self, definition: SpaceDef, num_layers: int, hidden_size: int = 768):
        self.definition = definition
        self.num_layers = num_layers
        self.hidden_size = hidden_size

    @classmethod
    def from_dict(cls, raw: Any, num_layers: int, source: str = "search_space",
                  hidden_size: int = 768) -> SearchSpace:
        try:
            definition = SpaceDef.model_validate(raw)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"] if p not in {"float", "int", "categorical",
                                                                             "subset", "layers", "sizes"})
                problems.append(f"search_space.{where}: {error['msg'].removeprefix('Value error, ')}")
            raise SpecError(source, problems) from None
        for name, param in definition.parameters.items():
            if not isinstance(param, LayersParam):
                continue
            for where, placement in param.variants():
                try:
                    placement.start_choices(num_layers)
                except ValueError as exc:
                    field = ".".join(filter(None, ["search_space.parameters", name, where, "starts"]))
                    raise SpecError(source, [f"{field}: {exc}"]) from None
        return cls(definition, num_layers, hidden_size)

    @property
    def name(self) -> str:
        return self.definition.name

    def suggest(self, trial: optuna.Trial) -> Proposal:
        """Draw a point through ``trial`` (so the sampler sees every choice) and decode it."""
        config: dict[str, Any] = {}
        for dotted, value in self.definition.fixed.items():
            _set_dotted(config, dotted, value)
        rejection = None
        for name, param in self.definition.parameters.items():
            if not _holds(param.when, config):
                continue
            value, problem = self._draw(trial, name, param, config.get("method"))
            _set_dotted(config, name, value)
            rejection = rejection or problem
        for other in self._method_choices() - {config.get("method")}:
            config.pop(other, None)  # a fixed option of another method (lora.alpha_over_r on a Pfeiffer point)
        for rule in self.definition.rules:
            if not _holds(rule.when, config):
                continue
            if not any((_get_dotted(config, name) or 0) > 0 for name in rule.any_positive):
                rejection = rejection or f"at least one of {rule.any_positive} must be above 0"
        return Proposal(config=config, rejection=rejection)

    def _method_choices(self) -> set[str]:
        """The methods this space chooses between (their option blocks are named after them)."""
        param = self.definition.parameters.get("method")
        return {str(c) for c in getattr(param, "choices", [])}

    def _draw(self, trial: optuna.Trial, name: str, param: Any, method: Any) -> tuple[Any, str | None]:
        if isinstance(param, FloatParam):
            suffix, bounds = param.variant_for(method)
            return trial.suggest_float(name + suffix, bounds.low, bounds.high, log=param.log), None
        if isinstance(param, IntParam):
            return trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step), None
        if isinstance(param, CategoricalParam):
            return trial.suggest_categorical(name, param.choices), None
        if isinstance(param, SubsetParam):
            chosen = [c for c in param.choices if trial.suggest_categorical(f"{name}.{c}", [True, False])]
            if len(chosen) < param.min_size:
                return chosen, f"{name}: {len(chosen)} of {param.choices} switched on, at least {param.min_size} needed"
            return chosen, None
        if isinstance(param, SizesParam):
            return trial.suggest_categorical(name, param.choices(self.hidden_size)), None
        if isinstance(param, LayersParam):
            suffix, placement = param.variant_for(method)
            if placement.form == "top":
                start = trial.suggest_categorical(f"{name}{suffix}.from", placement.start_choices(self.num_layers))
                return list(range(start, self.num_layers)), None
            layers = [i for i in range(self.num_layers)
                      if trial.suggest_categorical(f"{name}{suffix}.{i}", [True, False])]
            if len(layers) < placement.min_on:
                return layers, f"{name}: {len(layers)} layers switched on, at least {placement.min_on} needed"
            return layers, None
        raise TypeError(f"unhandled parameter kind {type(param).__name__}")

    def params_for(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The sampler's parameters of the point that decodes to ``config``, or None when the space has no such
        point (a method it never draws, a value outside a range or its choices, a placement it cannot make).

        Lets a configuration known from elsewhere — the probe's reference that learned the task — be queued as a
        trial of this space. What ``config`` leaves out takes the space's first choice for a categorical (the
        spaces list the method's default first: ``lora.init: default``, ``base_bits: 16``) and every layer for a
        placement; an option the space does not draw keeps the method's default when the point is built.
        """
        params: dict[str, Any] = {}
        decoded: dict[str, Any] = {}
        for dotted, value in self.definition.fixed.items():
            _set_dotted(decoded, dotted, value)
        for name, param in self.definition.parameters.items():
            if not _holds(param.when, decoded):
                continue
            encoded = self._encode(name, param, _get_dotted(config, name), decoded.get("method"))
            if encoded is None:
                return None
            value, drawn = encoded
            params.update(drawn)
            _set_dotted(decoded, name, value)
        proposal = self.suggest(optuna.trial.FixedTrial(params))  # type: ignore[arg-type]
        if proposal.rejection is not None or any(not _same(_get_dotted(proposal.config, leaf), value)
                                                 for leaf, value in _leaves(config)):
            return None
        return params

    def _encode(self, name: str, param: Any, given: Any, method: Any) -> tuple[Any, dict[str, Any]] | None:
        """(decoded value, the sampler's parameters for it) of one parameter, or None if it cannot take ``given``."""
        if isinstance(param, FloatParam):
            suffix, bounds = param.variant_for(method)
            ok = isinstance(given, (int, float)) and bounds.low <= given <= bounds.high
            return (given, {name + suffix: float(given)}) if ok else None
        if isinstance(param, IntParam):
            ok = isinstance(given, int) and param.low <= given <= param.high and (given - param.low) % param.step == 0
            return (given, {name: given}) if ok else None
        if isinstance(param, (CategoricalParam, SizesParam)):
            choices = param.choices if isinstance(param, CategoricalParam) else param.choices(self.hidden_size)
            value = choices[0] if given is None and isinstance(param, CategoricalParam) else given
            return (value, {name: value}) if value in choices else None
        if isinstance(param, SubsetParam):
            if not isinstance(given, list) or not set(given) <= set(param.choices) or len(given) < param.min_size:
                return None
            return [c for c in param.choices if c in given], {f"{name}.{c}": c in given for c in param.choices}
        if isinstance(param, LayersParam):
            suffix, placement = param.variant_for(method)
            layers = list(range(self.num_layers)) if given is None else sorted(set(given))
            if not layers or not set(layers) <= set(range(self.num_layers)) or len(layers) < placement.min_on:
                return None
            if placement.form == "top":
                start = layers[0]
                ok = layers == list(range(start, self.num_layers)) and start in placement.start_choices(self.num_layers)
                return (layers, {f"{name}{suffix}.from": start}) if ok else None
            return layers, {f"{name}{suffix}.{i}": i in layers for i in range(self.num_layers)}
        raise TypeError(f"unhandled parameter kind {type(param).__name__}")

    def size(self) -> float:
        """Number of distinct points; inf when a parameter is continuous.

        Exact when conditions are on one categorical parameter (``when: {method: lora}``): each of its choices
        multiplies only the parameters drawn under it. Other conditions are counted as if always drawn (a bound).
        """
        params = self.definition.parameters
        # A layers parameter with its own placements is counted per method, as if it had one `when` per method.
        per_method = {name for name, p in params.items()
                      if isinstance(p, LayersParam) and p.by_method and "method" in params}
        selectors = {next(iter(p.when)) for p in params.values() if p.when and len(p.when) == 1}
        selectors |= {"method"} if per_method else set()
        total = 1.0
        for name, param in params.items():
            if name in selectors or name in per_method or (param.when and len(param.when) == 1):
                continue
            total *= self._count(param)
        for selector in selectors & set(params):
            branches = 0.0
            for value in getattr(params[selector], "choices", []):
                method = value if selector == "method" else None
                branch = 1.0
                for name, param in params.items():
                    if param.when and len(param.when) == 1:
                        drawn = _holds(param.when, {selector: value})
                    else:
                        drawn = selector == "method" and name in per_method
                    if drawn:
                        branch *= self._count(param, method)
                branches += branch
            total *= branches
        return total

    def _count(self, param: Any, method: Any = None) -> float:
        if isinstance(param, FloatParam):
            return float("inf")
        if isinstance(param, IntParam):
            return float((param.high - param.low) // param.step + 1)
        if isinstance(param, CategoricalParam):
            return float(len(param.choices))
        if isinstance(param, SubsetParam):
            return float(2 ** len(param.choices))
        if isinstance(param, SizesParam):
            return float(len(param.choices(self.hidden_size)))
        placement = param.variant_for(method)[1]
        if placement.form == "top":
            return float(len(placement.start_choices(self.num_layers)))
        return float(2 ** self.num_layers)

    def describe(self) -> list[tuple[str, str]]:
        """(name, human-readable domain) for listings."""
        rows = []
        for name, param in self.definition.parameters.items():
            if isinstance(param, (FloatParam, IntParam)):
                domain = f"{param.type} [{param.low}, {param.high}]" + (" log" if param.log else "")
                for method, bounds in getattr(param, "by_method", {}).items():
                    domain += f"; {method}: [{bounds.low}, {bounds.high}]"
            elif isinstance(param, CategoricalParam):
                domain = f"one of {param.choices}"
            elif isinstance(param, SubsetParam):
                domain = f"subset of {param.choices} (≥ {param.min_size})"
            elif isinstance(param, SizesParam):
                domain = f"one of {param.choices(self.hidden_size)}"
            else:
                domain = param.domain(self.num_layers)
                for method, placement in param.by_method.items():
                    domain += f"; {method}: {placement.domain(self.num_layers)}"
            if param.when:
                domain += f" when {param.when}"
            rows.append((name, domain))
        rows += [(name, f"fixed {value!r}") for name, value in self.definition.fixed.items()]
        return rows
