"""One trial: its configuration, learning curve, measured costs, adapter folder, worker and failure reason; and,
for a completed trial whose adapter is on this machine, a box to try it on new inputs."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from autopeft.objectives import MEASUREMENTS
from autopeft.results.views import format_value
from autopeft.tasks.choices import MULTIPLE_CHOICE
from autopeft.tasks.tag_spans import OUTSIDE_TAGS
from autopeft.tasks.word_tags import TOKEN_CLASSIFICATION
from dashboard import analysis, cache, figures
from dashboard.views import Context

NO_TAG = "—"  # a word past data.max_length tokens: the model never read it, so it has no tag


def render(ctx: Context) -> None:
    trials, spec = cache.trials(ctx.url, ctx.search)
    if trials.empty:
        st.info("This search has no trials yet.")
        return
    numbers = trials["number"].tolist()
    if st.session_state.get("trial_number") not in numbers:
        st.session_state["trial_number"] = numbers[0]
    number = st.selectbox("trial", numbers, key="trial_number")
    row = trials[trials["number"] == number].iloc[0]
    on_front = bool(analysis.front(trials, spec).loc[row.name])
    st.header(f"Trial {number} — {row['state']}" + (" · on the Pareto front" if on_front else ""))
    st.markdown(f"**{row['configuration'] or '(no configuration)'}**")
    if pd.notna(row["fail_reason"]) and row["fail_reason"]:
        st.error(row["fail_reason"])
    measured = [m for m in MEASUREMENTS if pd.notna(row[m])]
    cols = st.columns(4)
    for i, name in enumerate(measured):
        unit = MEASUREMENTS[name].unit
        suffix = f" {unit}" if unit in ("MiB", "s", "%") else ""
        cols[i % 4].metric(name, format_value(name, row[name]) + suffix)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Learning curve")
        curve = cache.loss_curve(ctx.url, int(row["trial_id"]))
        rungs = cache.rung_values(ctx.url, int(row["trial_id"]))
        if curve or rungs:
            st.plotly_chart(figures.loss_curve(curve, rungs, spec.task_metric), key="loss_curve", width="stretch")
        else:
            st.caption("No loss recorded for this trial.")
    with right:
        st.subheader("Configuration")
        st.json(json.loads(row["config"]), expanded=True)
    st.subheader("Where and when")
    lines = [f"- adapter folder: `{row['adapter_dir'] or '-'}`", f"- worker: `{row['worker'] or '-'}`"]
    if row.get("execution"):
        lines.append(f"- ran with: {row['execution']} (final evaluation in fp32)")
    if pd.notna(row["start"]):
        took = f", took {row['duration_s']:.1f} s" if pd.notna(row["duration_s"]) else " (running)"
        lines.append(f"- started {row['start']:%Y-%m-%d %H:%M:%S} UTC{took}")
    lines.append(f"- feasible: {'yes' if row['feasible'] else 'no (violates a constraint)'}")
    if pd.notna(row["retry_of"]):
        lines.append(f"- retry of trial {int(row['retry_of'])}")
    if pd.notna(row.get("finishes")):
        lines.append(f"- finishes early-stopped trial {int(row['finishes'])}: trained again to the end, without "
                     "rungs, because the rung that stopped it would keep it now")
    if row.get("warm_start"):  # an earlier search's trial, or the probe run whose reference learned
        lines.append(f"- queued first: re-trains {row['warm_start']} on this task")
    st.markdown("\n".join(lines))
    if row["state"] == "COMPLETE" and isinstance(row["adapter_dir"], str) and Path(row["adapter_dir"]).is_dir():
        try_it(ctx, spec, int(number), row["adapter_dir"])


def try_it(ctx: Context, spec, number: int, adapter_dir: str) -> None:
    """The trial on the visitor's own inputs, read as the search read its evaluation rows (autopeft/results/
    predict.py, predict_choices.py, responses.py): a classifier's labels and probabilities, a regressor's numbers, a
    tagger's tag per word, a multiple-choice search's chosen option, a decoder's greedy response. Nothing is
    written: the model is loaded from the adapter folder when first run."""
    from autopeft.errors import UserError
    from autopeft.results import predict, responses

    st.subheader("Try it")
    if spec.model.task == TOKEN_CLASSIFICATION:
        try_tagger(ctx, spec, number, adapter_dir)
        return
    if spec.model.task == MULTIPLE_CHOICE:
        try_choices(ctx, spec, number, adapter_dir)
        return
    decoder = spec.model.task == "causal-lm"
    columns = list(spec.data.text_columns or [])
    if decoder:
        asked = st.text_area({"chat": "a message", "text": "a text to continue"}.get(
            responses.prompt_form(spec), "an instruction"), key="try_prompt")
        inputs = asked if asked.strip() else None
    elif len(columns) == 2:
        first, second = (st.text_input(column, key=f"try_{i}") for i, column in enumerate(columns))
        inputs = [(first, second)] if first.strip() and second.strip() else None
    else:
        asked = st.text_area("texts, one per line", key="try_texts")
        inputs = [line for line in asked.splitlines() if line.strip()] or None
    if not st.button("Run", key="try_run", disabled=inputs is None):
        return
    try:
        with st.spinner("loading the trial's model and running it"):
            model, tokenizer = cache.trial_model(ctx.url, ctx.search, number, adapter_dir, spec)
            if decoder:
                prompts, _ = responses.checked_prompts(spec, inputs, 128)
                st.text(responses.respond(model, tokenizer, prompts, responses.prompt_form(spec), 128)[0])
                return
            rows, _ = predict.checked_rows(spec, inputs, probabilities=spec.model.task != "sequence-regression")
            outputs = predict.predict_rows(model, tokenizer, spec, rows)
    except UserError as error:
        st.error(str(error))
        return
    shown = pd.DataFrame(rows, columns=columns)
    if spec.model.task == "sequence-regression":
        shown["prediction"] = predict.as_predictions(outputs, spec, [], False, False)
    else:
        probabilities = predict.as_predictions(outputs, spec, cache.label_names(ctx.url, ctx.search), True, False)
        shown["prediction"] = ([", ".join(labels) for labels in predict.predicted_labels(probabilities)]
                               if spec.model.task == "multi-label-classification" else
                               list(probabilities.idxmax(axis=1)))
        if len(probabilities.columns) > predict.LABELS_AS_COLUMNS:  # a column each would run off the page
            shown["most likely"] = predict.likeliest_labels(probabilities)
            st.dataframe(shown, hide_index=True, width="stretch")
            with st.expander(f"every label's probability ({len(probabilities.columns)} labels)"):
                st.dataframe(probabilities, hide_index=True, width="stretch")
            return
        shown = pd.concat([shown, probabilities], axis=1)
    st.dataframe(shown, hide_index=True, width="stretch")


def try_tagger(ctx: Context, spec, number: int, adapter_dir: str) -> None:
    """A tagger on the visitor's sentences (one per line, split at whitespace as the search's text cells were):
    each sentence with its tagged words marked, then every word beside its tag, from the same pass as
    ``Search.predict`` (autopeft/results/predict.py: ``checked_sentences``, ``predict_tags``)."""
    from autopeft.errors import UserError
    from autopeft.results import predict

    asked = st.text_area("sentences, one per line (split into words at whitespace)", key="try_texts")
    lines = [line for line in asked.splitlines() if line.strip()]
    if not st.button("Run", key="try_run", disabled=not lines):
        return
    try:
        with st.spinner("loading the trial's model and running it"):
            model, tokenizer = cache.trial_model(ctx.url, ctx.search, number, adapter_dir, spec)
            sentences, _ = predict.checked_sentences(spec, lines)
            tagged = predict.predict_tags(model, tokenizer, spec, sentences, cache.label_names(ctx.url, ctx.search))
    except UserError as error:
        st.error(str(error))
        return
    for pairs in tagged:
        st.html(marked_sentence(pairs))
    st.dataframe(tag_table(tagged), hide_index=True, width="stretch")
    if any(tag is None for pairs in tagged for _, tag in pairs):
        st.caption(f"{NO_TAG}: a word past data.max_length ({spec.data.max_length} tokens), which the model never "
                   "read; the search scored such words as wrong")


def try_choices(ctx: Context, spec, number: int, adapter_dir: str) -> None:
    """A multiple-choice trial on the visitor's question and options (one per line): the option chosen, and every
    option's probability (the softmax over the question's options, the one its trials were trained on), from the
    same pass as ``Search.predict`` (autopeft/results/predict_choices.py). The question is one box even where the
    search's question spans several columns: those are joined by a space before they are read."""
    from autopeft.errors import UserError
    from autopeft.results.predict_choices import checked_questions, option_probabilities

    columns = list(spec.data.text_columns or [])
    asked = st.text_area(f"question ({' and '.join(columns)}, joined by a space)" if len(columns) > 1 else
                         "question", key="try_question")
    options = [line.strip() for line in st.text_area("options, one per line", key="try_options").splitlines()
               if line.strip()]
    ready = bool(asked.strip()) and len(options) >= 2
    if not ready and (asked.strip() or options):
        st.caption("a question and two or more options to choose among")
    if not st.button("Run", key="try_run", disabled=not ready):
        return
    try:
        with st.spinner("loading the trial's model and running it"):
            model, tokenizer = cache.trial_model(ctx.url, ctx.search, number, adapter_dir, spec)
            questions, _ = checked_questions(spec, (asked.strip(), options))
            scored = option_probabilities(model, tokenizer, spec, questions)[0]
    except UserError as error:
        st.error(str(error))
        return
    st.text(f"chosen: {chosen_option(scored)}")  # text, not markdown: a visitor's "**" or "<b>" is shown as typed
    st.dataframe(choice_table(scored), hide_index=True, width="stretch", column_config={
        "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0, format="%.3f")})


def chosen_option(scored: list[tuple[str, float]]) -> str:
    """The option given the highest probability (the first of equals, as ``Search.predict`` chooses)."""
    return max(scored, key=lambda pair: pair[1])[0]


def choice_table(scored: list[tuple[str, float]]) -> pd.DataFrame:
    """Each option in the order typed, its probability and whether it is the one chosen (the first of equals)."""
    chosen = max(range(len(scored)), key=lambda i: scored[i][1])
    return pd.DataFrame([(option, probability, i == chosen) for i, (option, probability) in enumerate(scored)],
                        columns=["option", "probability", "chosen"])


def tag_table(tagged: list[list[tuple[str, str | None]]]) -> pd.DataFrame:
    """Every word beside its tag, numbered by sentence (from 1, as a person counts lines), so that many sentences
    fit one table."""
    rows = [(index, word, NO_TAG if tag is None else tag)
            for index, pairs in enumerate(tagged, start=1) for word, tag in pairs]
    return pd.DataFrame(rows, columns=["sentence", "word", "tag"])


def marked_sentence(pairs: list[tuple[str, str | None]]) -> str:
    """A sentence as HTML with each word whose tag is not "O" highlighted and its tag beside it: the entities stand
    out where a table row per word buries them among the untagged words. Every word and tag is escaped (a
    visitor's "<b>" is shown as typed); a word the model never read is greyed."""
    words = []
    for word, tag in pairs:
        shown = html.escape(word)
        if tag is None:
            words.append(f'<span style="opacity: 0.45">{shown}</span>')
        elif tag in OUTSIDE_TAGS:
            words.append(shown)
        else:
            words.append(f"<mark>{shown}</mark><sup>{html.escape(tag)}</sup>")
    return "<p>" + " ".join(words) + "</p>"
