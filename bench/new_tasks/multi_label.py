"""Several labels per text, as a new user meets it: one CSV of texts and joined labels, `autopeft init`, then
`autopeft search run` on the spec it drafted, nothing edited.

    .venv/bin/python bench/new_tasks/multi_label.py          # about 7 minutes on 2 cores
    .venv/bin/python bench/new_tasks/multi_label.py --report # the JSON again from the last run's database

No multi-label set ships with the project or in ../shared, so the file is made from the bundled SST-2 sample's
4,000 real phrases (examples/data/sst2/train.tsv) with three labels: ``positive`` (the phrase's own human sentiment
label), ``film`` (it names a film or movie) and ``long`` (15 words or more), joined by commas, empty for none. Two
of the three are read from the words, so they are easy; the third is a real judgement. The spec is `init`'s:
MiniLM, the label column and separator it read, 20% of the rows held out, the `lora` space, 12 trials,
`steps_per_trial: auto`. Then the hand-picked baselines at the fidelity the probe chose.

Results: ``results_multi_label.json`` beside this script, and a row in bench/README.md (new_tasks): the fidelity
and the probe's cost, full fine-tuning (the probe's own run at that fidelity), the best hand-picked baseline, the
front's best and its cheapest point within noise of it, chance, the share of full fine-tuning's lead over chance
the front's best reaches, wall time and the processor.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.new_tasks.drafted import report, run_drafted  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = Path("/tmp/new-tasks-multi-label")
NAME = "tags"


def labels_of(sentence: str, sentiment: str) -> str:
    words = set(sentence.split())
    return ",".join(name for name, on in (("film", bool({"film", "movie", "films", "movies"} & words)),
                                          ("long", len(sentence.split()) >= 15), ("positive", sentiment == "1"))
                    if on)


def write_data(work: Path) -> tuple[list[str], dict[str, int]]:
    """One CSV of the sample's phrases and their joined labels; `init`'s arguments and the label counts."""
    with open(ROOT / "examples" / "data" / "sst2" / "train.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(work / "tags.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "labels"])
        writer.writerows((r["sentence"], labels_of(r["sentence"], r["label"])) for r in rows)
    counts: dict[str, int] = {}
    for r in rows:
        for label in filter(None, labels_of(r["sentence"], r["label"]).split(",")):
            counts[label] = counts.get(label, 0) + 1
    return ["tags.csv"], {"rows": len(rows), **counts}


def main() -> None:
    if "--report" not in sys.argv:
        run_drafted(WORK, NAME, write_data)
    result = report(WORK, NAME, "micro_f1", ("micro_f1", "macro_f1", "subset_accuracy"))
    (HERE / "results_multi_label.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
