"""Optuna's RDB storage that rides out a database restart or a short network outage.

A database server restarting, failing over or briefly unreachable would otherwise end a search that may have run
for hours: Optuna turns the dropped connection into a ``StorageInternalError`` and the controller stops. Here each
storage call that a retry cannot make wrong is retried for up to ``RETRY_WINDOW_S`` seconds, with back-off; the
connection pool checks each connection before use (``pool_pre_ping``), so the retry gets a fresh one.

What is retried: every read, every attribute or parameter write (writing the same value twice is harmless), and
setting a trial's state — where a retry after a commit that succeeded but whose answer was lost finds the trial
already finished, which means the first attempt worked. Creating studies and trials is not retried: a retry
after a lost answer could create a second one.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy.exc
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage

log = logging.getLogger(__name__)

RETRY_WINDOW_S = 120.0
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
TRANSIENT = (StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)

_IDEMPOTENT = (
    "get_all_studies", "get_all_trials", "get_best_trial", "get_n_trials", "get_study_directions",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_system_attrs", "get_study_user_attrs",
    "get_trial", "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
    "get_trial_params", "get_trial_system_attrs", "get_trial_user_attrs", "check_trial_is_updatable",
    "set_study_system_attr", "set_study_user_attr", "set_trial_param", "set_trial_system_attr",
    "set_trial_user_attr", "set_trial_intermediate_value",
)


def _retrying(method: Callable[..., Any], finished_means_done: bool = False) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RDBStorage, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + RETRY_WINDOW_S
        delay = FIRST_DELAY_S
        retried = False
        while True:
            try:
                return method(self, *args, **kwargs)
            except UpdateFinishedTrialError:
                if finished_means_done and retried:
                    return True  # the attempt that lost its answer had committed
                raise
            except TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database unavailable (%s); retrying %s in %.1f s", type(exc).__name__,
                            method.__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_S)
                retried = True

    return call


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose safe-to-repeat calls survive a database restart (see the module docstring)."""


for _name in _IDEMPOTENT:
    setattr(ResilientRDBStorage, _name, _retrying(getattr(RDBStorage, _name)))
ResilientRDBStorage.set_trial_state_values = _retrying(  # type: ignore[method-assign]
    RDBStorage.set_trial_state_values, finished_means_done=True)
