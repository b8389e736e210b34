"""Starting and resuming searches: check every input first, then wire storage, sampler, executor and controller.

Everything that can be wrong with the user's input (model, data, space) is checked before a study is created,
so a bad spec never leaves an empty search behind.
"""

from __future__ import annotations

import signal
import threading
import zlib
from collections.abc import Callable

import optuna

from autopeft.errors import UserError
from autopeft.models.architectures import num_layers
from autopeft.models.base import check_max_length_fits, check_reads_left_to_right, load_model_config, load_tokenizer
from autopeft.results.chance import chance_level, eval_targets
from autopeft.results.confirm import confirm_near_chance
from autopeft.search.controller import Progress, SearchController, steps_per_trial
from autopeft.search.executor import EXECUTORS
from autopeft.search.preflight import (
    check_constraints_reachable,
    check_device_available,
    check_fields_read,
    check_space_builds,
)
from autopeft.search.probe import find_steps, queue_learning_references
from autopeft.search.samplers import make_sampler
from autopeft.search.space import SearchSpace
from autopeft.search.space_names import check_space_names
from autopeft.search.warm_start import load_sources, queue_first_proposals, warm_sampler
from autopeft.spec import SearchSpec, normalise_storage_url, timestamped_name
from autopeft.store import storage
from autopeft.tasks.data import TaskData, check_metrics_fit, load_task_data

ProgressCallback = Callable[[Progress], None]


def prepare(spec: SearchSpec, *, new: bool = False) -> tuple[SearchSpace, TaskData]:
    """Validate the space against the model and tokenise the data (once per search, and again on resume).

    ``new``: a search about to be created, whose space must name only what trials read; a stored search resumes
    with the space it was created with (made before that check, or naming a plugin's method since removed)."""
    model_config = load_model_config(spec.model)
    check_reads_left_to_right(spec.model, model_config)
    space = SearchSpace.from_dict(spec.search_space, num_layers(model_config),
                                  hidden_size=getattr(model_config, "hidden_size", 768))
    if new:
        check_space_names(space.definition)
        check_fields_read(spec)
        check_device_available(spec)
        check_max_length_fits(spec.model, model_config, load_tokenizer(spec.model), spec.data.max_length)
    check_space_builds(spec, space)
    data = load_task_data(spec.data, spec.model, spec.seed)
    check_metrics_fit(spec, data)
    if new:
        check_constraints_reachable(spec, space, data.num_labels)
    return space, data


def start_search(spec: SearchSpec, *, name: str | None = None, storage_url: str | None = None,
                 trials: int | None = None, executor: str = "ray", ray_address: str | None = None,
                 on_progress: ProgressCallback | None = None) -> str:
    """Create a new search from a resolved spec and run it; returns its name."""
    spec = spec.model_copy(deep=True)
    if storage_url:
        spec.storage = normalise_storage_url(storage_url)
    if trials is not None:
        spec.budget.trials = trials
    if ray_address:
        spec.workers.ray_address = ray_address
    name = name or timestamped_name(spec.name)
    space, data = prepare(spec, new=True)
    sources = load_sources(spec)  # before the search exists: a source that cannot be read leaves nothing behind
    store = storage.open_storage(spec.storage)
    study = storage.create_search(store, name, spec, make_sampler(spec))
    study.set_user_attr(storage.DATA_NOTES, data.notes)
    queue_first_proposals(study, spec, space, sources)
    warm_sampler(study.sampler, sources)
    _drive(study, spec, space, data, executor, on_progress)
    return name


def resume_search(name: str, *, storage_url: str, executor: str = "ray", ray_address: str | None = None,
                  on_progress: ProgressCallback | None = None, trials: int | None = None) -> list[int]:
    """Continue a stopped or killed search until its budget is spent; returns the trials that were requeued.

    ``trials`` raises the budget first (stored with the search's spec), so a finished search goes on: its study,
    front and sampler history carry over, and only the extra trials are trained."""
    store = storage.open_storage(storage_url)
    study, spec = storage.load_search(store, name)
    storage.claim_controller(study)  # first: a search another controller still runs is refused untouched
    try:
        if trials is not None:
            spec = raise_budget(study, spec, trials)
        requeued = storage.requeue_interrupted(study, "interrupted: the controller stopped while it ran",
                                               keep=storage.live_controllers(study))
        sampler = make_sampler(spec, trials_so_far=len(study.get_trials(deepcopy=False)))
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
        spec = _with_ray_address(spec, ray_address)
        space, data = prepare(spec)  # a data file moved since the search started is refused here
        study.set_user_attr(storage.DATA_NOTES, data.notes)  # as the data reads now
        warm_sampler(sampler, load_sources(spec, missing_ok=True))
    except BaseException:
        storage.release_controller(study)  # else the search would read as running for as long as this process lives
        raise
    _drive(study, spec, space, data, executor, on_progress)
    return requeued


def raise_budget(study: optuna.Study, spec: SearchSpec, trials: int) -> SearchSpec:
    """Store ``spec`` with a trial budget of ``trials`` (never below what the search has spent)."""
    spent = storage.budget_spent(study.get_trials(deepcopy=False))
    if trials < spent:
        raise UserError(f"--trials: {trials} is below the {spent} trials {study.study_name} has already spent; "
                        f"give at least {spent}")
    spec = spec.model_copy(deep=True)
    spec.budget.trials = trials
    study.set_user_attr(storage.SPEC, spec.to_stored())
    study.set_user_attr(storage.FINISHED, False)
    return spec


def join_search(name: str, *, storage_url: str, executor: str = "ray", ray_address: str | None = None,
                on_progress: ProgressCallback | None = None) -> None:
    """Add a controller, with its own workers, to a search: it shares the budget with the controllers running it.

    The sampler is seeded per controller (from its host and pid), so two controllers that join at the same
    moment do not draw the same random start-up proposals; TPE's constant liar sees every controller's running
    trials through the database.
    """
    store = storage.open_storage(storage_url)
    study, spec = storage.load_search(store, name)
    spec = _with_ray_address(spec, ray_address)
    space, data = prepare(spec)
    offset = zlib.crc32(storage.controller_id().encode()) % 1_000_000_007
    sampler = make_sampler(spec, trials_so_far=len(study.get_trials(deepcopy=False)) + offset)
    study = optuna.load_study(study_name=name, storage=store, sampler=sampler)
    warm_sampler(sampler, load_sources(spec, missing_ok=True))
    _drive(study, spec, space, data, executor, on_progress, join=True)


def _with_ray_address(spec: SearchSpec, ray_address: str | None) -> SearchSpec:
    if not ray_address:
        return spec
    spec = spec.model_copy(deep=True)
    spec.workers.ray_address = ray_address
    return spec


def _drive(study: optuna.Study, spec: SearchSpec, space: SearchSpace, data: TaskData, executor_kind: str,
           on_progress: ProgressCallback | None, join: bool = False) -> None:
    # Ctrl-C's path for SIGTERM from the moment this controller is recorded (a job stopped while it starts), and
    # again once the executor has started Ray, which installs a handler of its own.
    previous_handler = _stop_on_sigterm()
    try:
        storage.claim_controller(study, join=join)
    except BaseException:
        _restore(previous_handler)
        raise
    try:
        study.set_user_attr(storage.LABELS, data.label_names)
        study.set_user_attr(storage.EVAL_ROWS, data.eval_rows)
        # A decoder searched on its loss is read against the untouched model's loss, which the first result brings
        # (autopeft/results/untouched_model.py), even where its records have answers: their chance level is for answers.
        level, targets = None, None
        if not (data.task == "causal-lm" and spec.task_metric == "eval_loss"):
            level = chance_level(data)
            if level is not None:
                study.set_user_attr(storage.CHANCE, level.to_json())
            targets = eval_targets(data)
            if targets is not None:
                study.set_user_attr(storage.EVAL_TARGETS, targets.to_json())
        runner = EXECUTORS[executor_kind](spec, data)
    except BaseException:
        storage.release_controller(study)
        _restore(previous_handler)
        raise
    _stop_on_sigterm()
    try:
        if spec.budget.steps_per_trial == "auto":
            spec = _probe_steps(study, spec, space, runner, level, targets, on_progress)
        SearchController(study, spec, space, runner, len(data.train), on_progress,
                         num_labels=data.num_labels).run()
        if not join:  # the controller that started the search closes it; a joined one only adds workers
            spent = sum(storage.counts_against_budget(t) for t in study.get_trials(deepcopy=False))
            confirm_near_chance(study, spec, runner, steps_per_trial(spec, len(data.train)),
                                _sayer(spec, runner, on_progress, spent))
    except BaseException:
        # Ctrl-C or a crash: close what this controller had in flight so that resume re-proposes it.
        storage.requeue_interrupted(study, "interrupted: the search was stopped while it ran",
                                    owners={storage.controller_id()})
        raise
    finally:
        runner.shutdown()
        storage.release_controller(study)
        _restore(previous_handler)


def _probe_steps(study: optuna.Study, spec: SearchSpec, space: SearchSpace, runner, level, targets,
                 on_progress: ProgressCallback | None) -> SearchSpec:
    """Find the fidelity with the learnability probe and store the spec with it, so that a resume, the baselines
    and confirmations all train at the steps the probe chose."""
    say = _sayer(spec, runner, on_progress)
    outcome = find_steps(study, spec, runner, level, targets, say)
    spec = spec.model_copy(deep=True)
    spec.budget.steps_per_trial = outcome.chosen
    study.set_user_attr(storage.SPEC, spec.to_stored())
    say(f"probe chose {outcome.chosen} steps per trial ({outcome.reason}, {outcome.seconds:.0f} s)")
    queued = queue_learning_references(study, spec, space, outcome)
    if queued:
        say(f"the search starts from what the probe found learns: {', '.join(queued)} queued as its first "
            f"trial{'s' if len(queued) > 1 else ''}")
    return spec


def _sayer(spec: SearchSpec, runner, on_progress: ProgressCallback | None,
           finished: int = 0) -> Callable[[str], None]:
    """A message to the search's observer outside the trial loop (the probe before it, confirmations after, with
    the ``finished`` trials that counted against the budget)."""
    def say(message: str) -> None:
        if on_progress is not None:
            on_progress(Progress(finished, spec.budget.trials, runner.running(), None, message))
    return say


def _restore(handler) -> None:
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm():
    """Make SIGTERM (a scheduler's stop, `kill`) take Ctrl-C's path: running trials are closed as interrupted
    for resume, and the Ray cluster this process started is shut down instead of orphaned. Installed again after
    the executor starts because ``ray.init`` replaces the handler with one that aborts the process."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)
