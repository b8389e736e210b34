"""Chat records (``data.messages_column``): conversations rendered with the model's chat template, trained on the
last reply, scored as any decoder task, exported with the lines that prompt the adapter the same way; records that
do not fit are refused naming the row and the fix (autopeft/tasks/chat_records.py).

A tiny LLaMA built from a configuration, its tokenizer given a ChatML template (SmolLM2's form), learns the
records for real (tests/conftest.py ``learn_decoder_task``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from peft import PeftModel

import autopeft
from autopeft.errors import AtChanceWarning, UserError
from autopeft.models.base import load_base_model
from autopeft.spec import load_spec
from autopeft.store.predictions import decode
from autopeft.tasks.data import load_task_data
from tests.conftest import CHATML, cue_reviews, learn_decoder_task, save_tiny_decoder, tiny_spec, write_spec
from workers.generation import reference_answers


def _records(count: int, seed: int) -> list[dict]:
    """Reviews whose sentiment is the one cue word they hold, as a system message, the user's question and the
    assistant's reply."""
    return [{"messages": [{"role": "system", "content": "You rate reviews ."},
                          {"role": "user", "content": f"Review : {review} . Positive or negative ?"},
                          {"role": "assistant", "content": f"the sentiment is {answer}"}], "answer": answer}
            for review, answer in cue_reviews(count, seed)]


def test_chat_records_train_on_the_last_reply_in_the_models_template(tmp_path):
    evaluation = _records(32, seed=1)
    data, model, runner = learn_decoder_task(tmp_path, _records(256, seed=0), evaluation, chat_template=CHATML,
                                             messages_column="messages")
    tokenizer = runner.tokenizer
    prompt = tokenizer.decode(data.eval.prompts[0])
    # the prompt is the conversation before the reply in the template, ending with the generation prompt
    assert prompt.startswith("<| im_start |> system") and prompt.endswith("<| im_start |> assistant"), prompt
    scored = data.eval.token_labels[0][data.eval.token_labels[0] != -100]
    assert tokenizer.decode(scored) == f"the sentiment is {evaluation[0]['answer']} <|im_end|>"  # reply, end of turn
    assert scored[-1] == tokenizer.eos_token_id
    assert data.answer_words == ["negative", "positive"]

    result = runner.evaluate(model, 16)
    assert result.metrics["answer_accuracy"] >= 0.9, decode(result.predictions)
    # Search.generate prompts a conversation as the records were prompted (autopeft/results/responses.py)
    from autopeft.results.responses import prompt_ids

    assert all(prompt_ids(tokenizer, r["messages"][:-1], "chat") == list(ids)
               for r, ids in zip(evaluation, data.eval.prompts))


def test_a_chat_search_exports_lines_that_prompt_as_it_was_trained(tmp_path, capsys):
    records = _records(120, seed=2)
    (tmp_path / "train.json").write_text(json.dumps(records[:96]))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[96:]))
    save_tiny_decoder(tmp_path / "decoder", records, chat_template=CHATML)
    spec = tiny_spec(tmp_path, model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
                     data={"train": str(tmp_path / "train.json"), "eval": str(tmp_path / "eval.jsonl"),
                           "messages_column": "messages", "max_length": 64},
                     objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[],
                     search_space="lora", budget={"trials": 1, "steps_per_trial": 6},
                     workers={"parallel": 1, "cpus_per_trial": 2})
    search = autopeft.run_search(spec, name="chat", executor="local", progress=False)
    assert (search.trials_dataframe()["state"] == "COMPLETE").all()
    with warnings.catch_warnings():  # six steps may learn nothing; the README's lines are the subject here
        warnings.simplefilter("ignore", AtChanceWarning)
        folder = search.export(tmp_path / "out", include_chance=True)[0]
    blocks = (folder / "README.md").read_text().split("```python\n")
    assert "apply_chat_template" in blocks[2]
    scope: dict = {}
    exec(blocks[1].split("```")[0].replace("path/to/this/folder", str(folder)), scope)
    conversation = json.dumps(records[96]["messages"][:-1])
    exec(blocks[2].split("```")[0].replace('[{"role": "user", "content": "Your message"}]', conversation), scope)
    data = load_task_data(search.spec.data, search.spec.model, search.spec.seed)
    assert scope["ids"][0].tolist() == data.eval.prompts[0].tolist()
    assert isinstance(scope["model"], PeftModel)
    plain = reference_answers(scope["model"], scope["tokenizer"], data.eval.prompts[:1], max_new_tokens=128,
                              pad_id=scope["tokenizer"].pad_token_id, device=load_base_model(
                                  search.spec.model, []).device, batch_size=1)
    assert scope["response"] == plain[0]
    # The command line on the evaluation file itself: each record's conversation without its gold reply, answered
    # as generate answers it
    from tests.conftest import run_cli

    code, _, err = run_cli(capsys, "predict", "chat", "0", "--file", str(tmp_path / "eval.jsonl"), "--out",
                           str(tmp_path / "answered.jsonl"), "--max-new-tokens", "16", "--storage", search.storage_url)
    assert code == 0, err
    answered = [json.loads(line) for line in (tmp_path / "answered.jsonl").read_text().splitlines()]
    asked = [r["messages"][:-1] for r in records[96:99]]
    assert [a["prediction"] for a in answered[:3]] == search.generate(0, asked, max_new_tokens=16)


@pytest.mark.parametrize("messages,message", [
    ([{"role": "user", "content": "hi"}], r"ends with a 'user' message; write each record's messages as a list"),
    ([], r"has no messages"),
    ([{"role": "user", "text": "hi"}, {"role": "assistant", "content": "yes"}],
     r"has a message .* that is not \{role, content\} text"),
])
def test_records_that_are_no_conversation_are_refused_naming_the_row(tmp_path, messages, message):
    records = _records(8, seed=3)
    records[4]["messages"] = messages
    (tmp_path / "train.json").write_text(json.dumps(records))
    (tmp_path / "eval.json").write_text(json.dumps(records[:4]))
    save_tiny_decoder(tmp_path / "decoder", records[:4], chat_template=CHATML)
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
        data={"train": str(tmp_path / "train.json"), "eval": str(tmp_path / "eval.json"),
              "messages_column": "messages"},
        objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[])))
    with pytest.raises(UserError, match=rf"data\.messages_column: data row 5 of .*train\.json {message}"):
        load_task_data(spec.data, spec.model, spec.seed)


def test_a_tokenizer_without_a_template_and_chat_records_read_as_instructions_are_refused(tmp_path):
    records = _records(8, seed=4)
    (tmp_path / "train.json").write_text(json.dumps(records))
    (tmp_path / "eval.json").write_text(json.dumps(records))
    save_tiny_decoder(tmp_path / "decoder", records)  # no chat template
    base = tiny_spec(tmp_path, model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
                     data={"train": str(tmp_path / "train.json"), "eval": str(tmp_path / "eval.json"),
                           "messages_column": "messages"},
                     objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[])
    spec = load_spec(write_spec(tmp_path, base))
    with pytest.raises(UserError, match=r"data\.messages_column: the tokenizer of .* has no chat template"):
        load_task_data(spec.data, spec.model, spec.seed)
    base["data"].pop("messages_column")
    spec = load_spec(write_spec(tmp_path, base))
    with pytest.raises(UserError, match=r"data\.instruction_column: column 'instruction' not in the train data; "
                                        r"its columns are \['messages', 'answer'\]; the 'messages' column looks "
                                        r"like chat records: set data\.messages_column: messages"):
        load_task_data(spec.data, spec.model, spec.seed)


def test_chat_records_on_a_classification_task_are_refused():
    from autopeft.errors import SpecError
    from autopeft.spec import parse_spec

    spec = tiny_spec(Path("."))
    spec["data"]["messages_column"] = "messages"
    with pytest.raises(SpecError, match=r"data\.messages_column: chat records are read for model\.task causal-lm"):
        parse_spec(spec)


def test_text_asked_of_a_chat_search_is_the_users_one_message():
    """Search.generate on a chat-trained search: text is the user's turn, as a chat interface sends it; a list of
    texts is one conversation each; anything else is refused naming both forms."""
    from autopeft.results.responses import as_prompt_list

    user = {"role": "user", "content": "Review : great . Positive or negative ?"}
    assert as_prompt_list(user["content"], "chat") == ([[user]], True)
    assert as_prompt_list([user["content"], [user]], "chat") == ([[user], [user]], False)
    assert as_prompt_list([user], "chat") == ([[user]], True)  # one conversation, not a list of them
    with pytest.raises(UserError, match=r"prompts\[0\]: expected a conversation.*or text"):
        as_prompt_list([{"text": "no role"}], "chat")


def _as_sharegpt(messages: list[dict]) -> list[dict]:
    speakers = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"from": speakers[m["role"]], "value": m["content"]} for m in messages]


def test_sharegpt_conversations_are_read_as_the_same_chat_records(tmp_path):
    """Many published chat datasets write turns as ShareGPT does ({"from": "human" | "gpt", "value": ...}) under
    `conversations`: read as the same messages, they give the same token ids as the role/content form; a speaker
    ShareGPT does not name is refused naming the row and the names it takes."""
    from autopeft.results.responses import as_prompt_list

    records = _records(24, seed=5)
    shared = [{"conversations": _as_sharegpt(r["messages"]), "answer": r["answer"]} for r in records]
    save_tiny_decoder(tmp_path / "decoder", records, chat_template=CHATML)
    read = {}
    for form, rows, column in (("roles", records, "messages"), ("sharegpt", shared, "conversations")):
        (tmp_path / f"{form}.json").write_text(json.dumps(rows))
        spec = load_spec(write_spec(tmp_path, tiny_spec(
            tmp_path, model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
            data={"train": str(tmp_path / f"{form}.json"), "eval": str(tmp_path / f"{form}.json"),
                  "messages_column": column},
            objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[])))
        read[form] = load_task_data(spec.data, spec.model, spec.seed)
    for split in ("train", "eval"):
        ours, theirs = getattr(read["roles"], split), getattr(read["sharegpt"], split)
        assert [ids.tolist() for ids in ours.input_ids] == [ids.tolist() for ids in theirs.input_ids]
        assert [labels.tolist() for labels in ours.token_labels] == [labels.tolist() for labels in theirs.token_labels]
    asked = _as_sharegpt(records[0]["messages"][:-1])
    assert as_prompt_list(asked, "chat") == ([records[0]["messages"][:-1]], True)  # generate() takes them too
    import pandas as pd

    from autopeft.results.responses import prompts_from_records

    file_rows = pd.DataFrame({"conversations": [r["conversations"] for r in shared[:2]]})  # predict --file
    assert prompts_from_records(spec, file_rows, "--file") == [r["messages"][:-1] for r in records[:2]]
    shared[3]["conversations"][1]["from"] = "bot"
    (tmp_path / "sharegpt.json").write_text(json.dumps(shared))
    with pytest.raises(UserError, match=r"data\.messages_column: data row 4 of .*sharegpt\.json has a message from "
                                        r"'bot', which ShareGPT's form does not name; write each message's \"from\" "
                                        r"as one of human, user, gpt"):
        load_task_data(spec.data, spec.model, spec.seed)
