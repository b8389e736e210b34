"""``data.answer_scoring: options``: closed-form answers read from the teacher-forced pass, the same answers greedy
generation gives where it follows the responses' words, and clear refusals where the data does not fit."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PromptTuningConfig, get_peft_model
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from autopeft.errors import UserError
from autopeft.spec import DataSpec, ModelSpec
from autopeft.store.predictions import decode
from autopeft.tasks.answer_options import _words_before
from autopeft.tasks.data import load_task_data
from tests.conftest import ROOT
from tests.test_generation import tiny_decoder
from workers.generation import generate_answers, reference_answers
from workers.tasks import CausalLmRunner

BOOLQ = ROOT / "examples" / "data" / "boolq"
TEMPLATE = "the correct answer is "
KEYS = {"apple": "answer1", "river": "answer2", "stone": "answer3"}
FILLER = "we saw a small green house near the old bridge under grey sky after rain today".split()


def _keyed_records(count: int, seed: int) -> list[dict]:
    """Records a tiny decoder can learn: the key word among filler words names the answer (three options,
    LLM-Adapters' response form)."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        key = rng.choice(list(KEYS))
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 12))))
        words.insert(int(rng.integers(0, len(words) + 1)), key)
        records.append({"instruction": "Which answer fits: " + " ".join(words) + "?", "input": "",
                        "output": TEMPLATE + KEYS[key], "answer": KEYS[key]})
    return records


def _load(folder: Path, options: bool = True, **data) -> object:
    spec = {"train": str(folder / "train.json"), "eval": str(folder / "eval.json"), "max_length": 64, **data}
    return load_task_data(DataSpec(**spec, answer_scoring="options" if options else "generate"),
                          ModelSpec(name_or_path=str(folder), task="causal-lm"), seed=0)


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    """The tiny decoder trained part way on keyed records (it follows the responses' words and names different
    options), and its folder, which holds the records as train.json and eval.json."""
    folder = tmp_path_factory.mktemp("decoder")
    train, evaluation = _keyed_records(320, seed=0), _keyed_records(48, seed=1)
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "eval.json").write_text(json.dumps(evaluation))
    tiny_decoder(folder, train + evaluation)
    data = _load(folder, options=False)
    runner = CausalLmRunner(data, PreTrainedTokenizerFast.from_pretrained(folder), torch.device("cpu"))
    model = LlamaForCausalLM.from_pretrained(folder)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(len(data.train))
    for step in range(STEPS):
        model(**runner.train_batch(order[(step * 8) % 320:(step * 8) % 320 + 8])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), folder


STEPS = 50  # part way: about 80% right on the eval records, naming two options or three


def _followed(texts: list[str]) -> list[int]:
    """The records whose greedy response says "the correct answer is" and then names an option."""
    return [i for i, t in enumerate(texts) if t.startswith(TEMPLATE) and t[len(TEMPLATE):].split()[:1]
            and t[len(TEMPLATE):].split()[0] in KEYS.values()]


def test_the_options_are_the_answers_and_the_branch_is_where_they_part(decoder):
    _, folder = decoder
    options = _load(folder).answer_options
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    assert options.names == ["answer1", "answer2", "answer3"]
    # the word-level tokenizer: "the correct answer is" is 4 tokens, then the answer's own
    assert options.branch == len(tokenizer(TEMPLATE.strip(), add_special_tokens=False)["input_ids"]) == 4
    assert [tokenizer.decode([t]) for t in options.token_ids] == options.names


def test_the_chosen_option_is_the_answer_greedy_generation_gives(decoder):
    model, folder = decoder
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    data = _load(folder)
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
    chosen = runner.evaluate(model, batch_size=16)
    generated = CausalLmRunner(_load(folder, options=False), tokenizer, torch.device("cpu")).evaluate(model, 16)
    # the same teacher-forced pass: the same loss
    assert chosen.metrics["eval_loss"] == pytest.approx(generated.metrics["eval_loss"], abs=1e-6)
    texts = reference_answers(model, tokenizer, data.eval.prompts, max_new_tokens=8, pad_id=runner.pad_id,
                              device=torch.device("cpu"), batch_size=2)
    followed = _followed(texts)
    answers = decode(chosen.predictions)
    # the model follows the responses' words and names more than one option: a comparison that could fail
    assert len(followed) >= len(texts) * 3 // 4
    assert len(set(answers)) > 1 and chosen.metrics["answer_accuracy"] > 0.5
    # where the greedy response says "the correct answer is X", X is the chosen option
    assert [answers[i] for i in followed] == [texts[i][len(TEMPLATE):].split()[0] for i in followed]
    assert chosen.metrics["answer_accuracy"] == pytest.approx(
        np.mean([a == g.strip() for a, g in zip(answers, data.eval.answers)]))


def test_a_method_with_tokens_of_its_own_chooses_in_the_plain_pass_as_the_shared_one_does(decoder):
    model, folder = decoder
    runner = CausalLmRunner(_load(folder), PreTrainedTokenizerFast.from_pretrained(folder), torch.device("cpu"))
    options = runner.data.answer_options
    one_pass = runner._evaluate_options(model, 16, options, one_pass=True)
    plain = runner._evaluate_options(model, 16, options, one_pass=False)
    assert decode(plain.predictions) == decode(one_pass.predictions)
    assert plain.metrics["eval_loss"] == pytest.approx(one_pass.metrics["eval_loss"], abs=1e-5)
    # prompt tuning prepends virtual tokens: the branch is read at the input's own positions, and the answers are
    # those its greedy responses give
    torch.manual_seed(0)
    prompted = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    tuned = decode(runner.evaluate(prompted, batch_size=16).predictions)
    texts = generate_answers(prompted, runner.tokenizer, runner.data.eval.prompts, runner.data.eval.answers,
                             max_new_tokens=8, pad_id=runner.pad_id, device=torch.device("cpu"))
    followed = _followed(texts)
    assert len(followed) >= len(texts) // 2 and len({tuned[i] for i in followed}) > 1
    assert [tuned[i] for i in followed] == [texts[i][len(TEMPLATE):].split()[0] for i in followed]


def _records(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text(json.dumps([{"instruction": f"Question {i}?", "input": "", "output": output, "answer": answer}
                                for i, (output, answer) in enumerate(rows)]))
    return str(path)


def test_data_that_does_not_fit_is_refused_naming_the_field_and_the_fix(decoder, tmp_path):
    _, folder = decoder
    math = ROOT / "examples" / "data" / "math"
    with pytest.raises(UserError, match=r"data.answer_scoring: .*the number .*use answer_scoring: generate"):
        _load(folder, train=str(math / "train.json"), eval=str(math / "addsub.json"), max_length=512)
    train = _records(tmp_path / "train.json", [(TEMPLATE + "true", "true"), (TEMPLATE + "false", "false")])
    other_words = _records(tmp_path / "eval.json", [(TEMPLATE + "true", "true"), ("I would say false", "false")])
    with pytest.raises(UserError, match=r"after the same words .*data row 2 of .*eval.json.*'I would say '"):
        _load(folder, train=train, eval=other_words)
    unstated = _records(tmp_path / "unstated.json", [(TEMPLATE + "true", "true"), ("no idea", "false")])
    with pytest.raises(UserError, match=r"data row 2 of .*does not state its answer 'false'"):
        _load(folder, train=train, eval=unstated)
    with pytest.raises(UserError, match=r"data.max_length: .* evaluation records .* Raise data.max_length to 46"):
        _load(folder, max_length=40)  # records cut before their answers: refused before the options are read
    unknown = _records(tmp_path / "unknown.json", [(TEMPLATE + "true", "true"), (TEMPLATE + "false", "false")])
    with pytest.raises(UserError, match=r"options \['false', 'true'\] begin with the same token"):
        _load(folder, train=unknown, eval=unknown)  # the tokenizer knows neither word: both are [UNK]
    with pytest.raises(UserError, match=r"data.answer_scoring: .*model.task is 'sequence-classification'"):
        load_task_data(DataSpec(train=train, eval=train, answer_scoring="options"),
                       ModelSpec(name_or_path=str(folder)), seed=0)


@pytest.mark.parametrize("response,answer,before", [
    ("a cat, so the correct answer is A", "A", "a cat, so the correct answer is "),  # not the article "a"
    ("the correct answer is true", "True", "the correct answer is "),  # any case where the spelling is not found
    ("the correct answer is answer12", "answer1", None),  # a word of its own only
])
def test_the_answer_is_found_as_a_word_of_its_own(response, answer, before):
    assert _words_before(response, answer) == before
