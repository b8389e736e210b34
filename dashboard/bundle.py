"""The download behind "Pick and export": `autopeft export`'s own output, zipped, optionally cut to the picks.

Reuses ``autopeft.results.export.export_front`` so the archive holds exactly what the command line writes (adapter
folders that stock peft loads, config.yaml, metrics.json, README, summary.csv / summary.md). The study is opened
through the read-only URL, so exporting from the dashboard cannot lock a running search's database.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import optuna

from autopeft.store import storage
from dashboard.data import read_only_url


def export_zip(url: str, name: str, picked: list[int] | None = None) -> bytes:
    """Zip of `autopeft export NAME`; with ``picked``, only those front trials' folders and summary rows."""
    # Imported here, not with the module: the exporter brings torch, transformers and peft (about 8 s of CPU on
    # a slow processor), which every other view of the dashboard does without; it starts that much sooner.
    from autopeft.results.export import export_front, zip_tree

    store = optuna.storages.RDBStorage(read_only_url(url), skip_compatibility_check=True, skip_table_creation=True)
    study, spec = storage.load_search(store, name)
    with tempfile.TemporaryDirectory(prefix="autopeft-export-") as tmp:
        out = Path(tmp) / name
        export_front(study, spec, out)
        if picked:
            _keep_only(out, set(picked))
        return zip_tree(out)


def _keep_only(out: Path, picked: set[int]) -> None:
    for folder in out.glob("trial-*"):
        if int(folder.name.removeprefix("trial-")) not in picked:
            for path in sorted(folder.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            folder.rmdir()
    with open(out / "summary.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if int(row["trial"]) in picked]
        columns = list(reader.fieldnames or [])
    with open(out / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    # The table's rows only: the warning under it names the points at chance of the whole front, and each picked
    # folder's README still says it of its own point.
    lines = [line for line in (out / "summary.md").read_text().splitlines() if line.startswith("|")]
    kept = lines[:2] + [line for line in lines[2:] if int(line.split("|")[1]) in picked]
    (out / "summary.md").write_text("\n".join(kept) + "\n")
