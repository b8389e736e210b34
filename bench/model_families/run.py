"""Which method works on which model family: built, counted as predicted, trained, saved and reloaded.

Tiny models of each family are built from configurations (no hub here). Two passes:

- **classification**: every method of the registry on each family's sequence-classification model: the count
  predicted on the meta device equals the built one, 12 AdamW steps on one batch lower the loss, and the saved
  adapter reloaded onto a copy whose head layers were drawn anew gives the trained logits;
- **instruction tuning** (``--decoders``): the adapter family on each decoder family's causal LM, through the real
  worker on the bundled BoolQ slice, the reloaded adapter giving the recorded loss and answers back.

The baseline, in the same run, is stock peft's own LoRA placement (``target_modules`` left to peft's table of
model types): the families where a user of plain peft gets LoRA without naming modules.

    .venv/bin/python bench/model_families/run.py [--decoders]

Results: ``results.json`` and ``table.md`` beside this script.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import transformers as hf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from autopeft.methods import available_methods, get_method  # noqa: E402
from autopeft.models.architectures import ROLES  # noqa: E402
from autopeft.models.pooling import applied_pooling  # noqa: E402
from autopeft.search.cost import predict_cost_for  # noqa: E402
from tests.test_methods_matrix import train_on_one_batch  # noqa: E402
from tests.test_model_families import draw_outside_the_body  # noqa: E402

HERE = Path(__file__).parent
SIZES = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             pad_token_id=0)
GQA = {"num_key_value_heads": 2}
# family -> (config class, extra config fields, sequence-classification class, causal-LM class or None)
FAMILIES = {
    "bert": (hf.BertConfig, {}, hf.BertForSequenceClassification, None),
    "roberta": (hf.RobertaConfig, {}, hf.RobertaForSequenceClassification, None),
    "xlm-roberta": (hf.XLMRobertaConfig, {}, hf.XLMRobertaForSequenceClassification, None),
    "electra": (hf.ElectraConfig, {"embedding_size": 64}, hf.ElectraForSequenceClassification, None),
    "distilbert": (hf.DistilBertConfig, {}, hf.DistilBertForSequenceClassification, None),
    "deberta-v2": (hf.DebertaV2Config, {}, hf.DebertaV2ForSequenceClassification, None),
    "mpnet": (hf.MPNetConfig, {}, hf.MPNetForSequenceClassification, None),
    "modernbert": (hf.ModernBertConfig, {}, hf.ModernBertForSequenceClassification, None),
    "camembert": (hf.CamembertConfig, {}, hf.CamembertForSequenceClassification, None),
    "albert": (hf.AlbertConfig, {"embedding_size": 32}, hf.AlbertForSequenceClassification, None),
    "llama": (hf.LlamaConfig, GQA, hf.LlamaForSequenceClassification, hf.LlamaForCausalLM),
    "mistral": (hf.MistralConfig, GQA, hf.MistralForSequenceClassification, hf.MistralForCausalLM),
    "qwen2": (hf.Qwen2Config, GQA, hf.Qwen2ForSequenceClassification, hf.Qwen2ForCausalLM),
    "qwen3": (hf.Qwen3Config, {**GQA, "head_dim": 16}, hf.Qwen3ForSequenceClassification, hf.Qwen3ForCausalLM),
    "gemma": (hf.GemmaConfig, {**GQA, "head_dim": 16}, hf.GemmaForSequenceClassification, hf.GemmaForCausalLM),
    "gemma2": (hf.Gemma2Config, {**GQA, "head_dim": 16}, hf.Gemma2ForSequenceClassification, hf.Gemma2ForCausalLM),
    "phi": (hf.PhiConfig, {}, hf.PhiForSequenceClassification, hf.PhiForCausalLM),
    "phi3": (hf.Phi3Config, GQA, hf.Phi3ForSequenceClassification, hf.Phi3ForCausalLM),
    "stablelm": (hf.StableLmConfig, {}, hf.StableLmForSequenceClassification, hf.StableLmForCausalLM),
    "starcoder2": (hf.Starcoder2Config, {}, hf.Starcoder2ForSequenceClassification, hf.Starcoder2ForCausalLM),
    "smollm3": (hf.SmolLM3Config, {}, hf.SmolLM3ForSequenceClassification, hf.SmolLM3ForCausalLM),
    "gpt_neox": (hf.GPTNeoXConfig, {}, hf.GPTNeoXForSequenceClassification, hf.GPTNeoXForCausalLM),
    "falcon": (hf.FalconConfig, {}, hf.FalconForSequenceClassification, hf.FalconForCausalLM),
    "gpt2": (hf.GPT2Config, {}, hf.GPT2ForSequenceClassification, hf.GPT2LMHeadModel),
    "gptj": (hf.GPTJConfig, {"rotary_dim": 8}, hf.GPTJForSequenceClassification, hf.GPTJForCausalLM),
    "opt": (hf.OPTConfig, {"ffn_dim": 128, "word_embed_proj_dim": 64}, hf.OPTForSequenceClassification,
            hf.OPTForCausalLM),
    "bloom": (hf.BloomConfig, {}, hf.BloomForSequenceClassification, hf.BloomForCausalLM),
}
OPTIONS = {
    "lora": {"lora": {"r": 4, "target_modules": list(ROLES)}},
    "dora": {"dora": {"r": 4, "target_modules": ["query", "ffn_up"]}},
    "houlsby": {"houlsby": {"bottleneck": 8}}, "pfeiffer": {"pfeiffer": {"bottleneck": 8}},
    "parallel": {"parallel": {"bottleneck": 8}}, "prefix": {"prefix": {"prefix_length": 4}},
    "autopeft": {"autopeft": {"serial": 6, "parallel": 12, "prefix_length": 3}},
    "mam": {"mam": {"prefix_length": 4, "bottleneck": 8}}, "sparse": {"sparse": {"density": 0.05}},
    "vera": {"vera": {"r": 16}}, "prompt": {"prompt": {"num_virtual_tokens": 4}},
}
RATES = {"full": 1e-4, "partial": 1e-4, "unipelt": 1e-3}
DECODER_METHODS = ["lora", "dora", "ia3", "prompt", "houlsby", "pfeiffer", "parallel", "prefix", "ln_tuning",
                   "bitfit", "partial"]


def build_config(family: str, **extra):
    config_class, fields, _, _ = FAMILIES[family]
    sizes = dict(SIZES)
    if family == "distilbert":
        sizes = {"vocab_size": 128, "dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 4, "pad_token_id": 0}
    if family == "falcon":
        sizes.pop("intermediate_size")
    if family in ("gpt2", "gptj", "bloom"):
        sizes = {"vocab_size": 128, "n_embd": 64, "n_layer": 2, "n_head": 4, "pad_token_id": 0}
        if family == "bloom":
            sizes = {"vocab_size": 128, "hidden_size": 64, "n_layer": 2, "n_head": 4, "pad_token_id": 0}
    if family == "opt":
        sizes = {k: v for k, v in sizes.items() if k != "intermediate_size"}
    return config_class(**{**sizes, **fields, **extra})


def classification_case(base: torch.nn.Module, method_name: str) -> dict:
    config = {"method": method_name, "layers": [1], **OPTIONS.get(method_name, {})}
    method = get_method(method_name)
    started, stage = time.perf_counter(), "predict"
    try:
        predicted = predict_cost_for(base.config, "sequence-classification", config, applied_pooling(base))
        stage = "build"
        torch.manual_seed(0)
        model = method.build(copy.deepcopy(base), config).eval()
        trainable = method.count(model)[0]
        if trainable != predicted["trainable_params"]:
            return {"result": "count differs",
                    "detail": f"{trainable} built, {predicted['trainable_params']} predicted"}
        stage = "train"
        torch.manual_seed(1)
        inputs, labels = torch.randint(2, 100, (8, 12)), torch.tensor([0, 1] * 4)
        losses = train_on_one_batch(model, inputs, labels, RATES.get(method_name, 5e-3))
        learned = min(losses[6:]) < losses[0]
        stage = "reload"
        with torch.no_grad():
            trained = model(input_ids=inputs).logits
        folder = Path(tempfile.mkdtemp())
        method.save(model, folder / "adapter", config)
        fresh = copy.deepcopy(base)
        draw_outside_the_body(fresh)
        reloaded = method.load(fresh, folder / "adapter").eval()
        with torch.no_grad():
            difference = (reloaded(input_ids=inputs).logits - trained).abs().max().item()
        result = "ok" if difference <= 1e-5 and learned else ("reload differs" if difference > 1e-5 else "no descent")
        return {"result": result, "trainable_params": trainable, "reload_max_abs": difference,
                "seconds": round(time.perf_counter() - started, 2)}
    except Exception as error:  # a refusal is a result here: its message is what a user reads
        return {"result": "refused" if stage == "predict" else f"failed at {stage}",
                "detail": f"{type(error).__name__}: {str(error).splitlines()[0][:240]}"}


def peft_default_lora(base: torch.nn.Module) -> str:
    """Stock peft with no target modules named: LoRA where its own table knows the model type."""
    from peft import LoraConfig, TaskType, get_peft_model

    try:
        get_peft_model(copy.deepcopy(base), LoraConfig(task_type=TaskType.SEQ_CLS, r=4))
        return "ok"
    except Exception as error:
        return f"refused: {str(error).splitlines()[0][:120]}"


def instruction_tuning(families: list[str]) -> dict:
    """The adapter family through the real worker on each decoder family's causal LM (bundled BoolQ slice)."""
    from autopeft import load_adapter
    from autopeft.models.base import load_base_model, load_tokenizer
    from autopeft.search.trial import TrialRequest
    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from tests.conftest import save_tiny_decoder, tiny_spec, write_spec
    from workers.tasks import CausalLmRunner
    from workers.worker import TrialWorker

    boolq = ROOT / "examples" / "data" / "boolq"
    records = json.loads((boolq / "train.json").read_text())[:200]
    results: dict[str, dict] = {}
    for family in families:
        causal = FAMILIES[family][3]
        if causal is None:
            continue
        folder = Path(tempfile.mkdtemp())
        # LLaMA's field names (hidden_size, ...) reach GPT-2's and BLOOM's own through their attribute maps
        save_tiny_decoder(folder / "decoder", records, model_class=(causal, FAMILIES[family][0], FAMILIES[family][1]))
        spec = tiny_spec(folder, model={"name_or_path": str(folder / "decoder"), "task": "causal-lm"},
                         data={"train": str(boolq / "train.json"), "eval": str(boolq / "test.json"),
                               "max_length": 160, "train_size": 32, "eval_size": 8},
                         objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[],
                         training={"batch_size": 8, "eval_batch_size": 8})
        spec = load_spec(write_spec(folder, spec))
        worker = TrialWorker(spec.model.model_dump(), load_task_data(spec.data, spec.model, spec.seed), threads=2)
        runner = CausalLmRunner(worker.data, load_tokenizer(spec.model), torch.device("cpu"))
        results[family] = {}
        for i, name in enumerate(DECODER_METHODS):
            config = {"method": name, "layers": [0, 1], "learning_rate": 3e-3, **OPTIONS.get(name, {})}
            started = time.perf_counter()
            trial = worker.run(TrialRequest(i, config, 0, 3, spec.training.model_dump(), str(folder / str(i))))
            if not trial.ok:
                refused = any(words in trial.fail_reason for words in ("does not support", "not available",
                                                                       "cannot apply"))
                results[family][name] = {"result": "refused" if refused else "failed", "detail": trial.fail_reason}
                continue
            reloaded = load_adapter(load_base_model(spec.model, []), trial.adapter_dir)
            again = runner.evaluate(reloaded, 8).metrics
            same = (abs(again["eval_loss"] - trial.measurements["eval_loss"]) < 1e-4
                    and again["answer_accuracy"] == trial.measurements["answer_accuracy"])
            results[family][name] = {"result": "ok" if same else "reload differs",
                                     "trainable_params": trial.measurements["trainable_params"],
                                     "seconds": round(time.perf_counter() - started, 2)}
        print(family, {k: v["result"] for k, v in results[family].items()}, flush=True)
    return results


def _cell(case: dict) -> str:
    return {"ok": "✓", "refused": "refused"}.get(case["result"], case["result"])


def write_table(results: dict) -> str:
    methods = available_methods()
    lines = ["| family | peft's own LoRA default | " + " | ".join(methods) + " |",
             "| --- | --- | " + " | ".join("---" for _ in methods) + " |"]
    for family, row in results["classification"].items():
        lines.append(f"| {family} | {'✓' if row['peft_default_lora'] == 'ok' else 'refused'} | "
                     + " | ".join(_cell(row["methods"][m]) for m in methods) + " |")
    if results.get("instruction_tuning"):
        lines += ["", "| decoder family (causal LM) | " + " | ".join(DECODER_METHODS) + " |",
                  "| --- | " + " | ".join("---" for _ in DECODER_METHODS) + " |"]
        for family, row in results["instruction_tuning"].items():
            lines.append(f"| {family} | " + " | ".join(_cell(row[m]) for m in DECODER_METHODS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoders", action="store_true", help="also instruction-tune each decoder family")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    hf.logging.set_verbosity_error()
    torch.set_num_threads(2)
    families = args.families.split(",")
    results: dict = {"machine": {"processor": platform.processor() or platform.machine(),
                                 "torch": torch.__version__, "transformers": hf.__version__},
                     "classification": {}}
    for family in families:
        torch.manual_seed(0)
        base = FAMILIES[family][2](build_config(family, num_labels=2)).eval()
        row = {"peft_default_lora": peft_default_lora(base),
               "methods": {m: classification_case(base, m) for m in available_methods()}}
        results["classification"][family] = row
        print(family, sum(c["result"] == "ok" for c in row["methods"].values()), "of", len(row["methods"]),
              "| peft default LoRA:", row["peft_default_lora"][:60], flush=True)
    if args.decoders:
        results["instruction_tuning"] = instruction_tuning(families)
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "table.md").write_text(write_table(results))


if __name__ == "__main__":
    main()
