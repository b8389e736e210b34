"""A tag per word, as a new user meets it: CoNLL files (a word and its tag per line), `autopeft init`, then
`autopeft search run` on the spec it drafted, nothing edited.

    .venv/bin/python bench/new_tasks/tagging.py              # about 8 minutes on 2 cores
    .venv/bin/python bench/new_tasks/tagging.py --steps 1024 # the one edit: a fixed budget per trial
    .venv/bin/python bench/new_tasks/tagging.py --report     # the JSON again from the last run's database

The task is the bundled tagging example's (examples/data/quantities, 700 training and 300 evaluation problems):
SVAMP's math word problems, each number tagged by whether the annotated equation uses it (B-USED) or it is there
to distract (B-UNUSED), every other word O. Spotting the numbers is easy; telling a used one from a distractor
needs the question read. So beside chance (always O: entity F1 0) the report holds the entity F1 of tagging every
number B-USED (0.787 on the evaluation problems), and whether the front's best beats it beyond the noise (the
paired bootstrap `search show` uses). The spec is `init`'s: MiniLM, the words and tags it read, the `lora` space,
12 trials, `steps_per_trial: auto`; then the hand-picked baselines at the fidelity the probe chose.

``--steps N`` sets ``steps_per_trial: N`` in the drafted spec instead of the probe's choice (full fine-tuning is
then trained as a baseline at N steps), for a task whose learning the probe's ladder stops short of.

Results: ``results_tagging.json`` (``results_tagging_steps{N}.json``) beside this script, and a section of
bench/README.md (new_tasks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.new_tasks.drafted import report, run_drafted  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = Path("/tmp/new-tasks-tagging")
STEPS = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else None
NAME = "quantities"
QUANTITIES = ROOT / "examples" / "data" / "quantities"


def work() -> Path:
    """The run's folder: one per budget, so that a fixed-steps run leaves the drafted run's database as it was."""
    return WORK if STEPS is None else WORK.with_name(f"{WORK.name}-steps{STEPS}")


def write_data(folder: Path) -> tuple[list[str], dict[str, int]]:
    """The bundled problems as CoNLL files; `init`'s arguments and the tag counts."""
    counts: dict[str, int] = {}
    for split in ("train", "eval"):
        lines = []
        for line in (QUANTITIES / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            lines += [f"{word}\t{tag}" for word, tag in zip(record["tokens"], record["tags"])] + [""]
            for tag in record["tags"]:
                counts[f"{split} {tag}"] = counts.get(f"{split} {tag}", 0) + 1
        (folder / f"{split}.conll").write_text("\n".join(lines) + "\n")
    return ["train.conll", "--eval", "eval.conll"], counts


def every_number_used(result: dict) -> dict:
    """Tagging every number B-USED, on the search's evaluation rows: its entity F1, and whether the front's best
    point beats it beyond the noise."""
    import autopeft
    from autopeft.results.chance import significantly_better
    from autopeft.store import storage
    from autopeft.store.predictions import EvalTargets, decode
    from autopeft.tasks.tag_spans import tag_metrics, tag_scheme

    search = autopeft.load_search(NAME, storage=f"sqlite:///{work() / 'search.db'}")
    targets = EvalTargets.from_json(search.study.user_attrs.get(storage.EVAL_TARGETS))
    names = list(targets.label_names)
    gold = np.asarray(targets.gold)
    numbers = np.isin(gold, [names.index("B-USED"), names.index("B-UNUSED")])
    guess = np.where(numbers, names.index("B-USED"), gold)
    best = next(r for r in search.records if r.number == result["front"][0]["trial"])
    return {**tag_metrics(guess, gold, tag_scheme(names)),
            "front_best_better_beyond_noise": significantly_better("entity_f1", True, decode(best.predictions),
                                                                   guess, targets, seed=best.number)}


def main() -> None:
    if "--report" not in sys.argv:
        run_drafted(work(), NAME, write_data, STEPS)
    result = report(work(), NAME, "entity_f1", ("entity_f1", "accuracy"))
    result["every_number_used"] = every_number_used(result)
    suffix = "" if STEPS is None else f"_steps{STEPS}"
    (HERE / f"results_tagging{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
