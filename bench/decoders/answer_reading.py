"""How a decoder's answers are read, checked on the gold responses of LLM-Adapters' test sets.

For every test set in ``../shared/data/llm-adapters/dataset`` whose records carry a gold response, two readings of
each gold response, each with its stopping rule (autopeft/tasks/answer_reading.py):

- *before*: LLM-Adapters' rules as the worker applied them before statements were read: the first answer-shaped
  word (letter, ``answerN``, true/false, a word of the task's closed set), the last number for math; a numeric row
  stopped at "the answer is N" followed by any non-digit;
- *now*: the same, except that where the task's responses state their answer ("the answer is (D)", decided from
  the records by ``responses_state_answers``) the statement is read first and a row is not stopped before it, and a
  numeric row stops only once the stating sentence has ended.

Per set: how many gold responses with a word answer a reading gets wrong against the answer the response itself
states (where it states one; numbers are read as the last number either way), and how many a row's stop would cut
before the answer the whole response gives (the prefix at which the stopping rule first fires, read, against the
whole response, read), and, for word answers, how many a row's stop would cut before the response's statement of
its answer. The gold responses are LLM-Adapters' (written by a model, so some state another answer than
the record's gold one; both readings are scored against the response's own statement, not the gold answer). Pure
text: no model, a few seconds.

    .venv/bin/python bench/decoders/answer_reading.py        # -> bench/decoders/answer_reading.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import autopeft.tasks.answer_reading as reading_rules  # noqa: E402
from autopeft.tasks.answer_options import answer_words  # noqa: E402
from autopeft.tasks.answer_reading import AnswerReading, responses_state_answers  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "llm-adapters" / "dataset"
OUT = Path(__file__).with_name("answer_reading.json")
# The numeric stopping rule before this change: "the answer is N" followed by any character that cannot continue N.
NUMBER_STOP_BEFORE = re.compile(r"answer is:?\s*\$?\s*-?\d+(?:\.\d+)?(?:[^\d.]|\.(?!\d)[^\d])", re.IGNORECASE)
STATED = re.compile(r"answer is:?\s*[(\[\"']?\s*([A-Za-z]+\d*)", re.IGNORECASE)


def misread(responses: list[str], golds: list[str], reading: AnswerReading) -> int:
    """Responses with a word answer (numbers keep their reading, the last number) whose read answer differs from
    the one their own last statement gives (where they state one)."""
    wrong = 0
    for response, gold in zip(responses, golds):
        statements = STATED.findall(response)
        if not statements or reading_rules._numeric(gold):
            continue
        wrong += reading.read(response, gold).lower() != statements[-1].lower()
    return wrong


def cut_early(responses: list[str], golds: list[str], reading: AnswerReading) -> int:
    """Responses a row's stop would cut at a prefix that reads another answer than the whole response."""
    cut = 0
    for response, gold in zip(responses, golds):
        for end in range(1, len(response)):
            if reading.given(response[:end], gold):
                cut += reading.read(response[:end], gold) != reading.read(response, gold)
                break
    return cut


def stopped_before_statement(responses: list[str], golds: list[str], reading: AnswerReading) -> int:
    """Responses with a word answer and a statement of it that a row's stop would cut before that statement ends:
    generation would not reach the answer the response goes on to state."""
    stopped = 0
    for response, gold in zip(responses, golds):
        statements = list(STATED.finditer(response))
        if not statements or reading_rules._numeric(gold):
            continue
        stopped += any(reading.given(response[:end], gold) for end in range(1, statements[0].end(1)))
    return stopped


def measure_set(folder: Path) -> dict | None:
    records = [r for r in json.loads((folder / "test.json").read_text()) if str(r.get("output", "")).strip()]
    if not records:
        return None
    responses, golds = [str(r["output"]) for r in records], [str(r["answer"]) for r in records]
    words = tuple(answer_words(golds) or ())
    stated = responses_state_answers(responses, golds)
    row = {"records": len(records), "stated": stated}
    shipped_stop = reading_rules._STATED_NUMBER
    for name, reading, number_stop in (("before", AnswerReading(words, False), NUMBER_STOP_BEFORE),
                                       ("now", AnswerReading(words, stated), shipped_stop)):
        reading_rules._STATED_NUMBER = number_stop
        try:
            row[name] = {"misread": misread(responses, golds, reading),
                         "stopped_before_statement": stopped_before_statement(responses, golds, reading),
                         "cut_early": cut_early(responses, golds, reading)}
        finally:
            reading_rules._STATED_NUMBER = shipped_stop
    return row


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"needs LLM-Adapters' test sets at {DATA}")
    results = {folder.name: row for folder in sorted(DATA.iterdir()) if (folder / "test.json").is_file()
               and (row := measure_set(folder)) is not None}
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print("| test set | gold responses | states its answer | misread (before → now) | stopped before its statement "
          "(before → now) | cut at another answer (before → now) |\n|---|---|---|---|---|---|")
    for name, row in results.items():
        cells = " | ".join(f"{row['before'][k]} → {row['now'][k]}"
                           for k in ("misread", "stopped_before_statement", "cut_early"))
        print(f"| {name} | {row['records']:,} | {'yes' if row['stated'] else 'no'} | {cells} |")


if __name__ == "__main__":
    main()
