"""A decoder on a user's plain text (``data.text_columns`` of causal-lm: a corpus, no instructions): every token of
each text trained and scored, a long text split into blocks rather than cut, the noise model resampling records,
and the adapter continuing text from Python and from the exported README's lines.

A tiny LLaMA built from a configuration, trained for real on a corpus whose every word has one successor (a phonetic
alphabet, read on from a random letter), so that whether it learned shows in its loss and its continuations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import autopeft
from autopeft.errors import UserError
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.results.untouched_model import UNTOUCHED
from autopeft.spec import load_spec
from autopeft.store.predictions import LOSSES, decode
from autopeft.tasks.data import load_task_data
from autopeft.tasks.text_blocks import text_blocks
from tests.conftest import ONE_AT_A_TIME, save_tiny_decoder, tiny_spec, write_spec
from workers.tasks import CausalLmRunner

LETTERS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
           "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def _corpus(count: int, seed: int) -> list[dict[str, str]]:
    """Texts of 3 to 40 words, each reading the alphabet on (round and round) from a random letter."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        start, length = int(rng.integers(len(LETTERS))), int(rng.integers(3, 41))
        texts.append({"text": " ".join(LETTERS[(start + i) % len(LETTERS)] for i in range(length))})
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain-text")
    train, evaluation = _corpus(200, 0), _corpus(24, 1)
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in train))
    (folder / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in evaluation))
    save_tiny_decoder(folder / "decoder", train + evaluation)
    return folder


def _spec(folder, **data) -> dict:
    return tiny_spec(folder, model={"name_or_path": str(folder / "decoder"), "task": "causal-lm"},
                     data={"train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl"),
                           "text_columns": ["text"], "max_length": 16, **data},
                     objectives=[{"name": "eval_loss"}, {"name": "trainable_params"}], constraints=[],
                     search_space={"name": "full", "parameters": {},
                                   "fixed": {"method": "full", "learning_rate": 3e-3}},
                     training={"batch_size": 16, "eval_batch_size": 16},
                     budget={"trials": 1, "steps_per_trial": 120}, workers=ONE_AT_A_TIME)


@pytest.mark.parametrize("max_length", [2, 3, 5, 16])
def test_blocks_score_every_token_but_the_first_once_and_fit_max_length(max_length):
    for length in range(0, 40):
        ids = list(range(100, 100 + length))
        blocks = text_blocks(ids, max_length)
        assert all(block.context < len(block.ids) <= max_length for block in blocks)
        scored = [token for block in blocks for token in block.ids[block.context:]]
        assert scored == ids[1:]  # each token predicted once, in order, the first never
        assert all(block.context == max(1, max_length // 2) for block in blocks[1:])  # read, not scored again
        for block in blocks:  # a block is a stretch of the text: its context the tokens just before its own
            start = ids.index(block.ids[0])
            assert block.ids == ids[start:start + len(block.ids)]
    with pytest.raises(ValueError, match="max_length 1"):
        text_blocks([1, 2, 3], 1)


def test_plain_text_is_tokenised_whole_in_blocks_that_keep_their_record(corpus):
    spec = load_spec(write_spec(corpus, _spec(corpus)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    tokenizer = load_tokenizer(spec.model)
    texts = [json.loads(line)["text"] for line in (corpus / "eval.jsonl").read_text().splitlines()]
    split = data.eval
    assert split.answers is None and data.answer_words is None  # scored by its loss: nothing to read
    assert len(split) > len(texts) and max(split.lengths) == 16  # the long texts were split, not cut
    assert sorted(set(split.record_of.tolist())) == list(range(len(texts)))
    for record, text in enumerate(texts):
        rows = np.flatnonzero(split.record_of == record)
        scored = [token for i in rows for token in split.token_labels[i] if token != -100]
        assert [split.input_ids[rows[0]][0], *scored] == tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        assert all(len(split.prompts[i]) == 8 for i in rows[1:])  # half a block of context before a later block
    for ids, labels, prompt in zip(split.input_ids, split.token_labels, split.prompts):
        context = len(prompt)
        assert prompt.tolist() == ids[:context].tolist() and (labels[:context] == -100).all()
        assert labels[context:].tolist() == ids[context:].tolist()


def test_empty_lines_of_a_corpus_are_left_out_with_a_note_and_listed(corpus, tmp_path):
    """A corpus's empty lines (WikiText holds thousands) are nothing to learn from, not broken records."""
    from autopeft.errors import DataWarning

    texts = ["alpha bravo charlie", "", "delta echo", "   ", "foxtrot golf hotel"]
    for name in ("train.jsonl", "eval.jsonl"):
        (tmp_path / name).write_text("\n".join(json.dumps({"text": t}) for t in texts))
    spec = load_spec(write_spec(tmp_path, _spec(corpus, train=str(tmp_path / "train.jsonl"),
                                                eval=str(tmp_path / "eval.jsonl"))))
    with pytest.warns(DataWarning) as caught:
        data = load_task_data(spec.data, spec.model, spec.seed)
    assert [str(w.message).split(" (data row 2 of")[0] for w in caught] == [
        f"data.text_columns: 2 of 5 {split} texts are empty" for split in ("train", "eval")]
    assert len(data.train) == 3 and data.eval_rows == [0, 2, 4]  # the rows evaluated, as an export lists them
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in ("", " ")))
    with pytest.warns(DataWarning), pytest.raises(UserError, match=r"data.text_columns: column 'text' is empty in "
                                                                 r"every row of the eval data"):
        load_task_data(spec.data, spec.model, spec.seed)


def test_plain_text_without_the_untouched_model_is_refused_with_the_one_fix(corpus):
    from autopeft.tasks.data import check_metrics_fit

    spec = load_spec(write_spec(corpus, _spec(corpus) | {"training": {"untouched_reference": False}}))
    with pytest.raises(UserError, match=r"training.untouched_reference: .*\(its chance level\); set it to true$"):
        check_metrics_fit(spec, load_task_data(spec.data, spec.model, spec.seed))  # no answer column to add


def test_the_loss_is_per_record_over_every_scored_token(corpus):
    spec = load_spec(write_spec(corpus, _spec(corpus)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    tokenizer = load_tokenizer(spec.model)
    model = load_base_model(spec.model, [])
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
    evaluation = runner.evaluate(model, 16)
    per_record = decode(evaluation.predictions)
    texts = [json.loads(line)["text"] for line in (corpus / "eval.jsonl").read_text().splitlines()]
    # one loss per text (the noise model resamples texts, not blocks), over every token but each text's first
    assert evaluation.predictions["kind"] == LOSSES and len(per_record) == len(texts)
    assert runner.response_tokens.tolist() == [len(tokenizer(t)["input_ids"]) for t in texts]  # + eos - first
    blocks, tokens, _ = runner._loss(model, 16)  # the plain pass, block by block
    assert evaluation.metrics["eval_loss"] == pytest.approx(blocks.sum() / tokens, rel=1e-5)
    assert tokens == runner.response_tokens.sum()
    assert per_record == pytest.approx(np.bincount(data.eval.record_of, weights=blocks), rel=1e-4)
    # where a text fits one block, its loss is the model's own loss of the whole text
    short = next(i for i, t in enumerate(texts) if len(tokenizer(t)["input_ids"]) < 15)
    ids = torch.tensor([tokenizer(texts[short])["input_ids"] + [tokenizer.eos_token_id]])
    with torch.no_grad():
        whole = float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
    assert per_record[short] == pytest.approx(whole, rel=1e-4)


def test_a_search_on_plain_text_learns_continues_text_and_exports(corpus, tmp_path):
    search = autopeft.run_search(_spec(corpus) | {"storage": f"sqlite:///{tmp_path / 't.db'}",
                                                  "output_dir": str(tmp_path / "runs")},
                                 name="corpus", executor="local", progress=False)
    trial = search.records[0]
    chance = search.chance
    assert chance["predicts"] == UNTOUCHED and chance["examples"] == 24  # the texts, not their blocks
    assert trial.values["eval_loss"] < 0.5 * chance["chance"]  # learned: each word's successor
    assert chance["tests"][str(trial.number)]["above"] and not chance["nothing_learned"]

    continuation = search.generate(0, "charlie delta", max_new_tokens=4)
    assert continuation.split() == ["echo", "foxtrot", "golf", "hotel"]
    assert search.generate(0, ["xray yankee"], max_new_tokens=3)[0].split() == ["zulu", "alpha", "bravo"]
    with pytest.raises(UserError, match=r"prompts\[0\]: expected text to continue"):
        search.generate(0, [{"instruction": "charlie delta"}])
    with pytest.raises(UserError, match=r"prompts\[1\]: empty"):
        search.generate(0, ["charlie", " "])

    # The exported README's lines load the adapter and continue a text as the search does.
    folder = search.export(tmp_path / "out")[0]
    blocks = (folder / "README.md").read_text().split("```python\n")
    assert "plain text" in blocks[1] and "The text to continue" in blocks[2]
    scope: dict = {}
    exec(blocks[1].split("```")[0].replace("path/to/this/folder", str(folder)), scope)
    exec(blocks[2].split("```")[0].replace('"The text to continue"', '"charlie delta"')
         .replace("max_new_tokens=128", "max_new_tokens=4"), scope)
    assert scope["continuation"] == continuation


def test_the_readme_spec_for_a_corpus_is_a_valid_spec():
    import re

    import yaml

    from autopeft.spec import parse_spec
    from tests.conftest import ROOT

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    corpus = next(block for block in blocks if "text_columns: [text]" in block)
    spec = parse_spec(yaml.safe_load(corpus))
    assert spec.model.task == "causal-lm" and spec.data.text_columns == ["text"]
    assert spec.task_metric == "eval_loss" and spec.budget.steps_per_trial
