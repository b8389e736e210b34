"""Export the Pareto-optimal trials as adapters that stock Hugging Face peft loads.

Each exported folder is a peft adapter folder (``adapter_config.json`` + weights, so
``PeftModel.from_pretrained(base, folder)`` works) with the trial's configuration and measured values beside it.
A summary table (CSV and Markdown) at the top lists what was exported.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import optuna
import yaml

from autopeft import storage
from autopeft.errors import UserError
from autopeft.methods import get_method
from autopeft.methods.base import METHOD_FILE, Method
from autopeft.models import TASK_HEADS, TASK_MODEL_CLASSES
from autopeft.pareto import pareto_front
from autopeft.pick import Pick, choose
from autopeft.spec import SearchSpec
from autopeft.views import describe_config, format_value

_README = """# Trial {number} of search {search}

A {method} adapter for `{base}` ({task}), exported by autopeft. Measured values are in `metrics.json`,
the configuration in `config.yaml`.

```python
from transformers import {model_class}

base = {model_class}.from_pretrained("{base}"{head})
{loading}
```
{extra}"""
_QUANTISED = """
The adapter was trained on a {bits}-bit base: `autopeft.load_adapter(base, FOLDER)` quantises the base the same
way before loading, so the outputs are the measured ones.
"""
_MERGED = """
`merged/` holds the base with this adapter folded into its weights: a plain transformers model
(`{model_class}.from_pretrained("merged")`).
"""
# The task head's arguments the README's loading lines pass (the label names are in config.yaml).
_README_HEAD_ARGUMENTS = ("num_labels", "problem_type")
_UNKNOWN_LABELS = ["0", "1"]  # a search stored without its label names: the common two-label head


def export_front(study: optuna.Study, spec: SearchSpec, out_dir: Path, merged: bool = False,
                 picks: Sequence[Pick] = ()) -> list[Path]:
    """Write each Pareto-optimal trial (or only those the ``picks`` choose: see ``autopeft.pick``); with
    ``merged``, also the base with the adapter folded in, where the method allows it (LoRA, DoRA, IA3, BitFit,
    sparse fine-tuning)."""
    records = storage.trial_records(study, spec)
    front = choose(records, spec, picks) if picks else pareto_front(records, spec)
    if not front:
        raise UserError(f"search {study.study_name!r} has no completed feasible trial to export yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = study.user_attrs.get(storage.LABELS, [])
    exported = []
    rows = []
    for record in front:
        source = Path(record.adapter_dir or "")
        if not (source / METHOD_FILE).is_file() and not (source / "adapter_config.json").is_file():
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
        method = get_method(record.config["method"])
        bits = int(record.config.get("base_bits", 16))
        loading = method.loading_code(target) if bits >= 16 else Method.loading_code(method, target)
        extra = _QUANTISED.format(bits=bits) if bits < 16 else ""
        model_class = TASK_MODEL_CLASSES[spec.model.task].__name__
        if merged and method.mergeable and bits >= 16:
            _write_merged(spec, labels, target)
            extra += _MERGED.format(model_class=model_class)
        head = TASK_HEADS[spec.model.task](labels or _UNKNOWN_LABELS)
        (target / "README.md").write_text(_README.format(
            number=record.number, search=study.study_name, method=method.name, base=spec.model.name_or_path,
            task=spec.model.task, model_class=model_class,
            head="".join(f", {k}={head[k]!r}" for k in _README_HEAD_ARGUMENTS if k in head),
            loading=loading.replace("FOLDER", '"path/to/this/folder"'), extra=extra))
        exported.append(target)
        rows.append({"trial": record.number, "folder": target.name,
                     **{n: record.values[n] for n in spec.objective_names},
                     "configuration": describe_config(record.config)})
    _write_summary(out_dir, rows, spec)
    return exported


def _write_merged(spec: SearchSpec, labels: list[str], target: Path) -> None:
    from autopeft.loading import load_merged
    from autopeft.models import load_base_model, load_tokenizer

    model = load_merged(load_base_model(spec.model, labels or _UNKNOWN_LABELS), target)
    model.save_pretrained(str(target / "merged"))
    load_tokenizer(spec.model).save_pretrained(str(target / "merged"))


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
