"""Export the Pareto-optimal trials as adapters that stock Hugging Face peft loads.

Each exported folder is a peft adapter folder (``adapter_config.json`` + weights, so
``PeftModel.from_pretrained(base, folder)`` works) with the trial's configuration and measured values beside it.
A summary table (CSV and Markdown) at the top lists what was exported.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import optuna
import yaml

from autopeft import storage
from autopeft.errors import UserError
from autopeft.pareto import pareto_front
from autopeft.spec import SearchSpec
from autopeft.views import describe_config, format_value

_LOADING = """# Trial {number} of search {search}

A {method} adapter for `{base}` ({task}), exported by autopeft. Measured values are in `metrics.json`,
the configuration in `config.yaml`.

```python
from transformers import AutoModelForSequenceClassification
from peft import PeftModel

base = AutoModelForSequenceClassification.from_pretrained("{base}", num_labels={num_labels})
model = PeftModel.from_pretrained(base, "path/to/this/folder")
```
"""


def export_front(study: optuna.Study, spec: SearchSpec, out_dir: Path) -> list[Path]:
    records = storage.trial_records(study, spec)
    front = pareto_front(records, spec)
    if not front:
        raise UserError(f"search {study.study_name!r} has no completed feasible trial to export yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = study.user_attrs.get(storage.LABELS, [])
    exported = []
    rows = []
    for record in front:
        source = Path(record.adapter_dir or "")
        if not (source / "adapter_config.json").is_file():
            raise UserError(f"trial {record.number}: its adapter folder {source} is missing; was it moved?")
        target = out_dir / f"trial-{record.number:04d}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        (target / "config.yaml").write_text(yaml.safe_dump({
            "search": study.study_name,
            "trial": record.number,
            "base_model": spec.model.name_or_path,
            "task": spec.model.task,
            "labels": labels,
            "max_length": spec.data.max_length,
            "configuration": record.config,
        }, sort_keys=False))
        (target / "metrics.json").write_text(json.dumps({
            "objectives": record.values, "measurements": record.measurements, "loss_curve": record.loss_curve,
        }, indent=2))
        (target / "README.md").write_text(_LOADING.format(
            number=record.number, search=study.study_name, method=record.config.get("method"),
            base=spec.model.name_or_path, task=spec.model.task, num_labels=len(labels) or 2))
        exported.append(target)
        rows.append({"trial": record.number, "folder": target.name,
                     **{n: record.values[n] for n in spec.objective_names},
                     "configuration": describe_config(record.config)})
    _write_summary(out_dir, rows, spec)
    return exported


def _write_summary(out_dir: Path, rows: list[dict], spec: SearchSpec) -> None:
    with open(out_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [format_value(k, v) if k in spec.objective_names else str(v) for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
