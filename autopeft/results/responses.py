"""A decoder search's adapter answering new prompts, prompted as the search trained and evaluated it.

A decoder's adapter was trained on one prompt form (LLM-Adapters' template around an instruction, the model's chat
template around a conversation, or plain text, which it continues) and its answers were generated greedily from
that form. Asked any other way it answers worse than its measured score says, so
:meth:`autopeft.api.Search.generate` builds the prompt as ``autopeft.tasks.data`` built the records' and decodes as the
evaluation did: greedy, to the end of sequence.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from autopeft.errors import UserError
from autopeft.tasks.chat_records import as_chat_messages, is_sharegpt_turn
from autopeft.tasks.data import instruction_prompt

if TYPE_CHECKING:
    from torch import nn

    from autopeft.spec import SearchSpec

# One prompt: an instruction (text, or {"instruction": ..., "input": ...}); for a search on chat records a
# conversation (a list of {"role": ..., "content": ...} messages, the reply to come last), or text as the one user
# message of one; for a search on plain text, the text to continue.
Prompt = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]
# How a search's records were prompted: autopeft/tasks/data.py's three readings of causal-lm records.
PromptForm = Literal["instruction", "chat", "text"]

_WANTED: dict[str, str] = {
    "instruction": "an instruction: text, or {'instruction': ..., 'input': ...}",
    "chat": "a conversation: a list of {'role': ..., 'content': ...} messages, as the search's chat records hold "
            "them, or text, the user's one message",
    "text": "text to continue, as the search's plain-text records were written",
}


def prompt_form(spec: SearchSpec) -> PromptForm:
    """How the search's records were prompted, from the fields that read them."""
    if spec.data.messages_column:
        return "chat"
    return "text" if spec.data.text_columns else "instruction"


def _is_conversation(value: Any) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
            and all(isinstance(m, Mapping) and "role" in m or is_sharegpt_turn(m) for m in value))


def _fits(prompt: Any, form: PromptForm) -> bool:
    if form == "chat":
        return _is_conversation(prompt)
    if form == "text":
        return isinstance(prompt, str)
    return isinstance(prompt, str) or (isinstance(prompt, Mapping) and isinstance(prompt.get("instruction"), str)
                                       and isinstance(prompt.get("input") or "", str))


def as_prompt_list(prompts: Prompt | Sequence[Prompt], form: PromptForm) -> tuple[list[Any], bool]:
    """The prompts as a list, and whether one prompt was given (so that one response is returned)."""
    single = isinstance(prompts, str) or (_is_conversation(prompts) if form == "chat" else isinstance(prompts, Mapping))
    if not single and not isinstance(prompts, Sequence):
        raise UserError(f"prompts: expected {_WANTED[form]}, or a list of them; got {type(prompts).__name__}")
    listed = [prompts] if single else list(prompts)
    if not listed:
        raise UserError("prompts: nothing to answer; give at least one")
    if form == "chat":  # text asked of a chat-trained adapter: the user's turn, as a chat interface sends it
        listed = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in listed]
    for index, prompt in enumerate(listed):
        if not _fits(prompt, form):
            raise UserError(f"prompts[{index}]: expected {_WANTED[form]}; got {type(prompt).__name__}")
    if form == "chat":  # ShareGPT's turns, as the search read its records
        listed = [as_chat_messages(list(prompt), f"prompts[{index}]") for index, prompt in enumerate(listed)]
    return listed, single


def prompt_ids(tokenizer, prompt: Any, form: PromptForm) -> list[int]:
    """The prompt's token ids, built as the search built its records' (autopeft/tasks/data.py, chat_records.py): plain
    text is tokenised as a record's text begins, without the end of sequence that closes a record."""
    if form == "chat":
        return list(tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True))
    if form == "text":
        return tokenizer(prompt)["input_ids"]
    instruction, extra = (prompt, "") if isinstance(prompt, str) else (prompt["instruction"], prompt.get("input"))
    return tokenizer(instruction_prompt(str(instruction), "" if extra is None else str(extra)))["input_ids"]


def prompts_from_records(spec: SearchSpec, frame: Any, where: str) -> list[Any]:
    """Prompts from a table of records in the search's own record form (``autopeft predict --file``): instruction
    records by ``data.instruction_column`` / ``input_column``, chat records by ``data.messages_column``, plain text
    by its text column. A record's gold reply, where it has one (the last, assistant's, message of a chat record),
    is left out: the prompt is what comes before it."""
    data, form = spec.data, prompt_form(spec)
    column = {"chat": data.messages_column, "text": (data.text_columns or [""])[0],
              "instruction": data.instruction_column}[form]
    if column not in frame.columns:
        raise UserError(f"{where}: no column {column!r}, which the search's records were read from; the file has "
                        f"{list(frame.columns)}")
    if form == "text":
        return [str(text) for text in frame[column]]
    if form == "chat":
        prompts = []
        for row, value in enumerate(frame[column]):
            messages = [dict(m) for m in value] if hasattr(value, "__iter__") and not isinstance(value, str) else value
            if isinstance(messages, list):  # ShareGPT's turns, as the search read its records
                messages = as_chat_messages(messages, f"{where} data row {row + 1}")
            if isinstance(messages, list) and messages and messages[-1].get("role") == "assistant":
                messages = messages[:-1]
            prompts.append(messages)
        return prompts
    inputs = frame[data.input_column] if data.input_column in frame.columns else None
    return [{"instruction": str(instruction),
             "input": "" if inputs is None or not isinstance(inputs.iloc[i], str) else inputs.iloc[i]}
            for i, instruction in enumerate(frame[column])]


def checked_prompts(spec: SearchSpec, prompts: Prompt | Sequence[Prompt], max_new_tokens: int) -> tuple[list[Any],
                                                                                                     bool]:
    """The prompts as a list and whether one was given, refused before any model is loaded where the search or the
    request cannot give responses."""
    if spec.model.task != "causal-lm":
        raise UserError(f"generate: the search trained a {spec.model.task} head, which predicts no text; use "
                        f"predict(trial, texts)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise UserError(f"max_new_tokens: expected a whole number of at least 1 (got {max_new_tokens!r})")
    form = prompt_form(spec)
    listed, single = as_prompt_list(prompts, form)
    empty = next((i for i, p in enumerate(listed) if isinstance(p, str) and not p.strip()), None)
    if empty is not None:
        raise UserError(f"prompts[{empty}]: empty; give {'the text to continue' if form == 'text' else 'a question'}")
    return listed, single


def respond(model: nn.Module, tokenizer, prompts: list[Any], form: PromptForm, max_new_tokens: int) -> list[str]:
    """Greedy responses to prompts ``checked_prompts`` listed, one at a time: unpadded, so that a method with virtual
    tokens (prompt tuning) reads the positions it was evaluated at, which peft's batched ``generate`` shifts by the
    padding."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    responses = []
    model.eval()
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([prompt_ids(tokenizer, prompt, form)])
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=max_new_tokens, pad_token_id=pad)
            responses.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True))
    return responses
