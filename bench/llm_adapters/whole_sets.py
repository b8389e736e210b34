"""Where LLM-Adapters' whole sets lie inside a copy of its data (``--data`` of run.py and search.py): one place, so
that the table and the search train and evaluate on the same files."""

from __future__ import annotations

from pathlib import Path

# task -> (training file, evaluation file or None to keep the bundled one). MultiArith keeps the bundled held-out
# problems, the only ones LLM-Adapters' math training set does not contain.
WHOLE_SETS: dict[str, tuple[str, str | None]] = {
    "boolq": ("dataset/boolq/train.json", "dataset/boolq/test.json"),
    "multiarith": ("ft-training_set/math_data.json", None),
}


def whole_set_files(data: Path, task: str, train: Path, evaluation: Path) -> tuple[Path, Path]:
    """The task's training and evaluation files in the copy at ``data``, each falling back to the bundled one."""
    whole_train, whole_eval = WHOLE_SETS.get(task, (None, None))
    return (data / whole_train if whole_train else train), (data / whole_eval if whole_eval else evaluation)
