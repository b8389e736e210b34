"""A search's files: the folder ``output_dir/NAME`` that its trials, probe runs, baselines and passed-in rows are
written to, and what may be removed with the search.

The database holds a search's trials; its adapters and the rows a Python caller passed in live in this folder, so
deleting a search (``autopeft search delete``) removes both. Only what a search writes is removed: the folder may
sit inside a user's own tree, and anything else found in it is left where it is and named.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

# Rows a Python caller passes as ``data=`` are saved here as parquet files so workers, resume and export read them as
# files; the note beside them says under which key each split came (autopeft/tasks/data.py reads it for messages).
DATA_FOLDER = "data"
PASSED_ROWS_NOTE = "passed-as-data.json"
# What a search writes into its folder besides DATA_FOLDER: a trial's adapter and confirmation seeds, a probe
# run, a baseline (autopeft/search/controller.py, search/probe.py, results/confirm.py, results/baselines.py).
_WRITTEN = re.compile(r"trial-\d{4,}|probe-.+|baseline-.+")


def run_folder(output_dir: str | Path, name: str) -> Path:
    """Where the search ``name`` writes its files."""
    return Path(output_dir) / name


def _written_by_a_search(entry: Path) -> bool:
    if entry.name == DATA_FOLDER:
        return (entry / PASSED_ROWS_NOTE).is_file()
    return entry.is_dir() and _WRITTEN.fullmatch(entry.name) is not None


def remove_run_folder(folder: Path) -> list[Path]:
    """Remove what a search wrote into ``folder``, and the folder once nothing else is in it; returns what was
    left because a search did not write it (empty when the folder is gone, or was never made)."""
    if not folder.is_dir():
        return []
    left = []
    for entry in sorted(folder.iterdir()):
        if _written_by_a_search(entry):
            shutil.rmtree(entry)
        else:
            left.append(entry)
    if not left:
        folder.rmdir()
    return left
