"""LLM-Adapters' table on a real decoder: the adapter family trained at one fixed budget on SmolLM2-135M-Instruct.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/run.py [--steps 40] [--batch-size 4] [--train-records 400]
        [--eval-records 48 | boolq=48 multiarith=16] [--threads 2] [--tasks boolq multiarith] [--methods LABEL ...]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/run.py --post-checks   # answers given; AdapterHub uncached
    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/run.py --table-only
    HF_HUB_OFFLINE=1 python bench/llm_adapters/run.py --device cuda --data PATH/TO/LLM-Adapters \
        --steps 300 --batch-size 16 --train-records 3000 --eval-records boolq=500 multiarith=109 \
        --results bench/llm_adapters/results_cuda.json   # a larger budget on a GPU (table_cuda.md)

Rows are methods in LLM-Adapters' order (zero-shot first, then LoRA, DoRA, the series adapters Houlsby and
Pfeiffer, the parallel adapter, prefix tuning, prompt tuning, IA3); columns are tasks (LLM-Adapters' BoolQ slice
in examples/data/boolq, and the held-out MultiArith problems in examples/data/math with the math training slice);
cells are answer accuracy: the share of greedy responses whose answer (first true/false, last number) is the gold
one. The decoder is ``python-package:autopeft.decoders.smollm2`` with ``task: causal-lm``, as in
examples/boolq-smollm2.yaml and examples/math-smollm2.yaml.

Every method gets the same budget (steps, batch size, training records, evaluation records, seed) at its usual
learning rate (the project's: autopeft/results/baselines.py, bench/methods), and every configuration runs through the
real trial worker (workers/worker.py: build, train, final evaluation in fp32, save). Per row, also:

- a refusal check before training, as the search's controller makes it (``predict_cost``: a build on a
  meta-device copy of the model); a method that cannot be built on the decoder is not trained and its refusal
  text is the row;
- trainable parameters as the worker counts them on the built model (checked against the prediction);
- train and evaluation seconds as the worker measures them;
- export and reload: the adapter folder the worker saved (what ``autopeft export`` copies, autopeft/results/export.py)
  is loaded onto a freshly loaded base with the method's library's own loader, ``peft.PeftModel.from_pretrained``
  for peft methods and AdapterHub's ``load_adapter`` for the ``adapters`` ones, and evaluated again: the answers
  must be the same, one by one.

Zero-shot is the base evaluated by the worker's own evaluation (``CausalLmRunner.evaluate``), untrained.

``--data`` points at a copy of LLM-Adapters' data (its ``dataset/`` and ``ft-training_set/`` folders) for a larger
budget than the bundled slices allow: training records are drawn from its whole training sets (BoolQ's 9,427,
math_data.json's 3,260) and BoolQ is evaluated on its test set (3,270); MultiArith stays the bundled held-out
problems, the only ones math_data.json does not contain. ``--device cuda`` trains and evaluates on a GPU.
Resumable: rows in results.json with the same budget are kept and skipped; table.md is written from them
(results_X.json writes table_X.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "examples" / "data"

import torch  # noqa: E402
from whole_sets import whole_set_files  # noqa: E402  (beside this file)

from autopeft.errors import UserError  # noqa: E402
from autopeft.methods import available_methods, get_method  # noqa: E402
from autopeft.models.base import load_base_model  # noqa: E402
from autopeft.search.cost import predict_cost  # noqa: E402
from autopeft.search.trial import TrialRequest  # noqa: E402
from autopeft.spec import DataSpec, ModelSpec, TrainingSpec, resolve_model_location  # noqa: E402
from autopeft.store.predictions import decode  # noqa: E402
from autopeft.tasks.data import load_task_data  # noqa: E402
from workers.worker import TrialWorker  # noqa: E402

DECODER = "python-package:autopeft.decoders.smollm2"
# task -> (title, training file, evaluation file, max_length), as the example specs have them
TASKS = {
    "boolq": ("BoolQ", DATA / "boolq" / "train.json", DATA / "boolq" / "test.json", 160),
    "multiarith": ("MultiArith", DATA / "math" / "train.json", DATA / "math" / "multiarith.json", 320),
}
ZERO_SHOT = "zero-shot"
# LLM-Adapters' rows, each at the project's representative configuration and usual learning rate (bench/methods).
METHODS: dict[str, dict | None] = {
    ZERO_SHOT: None,
    "LoRA r=8 q,v": {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]}, "learning_rate": 1e-3},
    "DoRA r=8 q,v": {"method": "dora", "dora": {"r": 8, "target_modules": ["query", "value"]}, "learning_rate": 1e-3},
    "series adapter (Houlsby) 64": {"method": "houlsby", "houlsby": {"bottleneck": 64}, "learning_rate": 1e-3},
    "series adapter (Pfeiffer) 64": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 64}, "learning_rate": 1e-3},
    "parallel adapter 64": {"method": "parallel", "parallel": {"bottleneck": 64}, "learning_rate": 1e-3},
    "prefix tuning 10": {"method": "prefix", "prefix": {"prefix_length": 10}, "learning_rate": 3e-3},
    "prompt tuning 10 tokens": {"method": "prompt", "prompt": {"num_virtual_tokens": 10}, "learning_rate": 3e-3},
    "IA3": {"method": "ia3", "learning_rate": 3e-3},
}
# Options for the registry's other methods, for the refusal check of every method on the decoder (results.json).
OTHER_OPTIONS = {
    "autopeft": {"autopeft": {"serial": 24, "parallel": 48, "prefix_length": 6}},
    "mam": {"mam": {"prefix_length": 10, "bottleneck": 64}},
    "unipelt": {"unipelt": {"r": 8, "prefix_length": 10, "bottleneck": 24}},
    "loha": {"loha": {"r": 8}},
    "lokr": {"lokr": {"r": 8}},
    "vera": {"vera": {"r": 64}},
    "sparse": {"sparse": {"density": 0.01}},
}


SLOW_LAST = ("prefix tuning 10", "prompt tuning 10 tokens")  # two-pass evaluations: run last, shown in order


def eval_records(args: argparse.Namespace, task: str) -> int:
    """``--eval-records 48`` for every task, or ``boolq=48 multiarith=16`` per task."""
    counts = {}
    for item in args.eval_records:
        task_name, _, count = item.rpartition("=")
        counts[task_name or "*"] = int(count)
    return counts.get(task, counts.get("*", 48))


def budget_of(args: argparse.Namespace, task: str) -> dict:
    budget = {"steps": args.steps, "batch_size": args.batch_size, "train_records": args.train_records,
              "eval_records": eval_records(args, task), "seed": 0, "threads": args.threads}
    if args.device != "cpu":
        budget["device"] = args.device
    if args.data is not None:
        budget["data"] = "LLM-Adapters' whole sets"
    return budget


def task_files(task: str, args: argparse.Namespace) -> tuple[Path, Path, int]:
    """Training file, evaluation file and max length: the bundled slices, or LLM-Adapters' own sets (--data)."""
    _, train, evaluation, max_length = TASKS[task]
    if args.data is not None:
        train, evaluation = whole_set_files(args.data, task, train, evaluation)
    return train, evaluation, max_length


def refusal(model: ModelSpec, config: dict) -> tuple[str | None, float | None]:
    """Why the configuration cannot be built on the decoder (the controller's check before training), or None with
    the trainable parameters it predicts."""
    try:
        return None, predict_cost(model, 0, config)["trainable_params"]
    except (UserError, ValueError, TypeError, KeyError) as exc:
        return str(exc) or type(exc).__name__, None


def reload_check(model: ModelSpec, worker: TrialWorker, method_name: str, adapter_dir: str, batch_size: int,
                 answers: list[str]) -> dict:
    """The saved adapter on a fresh base through its library's own loader, evaluated again: same answers?"""
    method = get_method(method_name)
    base = load_base_model(model, []).eval().to(worker.device)
    if method.library == "peft":
        from peft import PeftModel

        loaded = PeftModel.from_pretrained(base, adapter_dir).to(worker.device)
        loader = "peft.PeftModel.from_pretrained"
    elif method.library == "adapters":
        import adapters

        from autopeft.methods.adapterhub_decoders import saved_on_decoder

        adapters.init(base)
        safetensors = not (Path(adapter_dir) / "pytorch_adapter.bin").is_file()
        base.set_active_adapters(base.load_adapter(adapter_dir, use_safetensors=safetensors))
        loader = "adapters: load_adapter (not peft: peft has no such adapter)"
        if all(saved_on_decoder(Path(adapter_dir))):  # a prefix: the export's loading code sets eager attention
            base.set_attn_implementation("eager")
            loader = "adapters: load_adapter, eager attention (not peft: peft has no such adapter)"
        loaded = base.to(worker.device)
    else:
        from autopeft import load_adapter

        loaded, loader = load_adapter(base, adapter_dir).to(worker.device), "autopeft.load_adapter"
    again = decode(worker.runner.evaluate(loaded, batch_size).predictions)
    same = sum(a == b for a, b in zip(again, answers))
    return {"loader": loader, "library": method.library, "same_answers": same, "answers": len(answers),
            "reloaded_ok": same == len(answers) and len(again) == len(answers)}


def run_task(task: str, labels: list[str], model: ModelSpec, args: argparse.Namespace, results: dict,
             results_file: Path) -> None:
    budget = budget_of(args, task)
    todo = [label for label in sorted(labels, key=lambda label: label in SLOW_LAST)
            if results.get(f"{task} | {label}", {}).get("budget") != budget]
    if not todo:
        return
    train, evaluation, max_length = task_files(task, args)
    data_spec = DataSpec(train=str(train), eval=str(evaluation), max_length=max_length,
                         train_size=args.train_records, eval_size=budget["eval_records"])
    data = load_task_data(data_spec, model, seed=0)
    worker = TrialWorker(model.model_dump(), data, threads=args.threads, device=args.device)
    training = TrainingSpec(batch_size=args.batch_size, log_every=5).model_dump()
    for label in todo:
        config = METHODS[label]
        row = {"task": task, "method": label, "budget": budget, "config": config}
        started = time.perf_counter()
        if config is None:
            with torch.inference_mode():
                clock = time.perf_counter()
                evaluation_result = worker.runner.evaluate(worker.base.to(worker.device), training["eval_batch_size"])
                eval_s = time.perf_counter() - clock
            row.update(ok=True, trainable_params=0, train_time_s=0.0, eval_time_s=eval_s,
                       answers_given=answer_counts(decode(evaluation_result.predictions)),
                       **evaluation_result.metrics)
        else:
            reason, predicted = refusal(model, config)
            if reason is not None:
                row.update(ok=False, refused=True, fail_reason=reason)
            else:
                out = Path(args.work_dir) / task / _folder_name(label)
                result = worker.run(TrialRequest(0, config, 0, args.steps, training, str(out)))
                row.update(ok=result.ok, refused=False, fail_reason=result.fail_reason,
                           predicted_trainable_params=predicted, **result.measurements)
                if result.ok:
                    row["loss_curve"] = result.loss_curve
                    row["precision"] = result.execution.get("precision")
                    row["answers_given"] = answer_counts(decode(result.predictions))
                    try:
                        row["reload"] = reload_check(model, worker, config["method"], result.adapter_dir,
                                                     training["eval_batch_size"], decode(result.predictions))
                    except Exception as exc:  # a reload that fails is the row's finding, not the benchmark's end
                        row["reload"] = {"reloaded_ok": False, "error": f"{type(exc).__name__}: {exc}"}
        row["wall_s"] = time.perf_counter() - started
        results[f"{task} | {label}"] = row
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps({k: row.get(k) for k in ("task", "method", "answer_accuracy", "eval_loss",
                                                  "trainable_params", "train_time_s", "eval_time_s",
                                                  "fail_reason")}),
              json.dumps(row.get("reload", {})), flush=True)
    del worker


def answer_counts(answers: list[str]) -> dict[str, int]:
    """The answers the responses gave, most common first ("" = no answer found), the five most common."""
    return dict(Counter(answers).most_common(5))


def post_checks(results: dict, model: ModelSpec, args: argparse.Namespace) -> None:
    """Checks on kept rows, from the saved adapters (the reload check showed they give the trained model's answers):

    - ``answers_given`` where a run did not record them (the base for zero-shot);
    - ``uncached``: for AdapterHub rows, the answers generated without the key/value cache (``generate`` with
      ``use_cache=False``, through ``workers.generation.generate_answers``). AdapterHub 1.3's LLaMA layers take
      the cache as ``past_key_value`` while transformers 4.57 passes ``past_key_values``, so the cache is dropped
      and every cached decoding step sees only its own token: the worker's answers for these rows are not the
      model's. Without the cache each step recomputes the whole sequence, so the answers are the model's."""
    from autopeft import load_adapter
    from workers.generation import answers_match, generate_answers

    for task in args.tasks:
        rows = [r for k, r in results.items() if k != "_meta" and r.get("task") == task and r.get("ok")
                and ("answers_given" not in r or (r["config"] and "uncached" not in r
                                                  and get_method(r["config"]["method"]).library == "adapters"))]
        if not rows:
            continue
        train, evaluation, max_length = task_files(task, args)
        data = load_task_data(DataSpec(train=str(train), eval=str(evaluation), max_length=max_length,
                                       train_size=rows[0]["budget"]["train_records"],
                                       eval_size=rows[0]["budget"]["eval_records"]), model, seed=0)
        worker = TrialWorker(model.model_dump(), data, threads=args.threads, device=args.device)
        runner, split = worker.runner, data.eval
        for row in rows:
            if row["config"] is None:
                loaded = worker.base.to(worker.device)
            else:
                folder = Path(args.work_dir) / task / _folder_name(row["method"]) / "adapter"
                loaded = load_adapter(load_base_model(model, []).eval(), folder).to(worker.device)
            if "answers_given" not in row:
                row["answers_given"] = answer_counts(decode(runner.evaluate(loaded, 128).predictions))
            if row["config"] and get_method(row["config"]["method"]).library == "adapters":
                loaded.generation_config.use_cache = False
                started = time.perf_counter()
                with torch.inference_mode():
                    texts = generate_answers(loaded, runner.tokenizer, split.prompts, split.answers,
                                             max_new_tokens=runner.max_new_tokens, pad_id=runner.pad_id,
                                             device=runner.device, max_rows=128, reading=runner.reading)
                given = [runner.reading.read(text, gold) for text, gold in zip(texts, split.answers)]
                row["uncached"] = {"answer_accuracy": sum(map(answers_match, given, split.answers)) / len(given),
                                   "answers_given": answer_counts(given), "seconds": time.perf_counter() - started,
                                   "example_response": texts[0]}
            print(task, row["method"], row["answers_given"], row.get("uncached"), flush=True)
            args.results.write_text(json.dumps(results, indent=2) + "\n")


def _folder_name(label: str) -> str:
    return label.replace(" ", "_").replace("(", "").replace(")", "")


def registry_check(model: ModelSpec) -> dict:
    """Every registered method on the decoder: builds (with its predicted trainable parameters) or its refusal."""
    out = {}
    for name in available_methods():
        config = next((c for c in METHODS.values() if c and c["method"] == name), None)
        config = config or {"method": name, **OTHER_OPTIONS.get(name, {}), "learning_rate": 1e-3}
        reason, predicted = refusal(model, config)
        out[name] = {"builds": reason is None, "trainable_params": predicted, "refusal": reason}
    return out


def cpu_description() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                "unknown")
    flags = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in info.split()]
    return f"{name} (flags: {', '.join(flags) or 'no avx512_bf16/amx'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--train-records", type=int, default=400)
    parser.add_argument("--eval-records", nargs="+", default=["48"], help="48, or per task: boolq=48 multiarith=16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--work-dir", default="/tmp/bench-llm-adapters")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--data", type=Path, default=None,
                        help="a copy of LLM-Adapters' data (dataset/, ft-training_set/): train and evaluate on its "
                             "whole sets instead of the bundled slices")
    parser.add_argument("--table-only", action="store_true", help="write table.md from results.json, run nothing")
    parser.add_argument("--post-checks", action="store_true",
                        help="on kept rows: answers given where missing, and AdapterHub rows decoded without the "
                             "key/value cache (re-evaluates the saved adapters; see post_checks)")
    args = parser.parse_args()
    if args.table_only:
        write_table(json.loads(args.results.read_text()), table_path(args.results))
        return
    args.results.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    folder, problem = resolve_model_location(DECODER, ROOT)
    if problem:
        raise SystemExit(problem)
    model = ModelSpec(name_or_path=folder, task="causal-lm")
    if args.post_checks:
        post_checks(results, model, args)
        write_table(results, table_path(args.results))
        return
    import transformers

    gpu = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else None
    results["_meta"] = {"decoder": DECODER, "cpu": cpu_description(), "gpu": gpu, "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "registry_on_decoder": registry_check(model), "command": " ".join(sys.argv[1:])}
    labels = [label for label in METHODS if label in args.methods]
    for task in args.tasks:
        run_task(task, labels, model, args, results, args.results)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    write_table(results, table_path(args.results))


def table_path(results: Path) -> Path:
    """results.json -> table.md, results_cuda.json -> table_cuda.md."""
    return results.with_name(results.stem.replace("results", "table", 1) + ".md")


def _cell(row: dict | None, field: str, fmt: str) -> str:
    if row is None:
        return "not run"
    if not row.get("ok"):
        return "refused" if row.get("refused") else "failed"
    if field == "answer_accuracy" and "uncached" in row:  # the worker's cached decoding is wrong for these rows
        return f"{row[field]:{fmt}} † ({row['uncached'][field]:{fmt}})"
    return format(row[field], fmt)


def write_table(results: dict, path: Path) -> None:
    """LLM-Adapters' shape: a row per method, a column per task (answer accuracy), then the costs and the
    export/reload check."""
    tasks = [t for t in TASKS if any(r.get("task") == t for k, r in results.items() if k != "_meta")]
    titles = [TASKS[t][0] for t in tasks]
    header = (["method", "lr"] + titles + ["avg", "trainable params"] + [f"eval loss ({t})" for t in titles]
              + [f"train s ({t})" for t in titles]
              + [f"eval s ({t})" for t in titles] + ["exported → reloaded, same answers"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for label, config in METHODS.items():
        rows = [results.get(f"{t} | {label}") for t in tasks]
        if all(r is None for r in rows):
            continue
        accuracies = [r["answer_accuracy"] for r in rows if r and r.get("ok")]
        avg = f"{sum(accuracies) / len(accuracies):.3f}" if len(accuracies) == len(tasks) else ""
        done = [r for r in rows if r and r.get("ok")]
        params = f"{int(done[0]['trainable_params']):,}" if done else ""
        reloads = []
        for title, r in zip(titles, rows):
            if r is None or not r.get("ok"):
                continue
            if config is None:
                reloads.append("n/a (base)")
                continue
            check = r.get("reload", {})
            if "error" in check:
                reloads.append(f"{title}: FAILED ({check['error'][:80]})")
            else:
                lib = "peft" if check["library"] == "peft" else check["library"]
                reloads.append(f"{title}: {check['same_answers']}/{check['answers']} via {lib}")
        for title, r in zip(titles, rows):
            if r is not None and not r.get("ok"):
                kind = "refused before training" if r.get("refused") else "failed"
                notes.append(f"- {label} on {title}: {kind}: {r['fail_reason']}")
        cells = ([label, "" if config is None else f"{config['learning_rate']:g}"]
                 + [_cell(r, "answer_accuracy", ".3f") for r in rows] + [avg, params]
                 + [_cell(r, "eval_loss", ".3f") for r in rows]
                 + [_cell(r, "train_time_s", ".0f") for r in rows] + [_cell(r, "eval_time_s", ".1f") for r in rows]
                 + ["; ".join(dict.fromkeys(reloads)) if config is None else "; ".join(reloads)])
        lines.append("| " + " | ".join(cells) + " |")
    meta = results.get("_meta", {})
    refused = {n: c["refusal"] for n, c in meta.get("registry_on_decoder", {}).items() if not c["builds"]}
    given = [(label, results[f"boolq | {label}"]["answers_given"]) for label in METHODS
             if "answers_given" in results.get(f"boolq | {label}", {})]
    if given:
        lines += ["", "Answers given on BoolQ (how many responses gave each answer; (none): no true/false found):"]
        lines += [f"- {label}: " + ", ".join(f"{answer or '(none)'} {count}" for answer, count in counts.items())
                  for label, counts in given]
    if any("uncached" in r for k, r in results.items() if k != "_meta"):
        lines += ["", "† AdapterHub rows: in brackets the same saved adapter decoded without the key/value cache. "
                  "AdapterHub 1.3's LLaMA layers read the cache as past_key_value while transformers 4.57 passes "
                  "past_key_values; in rows trained before autopeft handed it over "
                  "(autopeft/methods/adapterhub_decoders.py) the worker's cached answers are wrong and the bracket "
                  "is the model's; since, the two agree."]
    if notes:
        lines += ["", *notes]
    if refused:
        lines += ["", "Registry methods refused on the decoder before training (not rows of LLM-Adapters' table):"]
        lines += [f"- {name}: {reason}" for name, reason in refused.items()]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
