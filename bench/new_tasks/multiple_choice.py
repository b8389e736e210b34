"""A question and its options, as a new user meets it: the questions in their published form, `autopeft init`,
then `autopeft search run` on the spec it drafted, nothing edited.

    .venv/bin/python bench/new_tasks/multiple_choice.py --task arc-easy   # about 20 minutes on 2 cores
    .venv/bin/python bench/new_tasks/multiple_choice.py --task piqa
    .venv/bin/python bench/new_tasks/multiple_choice.py --task arc-easy --report  # the JSON again from the database

The questions are LLM-Adapters' copies (../shared/data/llm-adapters: ARC-Easy CC BY-SA 4.0, OpenBookQA Apache-2.0,
PIQA AFL-3.0; the copies ODC-By 1.0), read out of the instructions they were written into and written back in each
set's own published form, as a user downloads it: ARC-Easy and OpenBookQA as `datasets` writes them (``question``
or ``question_stem``, ``choices: {text, label}``, ``answerKey``), PIQA as its authors do (``goal``, ``sol1``,
``sol2``, ``label``; only its 1,838 validation questions are there, cut 1,338 / 500 here). The spec is `init`'s:
MiniLM, the columns it recognised, the `lora` space, `steps_per_trial: auto`; then the hand-picked baselines at
the fidelity the probe chose.

The same ARC-Easy and OpenBookQA questions posed as 4-way classification of the question with its options (the
form the product offered before, bench/new_tasks/run.py) sat at chance to 256 and 512 steps and were stopped by the
probe: the report is read against that.

Results: ``results_multiple_choice_{task}.json`` beside this script, and a section of bench/README.md (new_tasks).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.new_tasks.drafted import report, run_drafted  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "llm-adapters" / "dataset"
TASK = sys.argv[sys.argv.index("--task") + 1] if "--task" in sys.argv else "arc-easy"
WORK = Path(f"/tmp/new-tasks-choice-{TASK}")
SEED = 20261208
_ASKED = re.compile(r"Please choose the correct (?:answer|solution) to the question: (.*?)\n\n(.*?)\n\nAnswer format:",
                    re.S)
_OPTION = re.compile(r"\s*(?:Answer|Solution)(\d): ")


def _questions(name: str, split: str) -> list[tuple[str, list[str], int]]:
    """LLM-Adapters' records of one set: each question, its options in order, and the right one's position."""
    questions = []
    for record in json.loads((SOURCE / name / f"{split}.json").read_text()):
        asked, listed = _ASKED.match(record["instruction"]).groups()
        parts = _OPTION.split(listed)
        options = [parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)]
        questions.append((asked.strip(), options, int(re.search(r"\d+$", record["answer"]).group()) - 1))
    return questions


def _as_datasets_writes(questions: list[tuple[str, list[str], int]], question_field: str) -> list[dict]:
    """ARC's and OpenBookQA's rows as `datasets` writes them: lettered choices and the right one's letter."""
    letters = "ABCDE"
    return [{"id": f"q{i}", question_field: q,
             "choices": {"text": options, "label": list(letters[:len(options)])}, "answerKey": letters[right]}
            for i, (q, options, right) in enumerate(questions)]


def _splits() -> dict[str, list[dict]]:
    if TASK == "arc-easy":
        return {split: _as_datasets_writes(_questions("ARC-Easy", source), "question")
                for split, source in (("train", "train"), ("eval", "test"))}
    if TASK == "openbookqa":
        return {split: _as_datasets_writes(_questions("openbookqa", source), "question_stem")
                for split, source in (("train", "train"), ("eval", "test"))}
    if TASK == "piqa":
        rows = [{"goal": q, "sol1": options[0], "sol2": options[1], "label": right}
                for q, options, right in _questions("piqa", "test")]
        random.Random(SEED).shuffle(rows)
        return {"train": rows[500:], "eval": rows[:500]}
    raise SystemExit(f"--task: one of arc-easy, openbookqa, piqa (got {TASK!r})")


def write_data(folder: Path) -> tuple[list[str], dict[str, int]]:
    """The questions as .jsonl files in their published form; `init`'s arguments and the counts."""
    counts = {}
    for split, rows in _splits().items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts[f"{split} questions"] = len(rows)
    return ["train.jsonl", "--eval", "eval.jsonl"], counts


def main() -> None:
    if "--report" not in sys.argv:
        run_drafted(WORK, TASK, write_data)
    result = report(WORK, TASK, "accuracy", ("accuracy",))
    (HERE / f"results_multiple_choice_{TASK}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
