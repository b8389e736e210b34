"""A user's own decoder task whose answers are open (names, not a closed set): read before and after the change.

Sixty countries and their capitals (public facts, written here), asked in LLM-Adapters' record form: the
instruction "What is the capital of France?", the response "The capital of France is Paris.", the answer "Paris";
36 records to train, 24 to evaluate (seeded shuffle), so 24 distinct answers, more than the 20 of a closed set.
SmolLM2-135M-Instruct is evaluated untouched and after one LoRA trial (r=8 on q,v of every layer, lr 1e-3, the
given steps at batch 4) by the worker's own evaluation (``CausalLmRunner.evaluate``, the task's reading), and the
responses each generates are read two ways:

- *before*: the response's first word, as any answer of no known form and no closed set was read (and a row was
  cut after that word, so the first word is what was read);
- *now*: the gold answer where the response's first line holds it as words of their own, case, punctuation and
  articles aside (autopeft/tasks/answer_reading.py).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/open_answers.py --steps 20   # -> open_answers.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from common import HERE, smollm2_setup

CAPITALS = (
    "France:Paris,Germany:Berlin,Italy:Rome,Spain:Madrid,Portugal:Lisbon,Japan:Tokyo,China:Beijing,India:New Delhi,"
    "Russia:Moscow,Egypt:Cairo,Kenya:Nairobi,Canada:Ottawa,Mexico:Mexico City,Brazil:Brasilia,Argentina:Buenos Aires,"
    "Peru:Lima,Chile:Santiago,Australia:Canberra,Norway:Oslo,Sweden:Stockholm,Finland:Helsinki,Denmark:Copenhagen,"
    "Poland:Warsaw,Austria:Vienna,Greece:Athens,Turkey:Ankara,Iran:Tehran,Iraq:Baghdad,Thailand:Bangkok,"
    "Vietnam:Hanoi,Indonesia:Jakarta,Philippines:Manila,South Korea:Seoul,Ireland:Dublin,Belgium:Brussels,"
    "Netherlands:Amsterdam,Switzerland:Bern,Hungary:Budapest,Czech Republic:Prague,Ukraine:Kyiv,Cuba:Havana,"
    "Colombia:Bogota,Venezuela:Caracas,Nigeria:Abuja,Ethiopia:Addis Ababa,Morocco:Rabat,Saudi Arabia:Riyadh,"
    "Pakistan:Islamabad,Afghanistan:Kabul,Nepal:Kathmandu,Romania:Bucharest,Bulgaria:Sofia,Serbia:Belgrade,"
    "Croatia:Zagreb,Iceland:Reykjavik,New Zealand:Wellington,Malaysia:Kuala Lumpur,Singapore:Singapore,"
    "Lebanon:Beirut,Scotland:Edinburgh")


def write_records(folder: Path) -> None:
    pairs = [tuple(pair.split(":")) for pair in CAPITALS.split(",")]
    random.Random(0).shuffle(pairs)
    records = [{"instruction": f"What is the capital of {country}?", "input": "",
                "output": f"The capital of {country} is {capital}.", "answer": capital} for country, capital in pairs]
    (folder / "train.json").write_text(json.dumps(records[:36]))
    (folder / "eval.json").write_text(json.dumps(records[36:]))


def first_word_accuracy(texts: list[str], golds: list[str]) -> float:
    """The reading before: the response's first word against the gold answer, case aside."""
    return sum((t.split() or [""])[0].lower() == g.strip().lower() for t, g in zip(texts, golds)) / len(golds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from autopeft.spec import DataSpec
    from autopeft.tasks.data import load_task_data
    from workers.generation import generate_answers
    from workers.tasks import CausalLmRunner

    folder, model_spec, tokenizer, header = smollm2_setup(args.threads)
    work = Path(tempfile.mkdtemp(prefix="open-answers-"))
    write_records(work)
    data = load_task_data(DataSpec(train=str(work / "train.json"), eval=str(work / "eval.json"), max_length=96),
                          model_spec, seed=0)
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
    golds = data.eval.answers
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def measured(name: str, network) -> dict:
        started = time.perf_counter()
        evaluation = runner.evaluate(network, 64)
        seconds = time.perf_counter() - started
        # the full responses, generated to the task's budget, for the reading before (the first word)
        texts = generate_answers(network, tokenizer, data.eval.prompts, golds, max_new_tokens=runner.max_new_tokens,
                                 pad_id=runner.pad_id, device=torch.device("cpu"), reading=runner.reading)
        row = {"model": name, "now": evaluation.metrics["answer_accuracy"],
               "before": first_word_accuracy(texts, golds), "eval_s": round(seconds, 2),
               "eval_loss": evaluation.metrics["eval_loss"], "responses": texts[:6]}
        print(json.dumps({k: v for k, v in row.items() if k != "responses"}), flush=True)
        return row

    rows = [measured("untouched", model)]
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                            target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-3)
    order = np.random.default_rng(0).permutation(len(data.train))
    lora.train()
    for step in range(args.steps):
        batch = runner.train_batch(np.resize(order, (step + 1) * 4)[-4:])
        lora(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    lora.eval()
    rows.append(measured(f"LoRA r=8 q,v, {args.steps} steps at batch 4", lora))
    out = HERE / "open_answers.json"
    out.write_text(json.dumps({**header, "records": {"train": len(data.train), "eval": len(golds)},
                               "distinct_eval_answers": len(set(golds)), "closed_set": data.answer_words,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
