"""Chat records (``data.messages_column``): conversations, as chat data is written (a list of ``{"role", "content"}``
messages per record, the last one the assistant's reply), rendered with the model's own chat template.

Why the template and not LLM-Adapters' Alpaca prompt: an instruct model (SmolLM2-Instruct, Llama 3, Qwen2.5) was
tuned on its own conversation format, and a user of the adapter prompts it that way; an adapter trained in another
format is trained to serve prompts nobody sends it.

Each record trains on its last message, the assistant's reply, after everything before it: the prompt is the
conversation up to that reply with the template's generation prompt (``<|im_start|>assistant``), and the response
is what the whole conversation's rendering adds after it (the reply and the template's end of turn, so that a
trained model ends its turn where the template does). Where a template renders earlier turns differently once a
later one follows, so that the prompt is not a prefix of the whole (some templates drop a model's reasoning from
past turns), the response is the reply's own tokens and the end-of-sequence token.

Conversations written as ShareGPT writes them (``{"from": "human" | "gpt" | "system", "value": ...}``, the form of
many published chat datasets and of other fine-tuning tools' ``sharegpt`` type) are read as the same messages:
``human`` is the user, ``gpt`` the assistant. Refusing them would send the user off to convert their data for a
renaming these lines do exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autopeft.errors import UserError

ASSISTANT = "assistant"
# ShareGPT's speakers as chat templates name them
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": ASSISTANT, "assistant": ASSISTANT, "system": "system",
                  "tool": "tool"}


def _sharegpt_message(message: Mapping, where: str) -> dict[str, Any]:
    """A ShareGPT turn (``from``, ``value``) as a chat message; a speaker outside ShareGPT's names is refused."""
    speaker = message["from"]
    role = SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
    if role is None:
        raise UserError(f"data.messages_column: {where} has a message from {speaker!r}, which ShareGPT's form "
                        f"does not name; write each message's \"from\" as one of {', '.join(SHAREGPT_ROLES)}")
    return {"role": role, "content": message["value"]}


def is_sharegpt_turn(message: Any) -> bool:
    return isinstance(message, Mapping) and "role" not in message and {"from", "value"} <= message.keys()


def as_chat_messages(messages: list[Any], where: str) -> list[Any]:
    """The messages with ShareGPT's turns as chat messages (the others as they are, for the caller's checks)."""
    return [_sharegpt_message(m, where) if is_sharegpt_turn(m) else m for m in messages]


def conversation(value: Any, where: str) -> list[dict[str, str]]:
    """One record's messages as plain dicts, checked: a non-empty list of {role, content} with text content, the
    last the assistant's."""
    # a list from JSON, a numpy array of dicts from Parquet
    iterable = hasattr(value, "__iter__") and not isinstance(value, str | bytes | Mapping)
    messages = list(value) if iterable else None
    fix = ('write each record\'s messages as a list of {"role": ..., "content": ...}, the last {"role": '
           '"assistant", ...} the reply to train on')
    if not messages:
        raise UserError(f"data.messages_column: {where} has no messages ({str(value)[:60]!r}); {fix}")
    checked = []
    for message in as_chat_messages(messages, where):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise UserError(f"data.messages_column: {where} has a message {str(message)[:80]!r} that is not "
                            f"{{role, content}} text; {fix}")
        checked.append({"role": message["role"], "content": message["content"]})
    if checked[-1]["role"] != ASSISTANT:
        raise UserError(f"data.messages_column: {where} ends with a {checked[-1]['role']!r} message; {fix}")
    return checked


def check_template(tokenizer, model_name: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"data.messages_column: the tokenizer of {model_name!r} has no chat template to render "
                        f"conversations with; use a chat model's tokenizer, or write the records as instruction / "
                        f"input / output fields")


def chat_turn(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """The prompt's token ids (the conversation before the last reply, with the generation prompt) and the
    response's (the reply and its end of turn)."""
    prompt = list(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True))
    whole = list(tokenizer.apply_chat_template(messages, tokenize=True))
    if whole[:len(prompt)] == prompt and len(whole) > len(prompt):
        return prompt, whole[len(prompt):]
    reply = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return prompt, reply + ([eos] if eos is not None else [])
