"""Fast answer generation (workers/generation.py) gives the answers of the plain path: on a tiny LLaMA trained for a
few steps on the bundled BoolQ slice, against one ``generate`` per batch of prompts in file order; and the rules
that say when an answer is given."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from peft import LoraConfig, PromptTuningConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM, PreTrainedTokenizerFast

from autopeft.spec import DataSpec, ModelSpec
from autopeft.store.predictions import decode, losses_of, record_losses
from autopeft.tasks.data import load_task_data
from tests.conftest import ROOT, save_tiny_decoder
from workers.generation import (
    answer_given,
    common_prefix_length,
    generate_answers,
    reference_answers,
    shares_prompt_cache,
    task_max_new_tokens,
)
from workers.tasks import CausalLmRunner

BOOLQ = ROOT / "examples" / "data" / "boolq"


def tiny_decoder(folder: Path, records: list[dict]) -> None:
    """The tiny decoder of tests/conftest.py without an end-of-sequence token."""
    save_tiny_decoder(folder, records, end_of_sequence=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny decoder after 20 full fine-tuning steps on BoolQ records (it answers true or false, then rambles);
    its runner on 48 eval records."""
    folder = tmp_path_factory.mktemp("decoder")
    tiny_decoder(folder, json.loads((BOOLQ / "train.json").read_text()))
    model_spec = ModelSpec(name_or_path=str(folder), task="causal-lm")
    data = load_task_data(DataSpec(train=str(BOOLQ / "train.json"), eval=str(BOOLQ / "test.json"), max_length=96,
                                   eval_size=48), model_spec, seed=0)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
    model = LlamaForCausalLM.from_pretrained(folder)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(len(data.train))
    for step in range(20):
        model(**runner.train_batch(order[(step * 8) % 392:(step * 8) % 392 + 8])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tokenizer, runner


def test_fast_generation_gives_the_plain_paths_answers(trained):
    model, tokenizer, runner = trained
    split = runner.data.eval
    common = {"pad_id": runner.pad_id, "device": torch.device("cpu")}
    plain = reference_answers(model, tokenizer, split.prompts, max_new_tokens=24, batch_size=2, **common)
    reading = runner.reading  # BoolQ's responses state their answer: "the correct answer is true"
    assert reading.stated
    fast = generate_answers(model, tokenizer, split.prompts, split.answers, max_new_tokens=24, token_budget=2048,
                            reading=reading, **common)
    plain_answers = [reading.read(t, g) for t, g in zip(plain, split.answers)]
    assert [reading.read(t, g) for t, g in zip(fast, split.answers)] == plain_answers
    assert sum(a in ("true", "false") for a in plain_answers) >= len(split) // 2  # the model does answer
    # Each fast response is the plain one cut where its answer was given: shorter for most rows.
    assert all(p.startswith(f) for f, p in zip(fast, plain))
    assert sum(len(f) < len(p) for f, p in zip(fast, plain)) >= len(split) // 2
    # The worker's evaluation: one forward pass for the response loss and the prompts' cache (the template's
    # tokens computed once), then the fast path at the task's length (responses of 5 tokens here). Same loss as
    # the teacher-forced pass, same answers as the plain path.
    assert runner.max_new_tokens == task_max_new_tokens([5]) == 16
    assert shares_prompt_cache(model) and common_prefix_length(split.prompts) > 20
    evaluation = runner.evaluate(model, batch_size=16)
    losses, tokens, _ = runner._loss(model, 16)
    assert evaluation.metrics["eval_loss"] == pytest.approx(losses.sum() / tokens, abs=1e-5)
    assert record_losses(evaluation.predictions) == pytest.approx(losses, rel=1e-4)  # record by record
    assert decode(evaluation.predictions) == [reading.read(t, g) for t, g in zip(
        reference_answers(model, tokenizer, split.prompts, max_new_tokens=16, batch_size=2, **common), split.answers)]


class _StopsAtLength:
    """A reading by which a response has given its answer once it is ``int(gold)`` characters long, so the rows
    of one batch finish at different steps."""

    def given(self, generated: str, gold: str) -> bool:
        return len(generated) >= int(gold)


def test_the_worker_decodes_what_generate_decodes_while_finished_rows_leave(trained, monkeypatch):
    """The one-pass evaluation decodes with a loop of its own (finished rows leave the batch; the first token read
    from the scoring pass): the same response texts as ``generate`` from the same cache, with later steps over
    fewer rows. A generation config that changes greedy scores (a repetition penalty) sends decoding back to
    ``generate``."""
    import workers.generation
    from workers.generation import plain_greedy, score_and_generate

    model, tokenizer, runner = trained
    split = runner.data.eval
    golds = [str(4 + (i % 4) * 10) for i in range(len(split))]
    settings = {"max_new_tokens": 24, "pad_id": runner.pad_id, "device": torch.device("cpu"),
                "reading": _StopsAtLength()}
    rows_per_step: list[int] = []

    def count_rows(module, args, kwargs, output):
        if kwargs["input_ids"].shape[1] == 1 and kwargs.get("past_key_values") is not None:  # a decoding step
            rows_per_step.append(kwargs["input_ids"].shape[0])

    hook = model.register_forward_hook(count_rows, with_kwargs=True)
    assert plain_greedy(model)
    own = score_and_generate(model, tokenizer, split.prompts, runner._gold_responses(), golds, **settings)
    hook.remove()
    monkeypatch.setattr(workers.generation, "plain_greedy", lambda model: False)
    through_generate = score_and_generate(model, tokenizer, split.prompts, runner._gold_responses(), golds,
                                          **settings)
    assert own.texts == through_generate.texts
    assert sorted({len(t) >= int(g) for t, g in zip(own.texts, golds)}) == [True]  # each stopped at its length
    assert np.array_equal(own.record_losses, through_generate.record_losses)
    assert rows_per_step[-1] < rows_per_step[0]  # rows left as they finished
    assert sum(rows_per_step) < 0.75 * len(rows_per_step) * rows_per_step[0]

    penalised = copy.deepcopy(model)
    penalised.generation_config.repetition_penalty = 1.3
    assert not plain_greedy(penalised) and plain_greedy(get_peft_model(copy.deepcopy(model),
                                                                       LoraConfig(target_modules=["q_proj"])))


_DECODER_FAMILIES = {  # (causal LM, config, extra fields): the cache and position schemes a user's decoder may have
    "gemma2": (transformers.Gemma2ForCausalLM, transformers.Gemma2Config, {"num_key_value_heads": 2, "head_dim": 16}),
    "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config, {}),
    "falcon": (transformers.FalconForCausalLM, transformers.FalconConfig, {}),
    "phi3": (transformers.Phi3ForCausalLM, transformers.Phi3Config, {"num_key_value_heads": 2}),
    "gpt_neox": (transformers.GPTNeoXForCausalLM, transformers.GPTNeoXConfig, {}),
}


@pytest.mark.parametrize("family", list(_DECODER_FAMILIES))
def test_the_decoding_loop_matches_generate_on_other_decoder_families(family, tmp_path, monkeypatch):
    """Sliding windows, learned absolute positions, other caches: on each, the worker's loop gives ``generate``'s
    texts while rows leave the batch at different steps (a randomly initialised tiny model of the family)."""
    import workers.generation
    from workers.generation import score_and_generate

    records = json.loads((BOOLQ / "train.json").read_text())[:200]
    model_class, config, fields = _DECODER_FAMILIES[family]
    # weights drawn wide, so that a position or a cache row off by one changes the greedy tokens
    save_tiny_decoder(tmp_path, records, model_class=(model_class, config, {**fields, "initializer_range": 0.2}))
    data = load_task_data(DataSpec(train=str(BOOLQ / "train.json"), eval=str(BOOLQ / "test.json"), max_length=96,
                                   eval_size=16), ModelSpec(name_or_path=str(tmp_path), task="causal-lm"), seed=0)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert shares_prompt_cache(model)
    golds = [str(4 + (i % 4) * 10) for i in range(len(data.eval))]
    settings = {"max_new_tokens": 16, "pad_id": runner.pad_id, "device": torch.device("cpu"),
                "reading": _StopsAtLength()}
    own = score_and_generate(model, tokenizer, data.eval.prompts, runner._gold_responses(), golds, **settings)
    monkeypatch.setattr(workers.generation, "plain_greedy", lambda model: False)
    through_generate = score_and_generate(model, tokenizer, data.eval.prompts, runner._gold_responses(), golds,
                                          **settings)
    assert own.texts == through_generate.texts
    assert len({len(t) for t in own.texts}) > 1


def test_the_response_loss_is_the_same_a_few_rows_at_a_time(trained, monkeypatch):
    """The one-pass evaluation sums each response's loss a few rows at a time (LOSS_CHUNK_BYTES), so long responses
    over a large vocabulary do not copy the batch's logits twice more, and bounds a batch by its response logits
    (RESPONSE_LOGITS_BYTES): row by row, the same losses and answers."""
    import workers.generation

    model, _, runner = trained
    whole = runner.evaluate(model, batch_size=48)
    calls = []
    cross_entropy = workers.generation.functional.cross_entropy
    monkeypatch.setattr(workers.generation.functional, "cross_entropy",
                        lambda *args, **kwargs: calls.append(1) or cross_entropy(*args, **kwargs))
    monkeypatch.setattr(workers.generation, "LOSS_CHUNK_BYTES", 1)  # one row at a time
    by_rows = runner.evaluate(model, batch_size=48)
    assert len(calls) >= len(runner.data.eval)
    assert record_losses(by_rows.predictions) == pytest.approx(record_losses(whole.predictions), abs=1e-6)
    assert by_rows.metrics["eval_loss"] == pytest.approx(whole.metrics["eval_loss"], abs=1e-7)
    assert decode(by_rows.predictions) == decode(whole.predictions)
    # and batches bounded by their response logits (RESPONSE_LOGITS_BYTES): more, smaller batches, the same results
    forwards = []
    hook = model.register_forward_hook(lambda module, args, kwargs, output: forwards.append(
        kwargs["input_ids"].shape) if kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    runner.evaluate(model, batch_size=48)
    unbounded_forwards, forwards[:] = len(forwards), []
    monkeypatch.setattr(workers.generation, "RESPONSE_LOGITS_BYTES", 1)  # one row a batch
    bounded = runner.evaluate(model, batch_size=48)
    hook.remove()
    assert max(shape[0] for shape in forwards) == 1 and len(forwards) > unbounded_forwards
    assert record_losses(bounded.predictions) == pytest.approx(record_losses(whole.predictions), abs=1e-5)
    assert decode(bounded.predictions) == decode(whole.predictions)


@pytest.mark.parametrize("scoring", ["loss only", "options"])
def test_scoring_passes_on_a_cpu_hold_batches_to_its_token_bound(trained, scoring, tmp_path, monkeypatch):
    """Where nothing is decoded after the one pass (records without answers, ``answer_scoring: options``), a CPU
    holds its batches to CPU_EVAL_TOKENS, as a classifier's evaluation (bench/eval_batching/decoder_scoring.py:
    1.1-1.4x at 1,024 against 8,192 on SmolLM2): each batch within the bound, the same losses and options as in
    one wide batch."""
    from workers import batching

    model, tokenizer, _ = trained
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    records = json.loads((BOOLQ / "test.json").read_text())[:40]
    if scoring == "loss only":
        for record in records:
            record.pop("answer")
    (tmp_path / "records.json").write_text(json.dumps(records))
    data = load_task_data(DataSpec(train=str(tmp_path / "records.json"), eval=str(tmp_path / "records.json"),
                                   max_length=96, answer_scoring="options" if scoring == "options" else "generate"),
                          ModelSpec(name_or_path=str(tmp_path / "model"), task="causal-lm"), seed=0)
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
    assert batching.score_token_budget(torch.device("cpu")) == batching.CPU_EVAL_TOKENS
    assert batching.score_token_budget(torch.device("meta")) == batching.WIDE_SCORE_TOKENS
    monkeypatch.setattr(batching, "CPU_EVAL_TOKENS", 10**9)
    runner.evaluate(model, batch_size=64)  # the first asks once whether the template may be shared (1-row passes)
    shapes = []  # each batch's pass: the rest of its prompts and responses after the shared template's cache
    hook = model.register_forward_hook(lambda module, args, kwargs, output: shapes.append(
        tuple(kwargs["input_ids"].shape)) if kwargs.get("past_key_values") is not None else None, with_kwargs=True)
    wide = runner.evaluate(model, batch_size=64)
    assert [rows for rows, _ in shapes] == [40]
    shapes.clear()
    monkeypatch.setattr(batching, "CPU_EVAL_TOKENS", 160)
    bounded = runner.evaluate(model, batch_size=64)
    hook.remove()
    assert sum(rows for rows, _ in shapes) == 40 and len({rows for rows, _ in shapes}) > 1
    assert all(rows * width <= 160 for rows, width in shapes if rows > 1)
    assert losses_of(bounded.predictions) == pytest.approx(losses_of(wide.predictions), abs=1e-5)
    if scoring == "options":
        assert decode(bounded.predictions) == decode(wide.predictions)


def test_methods_with_tokens_of_their_own_evaluate_in_two_passes(trained):
    model, tokenizer, runner = trained
    prompt_tuned = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM",
                                                                           num_virtual_tokens=4))
    assert not shares_prompt_cache(prompt_tuned)
    assert shares_prompt_cache(get_peft_model(copy.deepcopy(model), LoraConfig(target_modules=["q_proj"])))
    evaluation = runner.evaluate(prompt_tuned, batch_size=16)
    assert np.isfinite(evaluation.metrics["eval_loss"]) and len(decode(evaluation.predictions)) == len(runner.data.eval)


def test_prompt_tunings_answers_do_not_depend_on_the_batch(trained):
    """peft's own ``generate`` drops position ids for prompt tuning, so a left-padded row read its tokens at shifted
    positions; on GPT-2 (learned absolute positions) batched answers then differed from each prompt's own in 47 of
    48 rows. The worker's batched answers are each prompt's answer alone, unpadded, through peft."""
    _, tokenizer, runner = trained
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                                      initializer_range=0.2, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                                      eos_token_id=None))
    prompt_tuned = get_peft_model(gpt2, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
    split = runner.data.eval
    assert len({len(p) for p in split.prompts}) > 1  # so a batch pads some rows
    batched = generate_answers(prompt_tuned, tokenizer, split.prompts, split.answers, max_new_tokens=8,
                               pad_id=runner.pad_id, device=torch.device("cpu"), max_rows=48)
    alone = []
    for prompt in split.prompts:
        ids = torch.as_tensor(np.asarray(prompt, dtype=np.int64))[None]
        with torch.inference_mode():
            out = prompt_tuned.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                        do_sample=False, pad_token_id=runner.pad_id)
        alone.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    assert batched == alone
    # what an exported prompt-tuned decoder's README tells a user of stock peft, and only there
    from autopeft.results.export import generation_note

    assert "one prompt at a time" in generation_note("causal-lm", "prompt")
    assert not generation_note("causal-lm", "lora") and not generation_note("sequence-classification", "prompt")


def test_the_two_pass_loss_holds_no_more_logits_than_its_budget(trained, monkeypatch):
    """The teacher-forced pass of a method with tokens of its own makes logits over the whole vocabulary at every
    position; its batches are cut so that they stay within LOGITS_BUDGET_BYTES, with the same loss and answers."""
    import workers.tasks

    model, _, runner = trained
    prompt_tuned = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM",
                                                                           num_virtual_tokens=4)).eval()
    widest: list[int] = []  # the logits each forward pass of the loss made, in bytes

    def record(module, inputs, output):
        if output.logits.shape[1] > 1:  # the loss pass, not a decoding step
            widest.append(output.logits.numel() * 4)

    hook = prompt_tuned.get_base_model().register_forward_hook(record)
    unbounded = runner.evaluate(prompt_tuned, batch_size=48)
    unbounded_widest, widest[:] = max(widest), []
    budget = unbounded_widest // 6
    monkeypatch.setattr(workers.tasks, "LOGITS_BUDGET_BYTES", budget)
    bounded = runner.evaluate(prompt_tuned, batch_size=48)
    hook.remove()
    assert len(widest) > 1 and max(widest) <= budget * 1.1  # the 4 virtual tokens are not in the lengths (~80)
    assert abs(bounded.metrics["eval_loss"] - unbounded.metrics["eval_loss"]) < 1e-5
    assert decode(bounded.predictions) == decode(unbounded.predictions)


def _adapted(model, method: str, options: dict):
    """An AdapterHub method on a copy of ``model``, its parameters moved (a trained adapter, not the identity a
    bottleneck starts as)."""
    from autopeft.methods import get_method

    torch.manual_seed(0)
    adapted = get_method(method).build(copy.deepcopy(model), {"method": method, "layers": [0, 1],
                                                              method: options}).eval()
    for parameter in adapted.parameters():
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return adapted


def _evaluates_as_the_plain_uncached_path(adapted, tokenizer, runner, abs_loss: float) -> tuple[float, int]:
    """The runner's evaluation gives the answers of uncached greedy decoding and the teacher-forced loss; returns
    that loss (summed) and its token count."""
    split = runner.data.eval
    evaluation = runner.evaluate(adapted, batch_size=16)
    uncached = generate_answers(adapted, tokenizer, split.prompts, split.answers, max_new_tokens=runner.max_new_tokens,
                                pad_id=runner.pad_id, device=torch.device("cpu"), use_cache=False,
                                reading=runner.reading)
    assert decode(evaluation.predictions) == [runner.reading.read(t, g) for t, g in zip(uncached, split.answers)]
    losses, tokens, _ = runner._loss(adapted, 16)
    assert evaluation.metrics["eval_loss"] == pytest.approx(losses.sum() / tokens, abs=abs_loss)
    # each record's loss is stored beside its answer, as the plain pass gives it
    assert record_losses(evaluation.predictions) == pytest.approx(losses, abs=abs_loss * tokens / len(losses))
    return float(losses.sum()), tokens


def test_a_model_whose_library_drops_the_cache_decodes_without_it(trained):
    """AdapterHub's LLaMA layers (adapters 1.3) read the cache under another name than transformers 4.57 passes
    it: cached decoding would go on from the last token alone. The evaluation finds this with one cached step
    against a full pass, and decodes such a model without the cache: the answers of the plain uncached path.
    autopeft's build hands the cache over (autopeft/methods/adapterhub_decoders.py); undoing that hand-over
    gives the library's own behaviour, which a later release could bring back."""
    from autopeft.methods.adapterhub_decoders import CACHE_HOOK
    from workers.generation import cache_is_faithful

    model, tokenizer, runner = trained
    split = runner.data.eval
    assert cache_is_faithful(model, split.prompts[0], torch.device("cpu"))
    adapted = _adapted(model, "houlsby", {"bottleneck": 8})
    assert cache_is_faithful(adapted, split.prompts[0], torch.device("cpu"))
    for module in adapted.modules():
        if getattr(module, CACHE_HOOK, None) is not None:
            getattr(module, CACHE_HOOK).remove()
    if cache_is_faithful(adapted, split.prompts[0], torch.device("cpu")):
        pytest.skip("this adapters release passes the cache through; nothing to fall back from")
    _evaluates_as_the_plain_uncached_path(adapted, tokenizer, runner, abs_loss=1e-5)


@pytest.mark.parametrize("method,options", [("houlsby", {"bottleneck": 8}), ("prefix", {"prefix_length": 4})])
def test_adapterhub_decoders_evaluate_through_the_cache(trained, method, options):
    """With the cache handed over and a prefix's masks right (autopeft/methods/adapterhub_decoders.py), an
    AdapterHub model's evaluation takes the cached paths (one pass for a bottleneck adapter, two for a prefix)
    and gives the plain uncached path's answers and loss."""
    model, tokenizer, runner = trained
    adapted = _adapted(model, method, options)
    assert shares_prompt_cache(adapted) == (method != "prefix")
    losses, tokens = _evaluates_as_the_plain_uncached_path(adapted, tokenizer, runner, abs_loss=1e-4)
    base_losses = runner._loss(model, 16)[0].sum()
    assert abs(losses - base_losses) / tokens > 1e-3  # the adapter is in the loss


@pytest.mark.parametrize("text,gold,given", [
    ("the correct answer is true", "true", False),  # "true" may still become "trueness"
    ("the correct answer is true.", "true", True),
    ("the correct answer is answer1", "answer2", False),  # may still become answer12
    ("the correct answer is answer1 ", "answer2", True),
    ("\nA: 3 + 4 = 7. The answer is 7", "7", False),
    ("\nA: 3 + 4 = 7. The answer is 7.", "7", False),  # may still become 7.5
    ("\nA: 3 + 4 = 7. The answer is 7.\n", "7", True),
    ("\nA: 3 + 4 = 7. The answer is $1,250.\n", "1250", True),
    ("\nA: 3 + 4 = 7. The answer is 4 blue boxes and 3", "3", False),  # the sentence goes on to name others
    ("\nA: 3 + 4 = 7. The answer is 7\n", "7", True),
    ("\nA: 3 + 4 = 7 apples", "7", False),
    ("\nA: 3 + 4 = 7 apples.\n\n### Instruction", "7", True),
])
def test_answer_given(text, gold, given):
    assert answer_given(text, gold) is given
