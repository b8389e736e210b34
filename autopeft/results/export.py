"""Export the Pareto-optimal trials as adapters that stock Hugging Face peft loads.

Each exported folder is a peft adapter folder (``adapter_config.json`` + weights, so
``PeftModel.from_pretrained(base, folder)`` works) with the trial's configuration and measured values beside it.
A summary table (CSV and Markdown) at the top lists what was exported.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import optuna
import yaml

from autopeft.errors import UserError
from autopeft.methods import get_method
from autopeft.methods.base import METHOD_FILE, Method
from autopeft.models.base import TASK_HEADS, TASK_MODEL_CLASSES, head_padding_id, load_model_config
from autopeft.models.pooling import read_pooling
from autopeft.results.noise import ADVICE, NoiseReport, assess
from autopeft.results.pareto import pareto_front
from autopeft.results.pick import Pick, choose
from autopeft.results.views import describe_config, format_value
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.tasks.choices import MULTIPLE_CHOICE
from autopeft.tasks.data import CLASSIFICATION, data_source, positive_index
from autopeft.tasks.label_sets import MULTI_LABEL
from autopeft.tasks.word_tags import TOKEN_CLASSIFICATION

_README = """# Trial {number} of search {search}

{article} {method} adapter for `{base}` ({task}), exported by autopeft. Measured values are in `metrics.json`,
the configuration in `config.yaml`.

```python
from transformers import {model_class}
{imports}
base = {model_class}.from_pretrained("{base}"{head})
{pooling}{loading}
```
{extra}"""
_QUANTISED = """
The adapter was trained on a {bits}-bit base: `autopeft.load_adapter(base, FOLDER)` quantises the base the same
way before loading, so the outputs are the measured ones.
"""
_MEAN_POOLED = """
The head was trained reading the mean of the tokens (the pooling the base model declares; `model.pooling`), not
the first token that `{model_class}` reads by default: `apply_pooling(base, "mean")` above makes it read the same,
and `autopeft.load_adapter(base, FOLDER)` does it by itself (it reads `autopeft_pooling.json`).
"""
_POOLING_IMPORT = "from autopeft.models.pooling import apply_pooling\n"
_POOLING_LINE = 'base = apply_pooling(base, "mean")  # the head reads the tokens\' mean, as it was trained\n'
_MERGED = """
`merged/` holds the base with this adapter folded into its weights: a plain transformers model
(`{model_class}.from_pretrained("merged")`{pooled}).
"""
_READ_AS_EVALUATED = """
Texts are read as the search read its evaluation rows: its tokenizer, cut at `max_length` {max_length}{pairs},
padded on the right{padded}; the head's outputs are {outputs}:

```python
import torch
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{base}"{remote})
tokenizer.padding_side = "right"{pad_line}
{inputs}
batch = tokenizer({arguments}, truncation=True, max_length={max_length}, padding=True, return_tensors="pt")
model.eval()
with torch.no_grad():
    outputs = model(**batch).logits
{reading}
```
"""
_TAGGED_AS_EVALUATED = """
Sentences are read as the search read its evaluation rows: the words joined by single spaces, its tokenizer, cut at
`max_length` {max_length}; a word's tag is the head's highest output at the word's first token (the one its tag was
trained at), found by the tokens' character offsets:

```python
import torch
from transformers import AutoTokenizer

TAGS = {tags!r}  # head order (config.yaml: labels)
tokenizer = AutoTokenizer.from_pretrained("{base}"{remote})
words = "Your sentence , a word at a time".split()
batch = tokenizer(" ".join(words), truncation=True, max_length={max_length}, return_offsets_mapping=True,
                  return_tensors="pt")
offsets = batch.pop("offset_mapping")[0].tolist()
model.eval()
with torch.no_grad():  # the text's own tokens are the last outputs (prompt tuning puts its own in front)
    best = model(**batch).logits[0, -len(offsets):].argmax(-1).tolist()
tags, begin = [], 0
for word in words:  # a word past max_length tokens gets no tag (None)
    first = next((i for i, (a, b) in enumerate(offsets) if a < b and a < begin + len(word) and b > begin), None)
    tags.append(None if first is None else TAGS[best[first]])
    begin += len(word) + 1
print(list(zip(words, tags)))
```
"""
_CHOSEN_AS_EVALUATED = """
Questions are read as the search read its evaluation rows: each option a text pair after its question (the
question's columns {columns} joined by a space), its tokenizer, cut at `max_length` {max_length}, padded on the
right{padded}; the head gives each pair one score, and the option scored highest is the answer (the softmax over a
question's options is what it was trained on):

```python
import torch
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{base}"{remote})
tokenizer.padding_side = "right"{pad_line}
question, options = "Your question", ["An option", "Another option"]
batch = tokenizer([question] * len(options), options, truncation=True, max_length={max_length}, padding=True,
                  return_tensors="pt")
model.eval()
with torch.no_grad():
    scores = model(**batch).logits[:, 0]
print(options[scores.argmax().item()], scores.softmax(-1).tolist())
```
"""
_BATCHED_PROMPT_GENERATION = """
Generating in batches: peft's `generate` ignores position ids for prompt tuning, so a left-padded prompt is read at
positions shifted by its padding, and its answer can differ from the one recorded. The recorded answers were
generated with the virtual tokens in front of each prompt and positions counted over its own tokens; with stock
peft, generate one prompt at a time (no padding) to get the same answers.
"""
_PROMPTED = """
The adapter was trained and evaluated on LLM-Adapters' prompt (the Alpaca template) around each record's
instruction and input, its response after it; prompt it the same way, and generate greedily as the search did
(where the records have answers, each was read from such a response: `autopeft/tasks/answer_reading.py`):

```python
from transformers import AutoTokenizer

PROMPT = {prompt!r}
PROMPT_WITH_INPUT = {prompt_with_input!r}

tokenizer = AutoTokenizer.from_pretrained("{base}"{remote})
instruction, extra_input = "Your instruction", ""  # a record's instruction and (optional) input
text = (PROMPT_WITH_INPUT.format(instruction=instruction, input=extra_input) if extra_input.strip()
        else PROMPT.format(instruction=instruction))
ids = tokenizer(text, return_tensors="pt", return_token_type_ids=False)
output = model.generate(**ids, max_new_tokens=128, do_sample=False)
response = tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
```
"""
_CHAT_PROMPTED = """
The adapter was trained and evaluated on conversations rendered with the model's chat template, on each one's
last reply; prompt it the same way, and generate greedily as the search did:

```python
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{base}"{remote})
messages = [{{"role": "user", "content": "Your message"}}]  # the conversation before the reply, as the records hold it
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
output = model.generate(ids, attention_mask=ids.new_ones(ids.shape), max_new_tokens=128, do_sample=False)
response = tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)
```
"""
_TEXT_PROMPTED = """
The adapter was trained on plain text (every token of each record's text, scored by its mean token loss,
`eval_loss`); it continues a text. Tokenise the text as the records were, and generate greedily as the search
does:

```python
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{base}"{remote})
ids = tokenizer("The text to continue", return_tensors="pt", return_token_type_ids=False)
output = model.generate(**ids, max_new_tokens=128, do_sample=False)
continuation = tokenizer.decode(output[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
```
"""
_EVALUATED = """
The measured values come from the evaluation data `{source}`{subset}.
"""
_EVAL_SUBSET = (": the {count} rows listed in `eval_rows.json` (0-based positions among its data rows, a header "
                "line not counted, in the order evaluated), the seeded subset `data.eval_size` drew")
_UNLISTED_SUBSET = (": a subset of {count} rows that `data.eval_size` drew with seed {seed}, which this search did not "
                    "record")
_HELD_OUT_SUBSET = (": the {count} rows listed in `eval_rows.json` (0-based positions among the training file's data "
                    "rows, a header line not counted, in the order evaluated), held out of training by "
                    "`data.eval_fraction` {fraction:g}{drawn}")
EVAL_ROWS_FILE = "eval_rows.json"
# The task head's arguments the README's loading lines pass (the label names are in config.yaml).
_README_HEAD_ARGUMENTS = ("num_labels", "problem_type", "pad_token_id")
_UNKNOWN_LABELS = ["0", "1"]  # a search stored without its label names: the common two-label head


def export_front(study: optuna.Study, spec: SearchSpec, out_dir: Path, merged: bool = False,
                 picks: Sequence[Pick] = (), include_chance: bool = False) -> list[Path]:
    """Write each Pareto-optimal trial (or only those the ``picks`` choose: see ``autopeft.results.pick``, which never
    picks a point within noise of chance unless ``include_chance``); with ``merged``, also the base with the
    adapter folded in, where the method allows it (LoRA, DoRA, IA3, BitFit, sparse fine-tuning). Each folder's
    metrics.json records where its point stands against chance."""
    records = storage.trial_records(study, spec)
    noise = assess(study, records, spec)
    front = choose(records, spec, picks, noise, include_chance) if picks else pareto_front(records, spec)
    if not front:
        raise UserError(f"search {study.study_name!r} has no completed feasible trial to export yet")
    for record in front:  # every one checked first: a refusal leaves no folder and no part of an export
        source = Path(record.adapter_dir or "")
        if not (source / METHOD_FILE).is_file() and not (source / "adapter_config.json").is_file():
            raise UserError(f"trial {record.number}: its adapter folder {source} is missing; was it moved?")
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = study.user_attrs.get(storage.LABELS, [])
    eval_rows = study.user_attrs.get(storage.EVAL_ROWS)
    exported = []
    rows = []
    padding = head_padding_id(spec.model, load_model_config(spec.model))
    for record in front:
        source = Path(record.adapter_dir or "")
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
            **_positive_label(spec, labels),
            "max_length": spec.data.max_length,
            "pooling": read_pooling(target),
            "configuration": record.config,
        }, sort_keys=False))
        (target / "metrics.json").write_text(json.dumps({
            "objectives": record.values, "measurements": record.measurements, "loss_curve": record.loss_curve,
            "noise": _noise_of(noise, record.number),
        }, indent=2))
        method = get_method(record.config["method"])
        bits = int(record.config.get("base_bits", 16))
        loading = method.loading_code(target) if bits >= 16 else Method.loading_code(method, target)
        extra = _QUANTISED.format(bits=bits) if bits < 16 else ""
        extra += generation_note(spec.model.task, method.name)
        if spec.model.task == "causal-lm":
            extra += prompting_note(spec)
        else:
            extra += reading_note(spec, labels or _UNKNOWN_LABELS, padding)
        model_class = TASK_MODEL_CLASSES[spec.model.task].__name__
        mean_pooled = read_pooling(target) == "mean"
        if mean_pooled:
            extra += _MEAN_POOLED.format(model_class=model_class)
        extra += write_eval_rows(target, spec, eval_rows, recorded=storage.EVAL_ROWS in study.user_attrs)
        if noise is not None and noise.is_at_chance(record.number):
            extra += (f"\n**Within noise of chance** ({spec.task_metric}): this adapter was exported as found, not "
                      "as a result; its metrics.json holds the test.\n")
        elif noise is not None and record.number in noise.no_better_than_untouched:
            extra += (f"\n**No better than the untouched model** ({spec.task_metric} {noise.untouched:.4f} with no "
                      "adapter, on the same records): the base model answers as well without it.\n")
        if noise is not None and record.number in noise.form_not_answers:
            extra += (f"\n**The responses' form, not the answers:** the gold responses' loss fell clearly below the "
                      f"untouched model's ({noise.form_not_answers[record.number]:.4f} against "
                      f"{noise.untouched_loss:.4f}), the answers did not improve.\n")
        if noise is not None and record.number in noise.unanswered:
            extra += (f"\n**Responses that state no answer:** {noise.unanswered[record.number]} of "
                      f"{noise.answer_records} evaluated responses stated none of the task's answers and count as "
                      f"wrong in its {spec.task_metric}.\n")
        if merged and method.mergeable and bits >= 16:
            _write_merged(spec, labels, target)
            extra += _MERGED.format(model_class=model_class, pooled=", then `apply_pooling(model, \"mean\")`"
                                    if read_pooling(target) == "mean" else "")
        elif merged:
            extra += f"\n**Not merged:** {unmerged_reason(method.name, bits)}; load it with the lines above.\n"
        head = TASK_HEADS[spec.model.task](labels or _UNKNOWN_LABELS)
        if padding is not None:  # a decoder without a pad token, as the trials' base was told
            head["pad_token_id"] = padding
        (target / "README.md").write_text(_README.format(
            number=record.number, search=study.study_name, article=_article(method.name), method=method.name,
            base=spec.model.name_or_path, task=spec.model.task, model_class=model_class,
            head="".join(f", {k}={head[k]!r}" for k in _README_HEAD_ARGUMENTS if k in head)
            + (", trust_remote_code=True" if spec.model.trust_remote_code else ""),
            imports=_POOLING_IMPORT if mean_pooled else "", pooling=_POOLING_LINE if mean_pooled else "",
            loading=loading.replace("FOLDER", '"path/to/this/folder"'), extra=extra))
        exported.append(target)
        rows.append({"trial": record.number, "folder": target.name,
                     **{n: record.values[n] for n in spec.objective_names},
                     "configuration": describe_config(record.config)})
    warning = at_chance_message(noise, [row["trial"] for row in rows], spec.task_metric)
    _write_summary(out_dir, rows, spec, warning)
    return exported


def not_merged_message(exported: list[Path], merged: bool) -> str:
    """The folders ``merged`` asked a merged model of and got none (empty when every one has it, or none was
    asked): said to the caller, not only in the folders' READMEs."""
    unmerged = [path.name for path in exported if merged and not (path / "merged").is_dir()]
    if not unmerged:
        return ""
    return (f"not merged: {', '.join(unmerged)} (their methods add computation of their own, or their base was "
            "quantised; each folder's README.md says which)")


def unmerged_reason(method: str, bits: int) -> str:
    """Why ``--merged`` wrote no merged model for a folder (it asked for one for every folder)."""
    if bits < 16:
        return (f"trained on a {bits}-bit base, which merged full-precision weights would not reproduce")
    return f"a {method} adapter adds computation of its own, which cannot be folded into the base weights"


def reading_note(spec: SearchSpec, labels: list[str], padding: int | None) -> str:
    """A classifier's or regressor's adapter gives the measured outputs only on texts read as the search read them
    (the same tokenization, cut and padding: autopeft/tasks/data.py, workers/training.py): the README gives the
    lines, runnable after its loading lines (``Search.predict`` does the same from Python)."""
    remote = ", trust_remote_code=True" if spec.model.trust_remote_code else ""
    if spec.model.task == TOKEN_CLASSIFICATION:
        return _TAGGED_AS_EVALUATED.format(max_length=spec.data.max_length, base=spec.model.name_or_path,
                                           remote=remote, tags=[str(label) for label in labels])
    padded = " with the end-of-sequence token, as the trials' head was told" if padding is not None else ""
    pad_line = "\ntokenizer.pad_token = tokenizer.eos_token  # the model defines no padding token" if padding is not \
        None else ""
    if spec.model.task == MULTIPLE_CHOICE:
        return _CHOSEN_AS_EVALUATED.format(max_length=spec.data.max_length, base=spec.model.name_or_path,
                                           remote=remote, columns=list(spec.data.text_columns), padded=padded,
                                           pad_line=pad_line)
    columns = list(spec.data.text_columns or [])
    pairs = len(columns) == 2
    classes = spec.model.task in (CLASSIFICATION, MULTI_LABEL)
    labels_line = f"LABELS = {[str(label) for label in labels]!r}  # head order (config.yaml: labels)\n"
    if spec.model.task == MULTI_LABEL:  # every label whose probability passes one half, as the trial was scored
        reading = (labels_line + "print([[LABELS[i] for i in row.nonzero().flatten().tolist()] "
                   "for row in outputs.sigmoid() > 0.5])")
    elif classes:
        reading = labels_line + "print([LABELS[i] for i in outputs.argmax(-1).tolist()])"
    else:
        reading = "print(outputs[:, 0].tolist())"
    return _READ_AS_EVALUATED.format(
        max_length=spec.data.max_length, base=spec.model.name_or_path, remote=remote,
        pairs=f", a pair ({' and '.join(columns)}) as the tokenizer joins two texts" if pairs else "",
        padded=padded, pad_line=pad_line,
        inputs=(f'firsts, seconds = ["Your first text"], ["Its second text"]  # as {columns[0]!r}, {columns[1]!r}'
                if pairs else 'texts = ["Your text", "Another text"]'),
        arguments="firsts, seconds" if pairs else "texts",
        outputs="each label's score, in head order" if classes else "the predicted number",
        reading=reading)


def prompting_note(spec: SearchSpec) -> str:
    """A decoder's adapter answers as measured only when prompted as it was trained: the README gives the template
    and the greedy generation, runnable after its loading lines."""
    from autopeft.tasks.data import PROMPT, PROMPT_WITH_INPUT

    remote = ", trust_remote_code=True" if spec.model.trust_remote_code else ""
    if spec.data.messages_column:
        return _CHAT_PROMPTED.format(base=spec.model.name_or_path, remote=remote)
    if spec.data.text_columns:
        return _TEXT_PROMPTED.format(base=spec.model.name_or_path, remote=remote)
    return _PROMPTED.format(prompt=PROMPT, prompt_with_input=PROMPT_WITH_INPUT, base=spec.model.name_or_path,
                            remote=remote)


def generation_note(task: str, method: str) -> str:
    """What a user generating with the exported adapter in stock peft must know to get the recorded answers: only
    prompt tuning on a decoder needs a word (workers/generation.py, ``_virtual_tokens_in_front``)."""
    return _BATCHED_PROMPT_GENERATION if task == "causal-lm" and method == "prompt" else ""


def at_chance_message(noise: NoiseReport | None, numbers: Sequence[int], metric: str) -> str | None:
    """What to say of exported points within noise of chance (None when there are none): the command line prints
    it, the Python API warns it, and summary.md and each such folder's README carry it with the adapters."""
    doubtful = [n for n in numbers if noise is not None and noise.is_at_chance(n)]
    if not doubtful:
        return None
    return (f"trial{'s' if len(doubtful) > 1 else ''} {', '.join(map(str, doubtful))} "
            f"{'are' if len(doubtful) > 1 else 'is'} within noise of chance ({metric}): exported as found, not as a "
            "result" + (f"; the search learned nothing above chance: try {ADVICE}" if noise.nothing_learned else ""))


def _noise_of(noise: NoiseReport | None, number: int) -> dict | None:
    """The point's test against chance and the cheaper point matching it within noise, for metrics.json."""
    if noise is None or number not in noise.tests:
        return None
    untouched = {} if noise.untouched is None else {
        "untouched": noise.untouched, "better_than_untouched": number not in noise.no_better_than_untouched,
        "untouched_loss": noise.untouched_loss, "form_not_answers": number in noise.form_not_answers}
    unanswered = {} if number not in noise.unanswered else {"unanswered": noise.unanswered[number],
                                                               "answer_records": noise.answer_records}
    return {"chance": noise.level.metrics.get(noise.metric) if noise.level else None,
            **noise.tests[number].to_json(), "matched_within_noise_by": noise.matched_by.get(number), **untouched,
            **unanswered}


def write_eval_rows(target: Path, spec: SearchSpec, rows: list[int] | None, recorded: bool = True) -> str:
    """Write ``eval_rows.json`` into an exported folder when the search evaluated a seeded subset (``rows``, as
    stored by the search), so the recorded metrics can be reproduced from the export alone; return the README
    paragraph that says what the values were measured on. ``recorded`` False: the search stored no rows (it was
    started before they were kept), so a subset is named but cannot be listed."""
    source = data_source(spec.data, "eval")
    if not recorded and spec.data.eval_size is not None:
        return _EVALUATED.format(source=source, subset=_UNLISTED_SUBSET.format(count=spec.data.eval_size,
                                                                               seed=spec.seed))
    if not rows:
        return _EVALUATED.format(source=source, subset=" (every row)")
    (target / EVAL_ROWS_FILE).write_text(json.dumps({"eval": source, "rows": rows}))
    if spec.data.eval_fraction is not None:
        drawn = ", then the seeded subset `data.eval_size` drew" if spec.data.eval_size is not None else ""
        return _EVALUATED.format(source=source, subset=_HELD_OUT_SUBSET.format(
            count=len(rows), fraction=spec.data.eval_fraction, drawn=drawn))
    return _EVALUATED.format(source=source, subset=_EVAL_SUBSET.format(count=len(rows)))


def _positive_label(spec: SearchSpec, labels: list[str]) -> dict[str, str]:
    """The class ``f1`` scored (two-label classification), for config.yaml beside the label order."""
    if spec.model.task != CLASSIFICATION or len(labels) != 2:
        return {}
    return {"positive_label": labels[positive_index(labels, spec.data.positive_label)]}


def _article(word: str) -> str:
    """English's article before a method's name as read aloud ("an ia3", "an autopeft", "a unipelt", "a lora")."""
    return "An" if word[:1].lower() in ("a", "e", "i", "o") else "A"


def _write_merged(spec: SearchSpec, labels: list[str], target: Path) -> None:
    from autopeft.loading import load_merged
    from autopeft.models.base import load_base_model, load_tokenizer

    model = load_merged(load_base_model(spec.model, labels or _UNKNOWN_LABELS), target)
    model.save_pretrained(str(target / "merged"))
    load_tokenizer(spec.model).save_pretrained(str(target / "merged"))


def _write_summary(out_dir: Path, rows: list[dict], spec: SearchSpec, warning: str | None = None) -> None:
    with open(out_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [format_value(k, v) if k in spec.objective_names else str(v) for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n" + (f"\n**Warning:** {warning}.\n" if warning else ""))


def zip_tree(folder: Path) -> bytes:
    """``folder`` and everything under it as a zip archive (paths start with the folder's name): what the
    dashboard's and the HTTP API's export downloads hold."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
    return buffer.getvalue()
