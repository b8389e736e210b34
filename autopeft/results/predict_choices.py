"""A multiple-choice adapter choosing among new options, read as the search read its evaluation questions: each
(question, option) pair tokenised by the same function, scored by the worker's own pass, the options of a question
compared by their scores (autopeft/tasks/choices.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft.errors import UserError
from autopeft.results.predict import one_or_many

if TYPE_CHECKING:
    from torch import nn

    from autopeft.spec import SearchSpec

Question = tuple[str, list[str]]  # the question's text (its text columns joined), and its options


def _question(value: Any, spec: SearchSpec, where: str) -> Question | None:
    """One question: a row by the spec's column names (a mapping, its options as the data holds them), or a
    ``(question, [option, ...])`` tuple; None when ``value`` is neither."""
    import pandas as pd

    from autopeft.tasks.choices import is_missing, row_options

    data = spec.data
    if isinstance(value, Mapping):
        missing = [c for c in [*data.text_columns, *data.choice_columns] if c not in value]
        if missing:
            raise UserError(f"{where}: no {missing[0]!r}; a row names the search's question columns "
                            f"{data.text_columns} and option columns {data.choice_columns}")
        options, _ = row_options(value, data, lambda: where)
        cells = [value[c] for c in data.text_columns]
        text = "" if any(is_missing(c) for c in cells) else " ".join(str(c) for c in cells)
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and \
            isinstance(value[1], (list, tuple, np.ndarray, pd.Series)):
        text, options = value[0], [None if is_missing(o) else str(o) for o in value[1]]
    else:
        return None
    if not text.strip():
        raise UserError(f"{where}: the question is missing or empty; a text to read is needed, as in training")
    given = [o for o in options if o is not None]
    if len(given) < 2:
        raise UserError(f"{where}: {len(given)} options given; two or more to choose among")
    repeated = next((o for i, o in enumerate(given) if o in given[:i]), None)
    if repeated is not None:  # each option's probability is given by its text
        raise UserError(f"{where}: option {repeated!r} given twice; give each option once")
    return text, options


def checked_questions(spec: SearchSpec, inputs: Any) -> tuple[list[Question], bool]:
    """The inputs as questions with their options, and whether one was given: a ``(question, [options])`` tuple
    or a row by column name; a list of those; or a DataFrame with the search's question and option columns."""
    import pandas as pd

    if isinstance(inputs, pd.DataFrame):
        questions = [_question(row.to_dict(), spec, f"texts row {i}") for i, (_, row) in enumerate(inputs.iterrows())]
        single = False
    else:
        questions, single = one_or_many(inputs, lambda value, where: _question(value, spec, where),
                                        "a (question, [option, ...]) tuple or a row by column name",
                                        f"a DataFrame with the columns "
                                        f"{[*spec.data.text_columns, *spec.data.choice_columns]}")
    if not questions:
        raise UserError("texts: nothing to predict; give at least one question")
    return questions, single


def option_probabilities(model: nn.Module, tokenizer, spec: SearchSpec,
                         questions: list[Question]) -> list[list[tuple[str, float]]]:
    """Each question's given options with the probability the model gives each (the softmax over its options'
    scores, the one its trials were trained on), in the order given."""
    import pandas as pd
    import torch

    from autopeft.models.base import padding_id
    from autopeft.tasks.choices import ANSWER_COLUMN, OPTIONS_COLUMN, QUESTION_TEXT, option_scores, tokenize_options
    from workers.training import predict_logits

    data = spec.data.model_copy(update={"text_columns": [QUESTION_TEXT]})
    frame = pd.DataFrame({QUESTION_TEXT: [q for q, _ in questions], OPTIONS_COLUMN: [o for _, o in questions],
                          ANSWER_COLUMN: [next(i for i, o in enumerate(opts) if o is not None)
                                          for _, opts in questions]})
    split, _ = tokenize_options(frame, data, tokenizer)
    with torch.inference_mode():
        logits = predict_logits(model, split.pairs, batch_size=spec.training.eval_batch_size,
                                pad_id=padding_id(tokenizer), device=next(model.parameters()).device)
    scores = option_scores(logits[:, 0], split.option_starts).astype(np.float64)
    chosen = []
    for (_, options), row in zip(questions, scores):
        kept = [o for o in options if o is not None]
        shifted = np.exp(row[:len(kept)] - row[:len(kept)].max())
        chosen.append(list(zip(kept, (shifted / shifted.sum()).tolist())))
    return chosen


def as_choices(probabilities: list[list[tuple[str, float]]], with_probabilities: bool, single: bool) -> Any:
    """The option chosen for each question (the likeliest), or each option's probability as a dict."""
    answers = [dict(options) if with_probabilities else max(options, key=lambda pair: pair[1])[0]
               for options in probabilities]
    return answers[0] if single else answers
