"""New search: launch a bundled example or a spec of one's own (pasted or uploaded, with the data files it names)
as a Ray job running `autopeft search run`.

The spec is checked exactly as the command line checks it (fields, model, space, data) before anything starts;
a bad one shows the command line's own message and starts nothing. Uploaded files are stored in
``ROOT/uploads/NAME/``, where the spec's relative paths point, so a spec names its files by file name.
"""

from __future__ import annotations

import streamlit as st

from autopeft.objectives import TASK_METRICS
from autopeft.service.admission import bundled_examples
from autopeft.spec import SEARCH_SPACES_DIR
from autopeft.tasks.choices import MULTIPLE_CHOICE
from autopeft.tasks.word_tags import CONLL_SUFFIXES, CONLL_TAGS, CONLL_WORDS, TOKEN_CLASSIFICATION
from dashboard import access, launching, navigation
from dashboard.spec_form import (
    DECODER_RECORDS,
    DEFAULT_MODEL,
    HELD_OUT_SHARE,
    FileReading,
    SpecForm,
    form_values_from_file,
    spec_from_form,
)
from dashboard.views import Context

SOURCES = ("a bundled example", "a spec of my own", "a short form")
DEMO = "sst2"  # the README demo
WHERE = "launch"
# The short form's text fields until a training file says otherwise (_fill_from_upload)
_FORM_DEFAULTS = {"form_model": DEFAULT_MODEL, "form_columns": "sentence", "form_label": "label",
                  "form_messages": "messages", "form_text_column": "text"}
# A tagger's columns until a file says otherwise: the names a CoNLL file is read into (autopeft/tasks/word_tags.py)
# and CoNLL-2003's words column on the hub
_TAGGER_DEFAULTS = {"form_columns": CONLL_WORDS, "form_label": CONLL_TAGS}
# A multiple-choice search's columns until a file says otherwise: the bundled OpenBookQA example's (a question, its
# options as a list, the answer naming the right one; examples/openbookqa.yaml)
_CHOICE_DEFAULTS = {"form_columns": "question", "form_choices": "options", "form_label": "answer"}
# The column fields each kind of task starts from; the others start from _FORM_DEFAULTS'
_TASK_COLUMN_DEFAULTS = {TOKEN_CLASSIFICATION: _TAGGER_DEFAULTS, MULTIPLE_CHOICE: _CHOICE_DEFAULTS}
_FOLLOWED_TASK = "_form_followed_task"  # the task the fields were last drawn (or filled from a file) for


def render(ctx: Context) -> None:
    st.header("New search")
    st.caption("Launched as a Ray job running `autopeft search run` into this dashboard's database; the spec is "
               "checked as the command line checks it before anything starts.")
    if not access.can_write():
        access.ask_for_write_token("Launching a search")
        return
    examples = bundled_examples()
    source = st.radio("start from", SOURCES, horizontal=True, key="launch_source")
    if source == SOURCES[0]:
        names = list(examples)
        example = st.selectbox("example", names, index=names.index(DEMO) if DEMO in names else 0,
                               key="launch_example", help=f"`{DEMO}` is the README demo: LoRA on MiniLM-L6 for "
                                                          "SST-2, 12 trials, about 3 minutes on 2 cores.")
        with st.expander(f"examples/{example}.yaml"):
            st.code(examples[example].read_text(), language="yaml")
    if source == SOURCES[2]:
        form_values = _short_form()  # outside the form: the task and the data source change the fields shown
    with st.form("launch_form"):
        if source == SOURCES[1]:
            spec_file = st.file_uploader("spec file (YAML)", type=["yaml", "yml"], key="spec_file")
            spec_text = st.text_area("or paste the spec", height=320, key="spec_text",
                                     placeholder="name: my-search\nmodel: {name_or_path: …}\ndata: {train: "
                                                 "train.tsv, eval: dev.tsv, …}\n…")
            data_files = st.file_uploader(
                "data files the spec names", accept_multiple_files=True, key="data_files",
                help="Stored in the service's uploads/NAME/ folder, which every worker reads; the spec names them "
                     "by file name (data.train: train.tsv).")
        name = st.text_input("name", key="launch_name", placeholder="default: the spec's name and the time")
        submitted = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:", key="launch")
    if submitted:
        who = st.session_state.get("launched_by_name") or "dashboard"
        name = name.strip() or None
        if source == SOURCES[2]:
            form, uploads = form_values
            form.name = name or "search"
            text = spec_from_form(form)
            with st.expander("the spec this form wrote"):
                st.code(text, language="yaml")
            launching.act(WHERE, lambda jobs: jobs.launch(text, name=name, launched_by=who, uploads=uploads),
                          "Checking the spec as `autopeft search run` does (fields, model, space, data) …",
                          _launched)
        elif source == SOURCES[0]:
            launching.act(WHERE, lambda jobs: jobs.launch_example(example, name=name, launched_by=who),
                          f"Checking examples/{example}.yaml …", _launched)
        else:
            try:
                text = spec_file.getvalue().decode() if spec_file is not None else spec_text
            except UnicodeDecodeError:
                text = None
            if not text or not text.strip():
                st.error("spec: paste the spec or upload its file (UTF-8 YAML)")
                return
            uploads = {f.name: f.getvalue() for f in data_files or []} or None
            launching.act(WHERE, lambda jobs: jobs.launch(text, name=name, launched_by=who, uploads=uploads),
                          "Checking the spec as `autopeft search run` does (fields, model, space, data) …",
                          _launched)
    if launching.show_message(WHERE) and st.session_state.get("_launched"):
        launched = st.session_state["_launched"]
        if st.button(f"Open {launched}", key="open_launched", icon=":material/open_in_new:"):
            navigation.open_manage(launched)


def _fill_from_upload() -> None:
    """A newly uploaded training file fills the fields it shows (task, columns, records, metric: as `autopeft
    init` reads a file), before they are drawn; what the user changes afterwards stays, until another file comes.
    A file the reader cannot take is left to the launch's check, which names the problem."""
    from autopeft.errors import UserError

    uploaded = st.session_state.get("form_train")
    if uploaded is None:
        st.session_state.pop("_form_reading", None)  # the file was removed: nothing read from it stays
        st.session_state.pop("_form_read_from", None)
        return
    if st.session_state.get("_form_read_from") == uploaded.file_id:
        return
    st.session_state["_form_read_from"] = uploaded.file_id
    try:
        chosen = st.session_state.get("form_model")
        reading = form_values_from_file(uploaded.name, uploaded.getvalue(),
                                        None if chosen in (None, DEFAULT_MODEL) else chosen)
    except UserError as error:
        reading = FileReading({}, None, {}, [f"nothing filled in ({error})"])
    st.session_state.update(reading.values)
    if "form_task" in reading.values:  # the columns and metric the file filled in are its task's own
        st.session_state[_FOLLOWED_TASK] = reading.values["form_task"]
    st.session_state["_form_reading"] = reading


def _follow_task(task: str) -> None:
    """When the user changes the task, its metric starts at the task's own first one (a tagger's "accuracy" kept
    from a classifier would be word accuracy, mostly its "O" words, where the entity F1 is its field's score); and
    when they turn it to another kind of columns (a tagger, multiple-choice, or back), column fields still at the
    other kind's defaults take this kind's (a tagger's words and tags are rarely in "sentence" and "label", nor a
    question's options). What the user typed, or an uploaded file filled in with its own task
    (``_fill_from_upload``), stays. Called before those fields are drawn (a field's value can only be set before it
    is)."""
    followed = st.session_state.get(_FOLLOWED_TASK, task)
    st.session_state[_FOLLOWED_TASK] = task
    if followed == task:
        return
    st.session_state.pop("form_metric", None)  # drawn again at its first choice
    before, after = _column_defaults(followed), _column_defaults(task)
    for key in before.keys() & after.keys():
        if st.session_state.get(key) == before[key]:
            st.session_state[key] = after[key]


def _column_defaults(task: str) -> dict[str, str]:
    """The column fields' values a form for ``task`` starts from."""
    return _TASK_COLUMN_DEFAULTS.get(task, {key: _FORM_DEFAULTS[key] for key in ("form_columns", "form_label")})


def _launched(job) -> str:
    st.session_state["_launched"] = job.search
    return (f"Launched {job.search} as Ray job {job.submission_id} (by {job.launched_by}). It shows under "
            f"Searches, with its state, log and Stop / Resume.")


def _short_form() -> tuple[SpecForm, dict[str, bytes] | None]:
    """The few fields a first search needs; the spec they make is shown on launch, to copy and go on by hand."""
    for key, default in {**_FORM_DEFAULTS, "form_choices": _CHOICE_DEFAULTS["form_choices"]}.items():
        st.session_state.setdefault(key, default)  # values, not widget defaults: an upload may set them
    _fill_from_upload()
    model = st.text_input("model", key="form_model",
                          help="A hub name, a model folder under the service's root, or python-package:MODULE.")
    task = st.selectbox("task", list(TASK_METRICS), key="form_task")
    _follow_task(task)
    from_dataset = st.toggle("a `datasets` dataset instead of files", key="form_from_dataset")
    train = evaluation = None
    dataset = config = None
    if from_dataset:
        dataset = st.text_input("dataset", placeholder="glue", key="form_dataset")
        config = st.text_input("configuration", placeholder="sst2", key="form_dataset_config")
    else:
        kinds = ".tsv, .csv, .jsonl, .json, .parquet" + (
            "".join(f", {suffix}" for suffix in CONLL_SUFFIXES) if task == TOKEN_CLASSIFICATION else "")
        train = st.file_uploader(f"training file ({kinds})", key="form_train")
        evaluation = st.file_uploader(f"evaluation file (none: {HELD_OUT_SHARE:.0%} of the training rows are held "
                                      "out to evaluate on)", key="form_eval")
        reading = st.session_state.get("_form_reading")
        for reason in reading.reasons if reading else []:
            st.caption(f"read from the file: {reason}")
    columns, label, messages, records = "sentence", "label", "", next(iter(DECODER_RECORDS))
    choices = ""
    if task == MULTIPLE_CHOICE:  # a question, its options, the right one
        columns = st.text_input("question column(s), comma-separated (two are joined by a space)", key="form_columns")
        choices = st.text_input("option columns, comma-separated (a column each), or one column holding each row's "
                                "options as a list", key="form_choices")
        label = st.text_input("answer column (the right option: its position from 0, a letter A, B, ..., or its "
                              "text)", key="form_label")
    elif task == TOKEN_CLASSIFICATION:  # one column of words, one of tags: a tagger reads no pairs
        columns = st.text_input("words column (each row's words: a list, or text split at whitespace)",
                                key="form_columns")
        label = st.text_input("tags column (a tag per word: a list, or text split at whitespace)", key="form_label")
    elif task != "causal-lm":
        columns = st.text_input("text column(s), comma-separated (two for pairs)", key="form_columns")
        label = st.text_input("label column" if task != "multi-label-classification" else
                              "label column (its labels joined by commas), or a 0/1 column per label, comma-separated",
                              key="form_label")
    else:
        records = st.selectbox("records", list(DECODER_RECORDS), key="form_records",
                               help="How the files hold the task: autopeft/tasks/data.py reads each form.")
        if DECODER_RECORDS[records] == "chat":
            messages = st.text_input("chat records: their messages column", key="form_messages")
        elif DECODER_RECORDS[records] == "text":
            columns = st.text_input("plain text: its text column", key="form_text_column")
    plain_text = task == "causal-lm" and DECODER_RECORDS[records] == "text"
    # plain text has no gold answers: its loss is the one task metric it reports
    metric = st.selectbox("task metric", ["eval_loss"] if plain_text else TASK_METRICS[task], key="form_metric")
    costs = st.multiselect("costs to minimise", ["trainable_params", "peak_memory_mb", "train_time_s",
                                                 "adapter_bytes"], default=["trainable_params"], key="form_costs")
    limit = st.number_input("at most this % of the model trainable (0: no limit)", min_value=0.0, value=1.0,
                            key="form_limit")
    spaces = sorted(p.stem for p in SEARCH_SPACES_DIR.glob("*.yaml"))
    space = st.selectbox("search space", spaces, index=spaces.index("lora") if "lora" in spaces else 0,
                         key="form_space")
    trials = st.number_input("trials", min_value=1, value=12, key="form_trials")
    steps = st.number_input("training steps per trial (0: auto, found by a probe)", min_value=0, value=150,
                            key="form_steps")
    parallel = st.number_input("trials at once", min_value=1, value=2, key="form_parallel")
    uploads = {f.name: f.getvalue() for f in (train, evaluation) if f is not None} or None
    form = SpecForm(name="", model=model, task=task, train_file=train.name if train else None,
                    eval_file=evaluation.name if evaluation else None, dataset=dataset or None,
                    dataset_config=config or None, text_columns=_names(columns), choice_columns=_names(choices),
                    label_column=label, messages_column=messages.strip() or None, plain_text=plain_text,
                    metric=metric, costs=list(costs),
                    max_trainable_percent=limit or None,
                    space=space, trials=int(trials), steps_per_trial=int(steps) or "auto", parallel=int(parallel))
    reading = st.session_state.get("_form_reading") if train is not None else None
    if reading is not None and MULTIPLE_CHOICE in (task, reading.values.get("form_task")) and \
            reading.values.get("form_task") != task:
        reading = None  # a length and label_values read for a question's options, or for other columns than its
    if reading is not None:  # what the form does not ask, as the file showed it
        form.max_length = reading.max_length
        if task != "causal-lm" or DECODER_RECORDS[records] == "instruction":  # labels' fields, or records'
            form.record_fields = dict(reading.record_fields)
    return form, uploads


def _names(field: str) -> list[str]:
    """A comma-separated field's column names."""
    return [name.strip() for name in field.split(",") if name.strip()]
