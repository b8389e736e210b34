"""Cut the examples' data (examples/data/boolq, examples/data/math, examples/data/quantities,
examples/data/openbookqa) from a copy of LLM-Adapters' data.

    python examples/data/slice_llm_adapters.py PATH/TO/LLM-Adapters

PATH is a checkout of the LLM-Adapters repository (its dataset/ and ft-training_set/ folders). The decoders'
records are kept byte for byte as LLM-Adapters writes them (instruction, input, output, answer); only which
records is chosen here. The tagging example's words and tags are read from SVAMP's annotated problems
(:func:`quantity_tags`); the multiple-choice example's questions, options and answers from the instructions
LLM-Adapters wrote them into (:func:`question_and_options`).
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261130


def _read(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, records: list[dict]) -> None:
    path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{path.relative_to(HERE)}: {len(records)} records")


_WORD = re.compile(r"\d+(?:\.\d+)?|\w+|[^\w\s]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def quantity_tags(problem: dict) -> dict:
    """One SVAMP problem (body and question) as words, each number tagged by whether the annotated equation uses
    it (``B-USED``) or not (``B-UNUSED``: SVAMP adds such distractors on purpose), every other word ``O``."""
    words = _WORD.findall(f"{problem['Body'].strip()} {problem['sQuestion'].strip()}")
    used = {float(n) for n in _NUMBER.findall(problem["Equation"])}
    tags = [("B-USED" if float(w) in used else "B-UNUSED") if _NUMBER.fullmatch(w) else "O" for w in words]
    return {"id": problem["ID"], "tokens": words, "tags": tags}


_ASKED = re.compile(r"Please choose the correct answer to the question: (.*?)\n\n(.*?)\n\nAnswer format:", re.S)
_OPTION = re.compile(r"\s*Answer(\d): ")


def question_and_options(record: dict) -> dict:
    """One of LLM-Adapters' multiple-choice records ("Please choose the correct answer to the question: Q
    Answer1: ... Answer2: ...", answer "answer2") as the question, its options in order and the right one's letter,
    the form OpenBookQA's own answerKey takes."""
    question, listed = _ASKED.match(record["instruction"]).groups()
    parts = _OPTION.split(listed)
    options = [parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)]
    right = int(record["answer"].removeprefix("answer")) - 1
    return {"question": question.strip(), "options": options, "answer": "ABCDE"[right]}


def main(source: Path) -> None:
    boolq = source / "dataset" / "boolq"
    _write(HERE / "boolq" / "train.json", random.Random(SEED).sample(_read(boolq / "train.json"), 400))
    _write(HERE / "boolq" / "test.json", random.Random(SEED + 1).sample(_read(boolq / "test.json"), 100))

    # LLM-Adapters' math training set is drawn from the math test sets themselves: the eval files keep only the
    # test records whose instruction is not in it, and the training slice is drawn from it.
    train = _read(source / "ft-training_set" / "math_data.json")
    seen = {r["instruction"].strip() for r in train}
    for name in ("AddSub", "SingleEq", "MultiArith"):
        held_out = [r for r in _read(source / "dataset" / name / "test.json") if r["instruction"].strip() not in seen]
        _write(HERE / "math" / f"{name.lower()}.json", held_out)
    _write(HERE / "math" / "train.json", random.Random(SEED + 2).sample(train, 400))

    problems = [quantity_tags(p) for p in _read(source / "dataset" / "SVAMP" / "SVAMP.json")]
    random.Random(SEED + 3).shuffle(problems)
    for name, rows in (("train", problems[:700]), ("eval", problems[700:])):
        path = HERE / "quantities" / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{path.relative_to(HERE)}: {len(rows)} records")

    openbookqa = source / "dataset" / "openbookqa"
    for name, rows in (("train", random.Random(SEED + 4).sample(_read(openbookqa / "train.json"), 2000)),
                       ("eval", _read(openbookqa / "test.json"))):
        path = HERE / "openbookqa" / f"{name}.jsonl"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps(question_and_options(r), ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        print(f"{path.relative_to(HERE)}: {len(rows)} records")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
