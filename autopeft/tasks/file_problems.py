"""Why a data file could not be read, in the user's terms: the line at fault and what to change.

pandas and the json module report a byte position ("position 3386") or a tokenizer's state ("Expected 2 fields in
line 4, saw 3"); the user has a file open in an editor or a spreadsheet. These read the file again only once it
has failed, to find the line and the likely cause: a tab-separated file named .csv, a semicolon-separated export,
a comma inside an unquoted cell, a record missing a brace, a file saved in another encoding.
"""

from __future__ import annotations

import json
from pathlib import Path

_SAMPLE_BYTES = 1 << 16  # enough lines to tell a file's separator


def unreadable_because(path: str, exc: Exception) -> str:
    """The reader's complaint, with the line at fault and the change that makes the file readable where known."""
    if isinstance(exc, UnicodeDecodeError):
        return _not_utf8(path, exc)
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv") and "tokenizing" in str(exc):
        return f"{str(exc).strip()}; {separator_hint(path, suffix)}"
    if suffix == ".jsonl":
        return _jsonl_problem(path) or str(exc).strip()
    if suffix == ".json":
        return _json_problem(path) or str(exc).strip()
    return str(exc).strip()


def _not_utf8(path: str, exc: UnicodeDecodeError) -> str:
    # The reader decodes in chunks, so its error's offset is within a chunk: decode the whole file for the line.
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
        return str(exc)
    except UnicodeDecodeError as whole:
        line = raw[:whole.start].count(b"\n") + 1
        return (f"line {line} is not UTF-8 (byte 0x{raw[whole.start]:02x}); save the file as UTF-8 (a spreadsheet's "
                "'CSV UTF-8', an editor's encoding menu)")


def separator_hint(path: str, suffix: str) -> str:
    """What the file's separators say it is, against what its name says."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        lines = handle.read(_SAMPLE_BYTES).splitlines()[:50]
    counts = {sep: sum(line.count(sep) for line in lines) for sep in ("\t", ";", ",")}
    if suffix == ".csv" and counts["\t"] > counts[","]:
        return "the file looks tab-separated: name it .tsv"
    if suffix == ".csv" and counts[";"] > counts[","]:
        return "the file looks semicolon-separated (a spreadsheet's export in some locales): save it with commas"
    if suffix == ".tsv" and counts["\t"] == 0:
        return "the file has no tabs: if it is comma-separated, name it .csv"
    if suffix == ".csv":
        return 'a line has more cells than the first: put a text that holds a comma in double quotes ("a, b")'
    return "a line has more cells than the first: a text holds a tab"


def _jsonl_problem(path: str) -> str | None:
    """The first line that is not a JSON value, by number (JSON Lines: one record per line)."""
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line.strip())
            except json.JSONDecodeError as exc:
                return f"line {number} is not a JSON record ({exc.msg}, column {exc.colno}); each line holds one"
    return None


def _json_problem(path: str) -> str | None:
    try:
        json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        return f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return None
