"""A user's own metrics and PEFT methods: registered by a call, or installed as a package with entry points.

Both join the registries the built-ins live in (metrics: ``autopeft.objectives``; methods:
``autopeft.methods.registry``), so the spec validator, the CLI, the dashboard, the cost model and the workers find
them by name with no path of their own. Two ways in:

- **a call** — :func:`register_metric` / :func:`register_method` in the process that starts the search (a notebook
  cell, a script). Ray worker processes never ran that call, so these run-time registrations travel with each
  worker (:func:`shipment`, :func:`install`: Ray pickles them with cloudpickle, by value for code in ``__main__``);
- **an entry point** — groups ``autopeft.metrics`` and ``autopeft.methods`` in an installed package's metadata.
  Every process (CLI, dashboard, workers on every node where the package is installed) loads them itself, once,
  the first time a registry is read. A plugin that fails to load is reported with its entry point and left out;
  the built-ins and the other plugins go on working.

A name is never taken from a built-in: a clash is refused with the fix. Registering a name again from the same
route replaces it (re-running a notebook cell must work).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autopeft.errors import UserError
from autopeft.objectives import CUSTOM_UNIT, MEASUREMENTS, TASK_METRICS, TASKS, Direction, Measurement

if TYPE_CHECKING:
    from autopeft.methods.base import Method

log = logging.getLogger(__name__)

METRIC_GROUP = "autopeft.metrics"
METHOD_GROUP = "autopeft.methods"
_BY_CALL = "a register call"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # spec field, table column and search-space option prefix alike


@dataclass(frozen=True)
class MetricDefinition:
    """A user's metric: ``function(predictions, references) -> float`` (forms per task: docs/metrics.md), the way
    it improves, the tasks it applies to (None: every task) and a line of help.

    What an ``autopeft.metrics`` entry point may name (a bare function also works: maximised, every task)."""

    function: Callable[[Any, Any], float]
    direction: Direction = "maximize"
    tasks: tuple[str, ...] | None = None
    help: str = ""


_runtime_metrics: dict[str, MetricDefinition] = {}  # registered by a call in this process: shipped to workers
_runtime_methods: dict[str, type[Method]] = {}
_origins: dict[str, str] = {}  # "metric:NAME" / "method:NAME" -> the route that registered it
_broken: dict[str, dict[str, str]] = {METRIC_GROUP: {}, METHOD_GROUP: {}}  # group -> entry point -> why


def register_metric(name: str, fn: Callable[[Any, Any], float], *, direction: Direction = "maximize",
                    tasks: str | Iterable[str] | None = None, help: str = "") -> None:
    """Make ``name`` a measurement a spec may use as an objective or a constraint.

    ``fn(predictions, references)`` returns a float; it runs in the worker after every evaluation (rungs
    included), on numpy arrays whose form depends on the task: label strings (classification), 0/1 label rows
    (multi-label), each sentence's list of tag names (token classification, as seqeval takes them), floats
    (regression), extracted answer strings against the gold answers (causal-lm). ``tasks`` limits it to some of
    the tasks (autopeft.objectives.TASKS; default: every task)."""
    definition = MetricDefinition(fn, direction, _tasks(tasks, "register_metric"), help)
    _add_metric(name, definition, _BY_CALL)
    _runtime_metrics[name] = definition


def register_method(cls: type[Method]) -> type[Method]:
    """Make ``cls`` (a subclass of Method, PeftBacked, AdapterHubBacked or TensorBacked) a method a search space
    may choose by its ``name``; usable as a class decorator. The contract is checked here, not at the first
    trial."""
    _add_method(cls, _BY_CALL)
    _runtime_methods[cls.name] = cls
    return cls


# --- metrics ---------------------------------------------------------------------------------------------------

def _tasks(tasks: str | Iterable[str] | None, where: str) -> tuple[str, ...] | None:
    if tasks is None:
        return None
    chosen = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [t for t in chosen if t not in TASKS]
    if unknown or not chosen:
        raise UserError(f"{where}: tasks {list(chosen)} — each must be one of {list(TASKS)} (or give None for "
                        "every task)")
    return chosen


def _add_metric(name: Any, definition: MetricDefinition, origin: str) -> None:
    where = "register_metric" if origin == _BY_CALL else origin
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"{where}: metric name {name!r} is not usable in a spec; use letters, digits and "
                        "underscores, e.g. 'domain_f1'")
    if not callable(definition.function):
        raise UserError(f"{where}: the metric {name!r} must be a function (predictions, references) -> float, "
                        f"got {type(definition.function).__name__}")
    if definition.direction not in ("maximize", "minimize"):
        raise UserError(f"{where}: direction {definition.direction!r}; use 'maximize' or 'minimize'")
    tasks = _tasks(definition.tasks, where) or TASKS
    existing = MEASUREMENTS.get(name)
    if existing is not None and not existing.custom:
        raise UserError(f"{where}: {name!r} is a built-in measurement ({existing.help}); register your metric "
                        f"under another name, e.g. {name + '_custom'!r}")
    _check_route(f"metric:{name}", origin, where, "metric")
    summary = definition.help or _first_line(definition.function.__doc__) or "a user's metric"
    MEASUREMENTS.put(name, Measurement(name, definition.direction, CUSTOM_UNIT, summary, is_task_metric=True,
                                       function=definition.function, custom=True))
    for task in TASKS:
        others = tuple(n for n in dict.__getitem__(TASK_METRICS, task) if n != name)
        TASK_METRICS.put(task, others + ((name,) if task in tasks else ()))
    _origins[f"metric:{name}"] = origin


def _check_route(key: str, origin: str, where: str, kind: str) -> None:
    """A name registered by one route (an entry point) is not silently taken over by another (a call)."""
    previous = _origins.get(key)
    if previous is not None and previous != origin:
        name = key.split(":", 1)[1]
        raise UserError(f"{where}: the {kind} {name!r} is already registered by {previous}; give yours another "
                        "name (or uninstall that plugin)")


def _first_line(text: str | None) -> str:
    return (inspect.cleandoc(text).splitlines() or [""])[0] if text else ""


def describe_custom_metrics(names: Iterable[str]) -> list[dict[str, Any]]:
    """The user's metrics among ``names`` as plain data (name, direction, tasks, help), stored with a search so
    that a process without the plugin can still read the search (autopeft.spec.parse_spec)."""
    described = []
    for name in names:
        measurement = MEASUREMENTS.get(name)
        if measurement is not None and measurement.custom:
            tasks = [t for t in TASKS if name in TASK_METRICS[t]]
            described.append({"name": name, "direction": measurement.natural_direction, "tasks": tasks,
                              "help": measurement.help})
    return described


def declare_stored_metrics(described: Iterable[dict[str, Any]]) -> None:
    """Make the user's metrics a stored search names known here by their description, where no plugin registered
    them: the search can be listed, shown and picked from; their chance tests say "untested"; a worker asked to
    compute one fails its trial saying how to register it."""
    for item in described:
        name = item.get("name")
        if not isinstance(name, str) or name in MEASUREMENTS:
            continue
        tasks = tuple(t for t in item.get("tasks") or TASKS if t in TASKS)
        MEASUREMENTS.put(name, Measurement(name, item.get("direction", "maximize"), CUSTOM_UNIT,
                                           str(item.get("help", "")), is_task_metric=True, custom=True))
        for task in tasks:
            TASK_METRICS.put(task, (*dict.__getitem__(TASK_METRICS, task), name))


# --- methods ---------------------------------------------------------------------------------------------------

def _stubs() -> dict[str, Callable]:
    """The base classes' stubs a method must replace; which apply depends on the backing it derives from.
    (Imported here, not at the top: the methods pull in torch and peft, which reading a metric needs not.)"""
    from autopeft.methods.base import AdapterHubBacked, LayerTensors, Method, PeftBacked

    return {"build": Method.build, "save": Method.save, "load": Method.load, "peft_config": PeftBacked.peft_config,
            "adapter_config": AdapterHubBacked.adapter_config, "picks": LayerTensors.picks}


def contract_problems(cls: Any) -> list[str]:
    """What keeps ``cls`` from being a method: each problem with its fix (empty when it keeps the contract)."""
    from autopeft.methods.base import Method

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        return [f"{cls!r} is not a class derived from autopeft.methods.base.Method (or PeftBacked, "
                "AdapterHubBacked, TensorBacked)"]
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"class attribute name = {name!r}: set a name of letters, digits and underscores, e.g. "
                        "name = 'oft' (a search space chooses the method by it)")
    if not isinstance(getattr(cls, "library", None), str):
        problems.append("class attribute library is not set: name the library that loads the saved adapter, "
                        "e.g. library = 'peft'")
    stubs = [attr for attr, stub in _stubs().items() if getattr(cls, attr, None) is stub]
    if stubs:
        problems.append(f"implement {', '.join(stubs)} (still the base class's stub)")
    if not problems:
        try:
            cls()
        except Exception as exc:  # the registry holds one instance, made without arguments
            problems.append(f"{cls.__name__}() fails ({type(exc).__name__}: {exc}); a method takes no arguments")
    return problems


def _add_method(cls: Any, origin: str) -> None:
    from autopeft.methods import registry

    where = "register_method" if origin == _BY_CALL else origin
    problems = contract_problems(cls)
    if problems:
        raise UserError(f"{where}: {getattr(cls, '__name__', cls)!r} does not keep the Method contract "
                        f"(docs/methods.md): {'; '.join(problems)}")
    existing = registry.registered(cls.name)
    if existing is not None and _is_builtin(type(existing)):
        raise UserError(f"{where}: {cls.name!r} is a built-in method ({type(existing).__name__}); give your "
                        f"class another name, e.g. name = {cls.name + '_custom'!r}")
    _check_route(f"method:{cls.name}", origin, where, "method")
    registry.register(cls)
    _origins[f"method:{cls.name}"] = origin


def _is_builtin(cls: type) -> bool:
    return cls.__module__.startswith("autopeft.methods.")


# --- entry points ----------------------------------------------------------------------------------------------

def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, one per name (a package on the path twice lists its entry points twice)."""
    unique: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=group):
        unique.setdefault(entry_point.name, entry_point)
    return list(unique.values())


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    return f"entry point {entry_point.name!r} = {entry_point.value!r} (group {entry_point.group})"


def _load_group(group: str, add: Callable[[importlib.metadata.EntryPoint, str], None]) -> None:
    for entry_point in _entry_points(group):
        origin = _describe(entry_point)
        try:
            add(entry_point, origin)
        except Exception as exc:  # a broken plugin is left out; the built-ins and the other plugins go on
            reason = str(exc) if isinstance(exc, UserError) else f"{origin}: {type(exc).__name__}: {exc}"
            _broken[group][entry_point.name] = reason
            log.warning("plugin not loaded: %s", reason)


_loaded_groups: set[str] = set()  # loaded in full: read without the lock
_started_groups: set[str] = set()
# Reentrant: registering a plugin reads the registry again, from the thread that holds it. Other threads (the
# dashboard's sessions, the service's request pool) wait for the load instead of reading a registry without it.
_loading = threading.RLock()


def load_installed(group: str) -> None:
    """Register the entry points of ``group`` the first time a registry asks (each registry on every read)."""
    if group in _loaded_groups:
        return
    with _loading:
        if group in _started_groups:
            return  # loaded by now, or being loaded by this very thread (a plugin reading the registry)
        _started_groups.add(group)
        {METRIC_GROUP: load_installed_metrics, METHOD_GROUP: load_installed_methods}[group]()
        _loaded_groups.add(group)


def load_installed_metrics() -> None:
    """Register every ``autopeft.metrics`` entry point: the entry point's name is the metric's, its object a
    :class:`MetricDefinition` or a bare function."""
    def add(entry_point: importlib.metadata.EntryPoint, origin: str) -> None:
        target = entry_point.load()
        definition = target if isinstance(target, MetricDefinition) else MetricDefinition(target)
        _add_metric(entry_point.name, definition, origin)

    _load_group(METRIC_GROUP, add)


def load_installed_methods() -> None:
    """Register every ``autopeft.methods`` entry point (a Method subclass whose ``name`` is the entry point's)."""
    def add(entry_point: importlib.metadata.EntryPoint, origin: str) -> None:
        cls = entry_point.load()
        if getattr(cls, "name", None) != entry_point.name:
            raise UserError(f"{origin}: the class's name is {getattr(cls, 'name', None)!r}; name the entry point "
                            "after it (a search space and the export find the method by that one name)")
        _add_method(cls, origin)

    _load_group(METHOD_GROUP, add)


def broken_note(group: str) -> str:
    """For an unknown-name error: the installed plugins of ``group`` that failed to load, and why ("" if none)."""
    broken = _broken[group]
    return "" if not broken else "; installed plugins that failed to load: " + "; ".join(broken.values())


# --- run-time registrations on the workers ---------------------------------------------------------------------

@dataclass(frozen=True)
class Shipment:
    """What a worker process needs of the plugins: this process's run-time registrations (entry points the worker
    loads itself) and the user's metrics the search measures (computed after every evaluation)."""

    metrics: dict[str, MetricDefinition]
    methods: tuple[type[Method], ...]
    measured: tuple[str, ...]


def shipment(measured: Iterable[str] = ()) -> Shipment:
    """The run-time registrations, and which of ``measured`` (a spec's objectives and constraints) are users'."""
    custom = tuple(n for n in measured if (m := MEASUREMENTS.get(n)) is not None and m.custom)
    return Shipment(dict(_runtime_metrics), tuple(_runtime_methods.values()), custom)


def install(shipped: Shipment | None) -> None:
    """Register a driver's run-time plugins in this (worker) process; what is already registered as the same
    object (the local executor's own process) is left as it is."""
    if shipped is None:
        return
    for name, definition in shipped.metrics.items():
        current = MEASUREMENTS.get(name)
        if current is None or current.function is not definition.function:
            register_metric(name, definition.function, direction=definition.direction, tasks=definition.tasks,
                            help=definition.help)
    from autopeft.methods import registry

    for cls in shipped.methods:
        current = registry.registered(cls.name)
        if current is None or type(current) is not cls:
            register_method(cls)


def _unregister(name: str) -> None:
    """Take a user's metric and method of this name out of the registries (tests; a built-in is never touched)."""
    from autopeft.methods import registry

    measurement = dict.get(MEASUREMENTS, name)
    if measurement is not None and measurement.custom:
        MEASUREMENTS.remove(name)
        for task in TASKS:
            TASK_METRICS.put(task, tuple(n for n in dict.__getitem__(TASK_METRICS, task) if n != name))
    method = registry.registered(name)
    if method is not None and not _is_builtin(type(method)):
        registry.unregister(name)
    for key in (f"metric:{name}", f"method:{name}"):
        _origins.pop(key, None)
    _runtime_metrics.pop(name, None)
    _runtime_methods.pop(name, None)
