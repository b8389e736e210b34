"""Arguments given from Python, checked as the command line's options are: the command line offers choices and
ranges (click), and the same mistakes from a notebook reached a library's own error, or created a search first."""

from __future__ import annotations

import numbers
from typing import Any

from autopeft.errors import UserError

EXECUTOR_NAMES = ("ray", "local")  # autopeft.search.executor.EXECUTORS, named without importing Ray and torch


def checked_executor(executor: Any) -> str:
    """The command line offers only these; from Python a wrong name reached the executor table after the search
    was created, and left it stopped."""
    if executor not in EXECUTOR_NAMES:
        raise UserError(f"executor: {executor!r} is not an executor; use 'ray' (workers.parallel trials at once on "
                        "Ray workers) or 'local' (one trial at a time in this process)")
    return executor


def checked_count(field: str, value: Any, *, allow_none: bool = True) -> int | None:
    """A whole number of at least 1 (``trials``, ``seeds``, ``steps``), checked before anything is read: the spec's
    checks run on the spec, and a Python argument reached pydantic or the progress bar as it was given."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UserError(f"{field}: expected a whole number of at least 1 (got {value!r})")
    return int(value)
