"""`autopeft init` on multiple-choice data (a question and a few options, one right), in the column shapes SWAG,
HellaSwag, PIQA, COPA, ARC, OpenBookQA, Social IQa and WinoGrande are published in: drafted as multiple-choice,
scored by accuracy, with data.label_values where the answers count from 1 or name the options; and the drafts read
as drafted. Other tables are drafted as before. The rows are written here, a few per set, in each set's columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from autopeft.spec import load_spec
from autopeft.tasks import draft as draft_module
from autopeft.tasks.data import load_task_data
from autopeft.tasks.draft import ENCODER_MODEL, draft_spec
from tests.conftest import run_cli

# A question, its options and the right one's position: everyday physical questions, PIQA's kind
QUESTIONS = [
    ("To keep bread fresh for longer,", ["store it in a sealed bag", "leave it open in the sun",
                                         "soak it in water", "put it under a heat lamp"], 0),
    ("To open a stuck jar lid,", ["put the jar in the freezer overnight", "run the lid under hot water",
                                  "shake the jar hard", "paint the lid"], 1),
    ("To clean a cast iron pan,", ["soak it in water for a week", "put it in the dishwasher",
                                   "scrub it with salt and oil it", "leave it wet"], 2),
    ("To sharpen a pencil without a sharpener,", ["press it with a spoon", "bend it in half", "wet its tip",
                                                  "shave the wood with a knife"], 3),
    ("To cool a hot drink quickly,", ["add a few ice cubes", "put it in the oven", "stir in hot sugar",
                                      "cover it with a towel"], 0),
    ("To remove a splinter,", ["hit it with a hammer", "pull it out with clean tweezers", "cover it with glue",
                               "ignore it for a month"], 1),
    ("To dry wet shoes,", ["put them in the fridge", "fill them with sand", "stuff them with newspaper",
                           "seal them in a bag"], 2),
    ("To hang a picture straight,", ["guess with your eyes closed", "hang it from one corner",
                                     "tilt your head instead", "check it with a spirit level"], 3),
    ("To stop a door from squeaking,", ["oil its hinges", "paint the handle", "slam it harder",
                                        "hang a coat on it"], 0),
    ("To find a small screw on a carpet,", ["vacuum the whole house", "sweep a magnet over the carpet",
                                            "wait for it to appear", "pour water on the floor"], 1),
]
LETTERS = "ABCD"


def _write_jsonl(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _reads_as_drafted(tmp_path, spec: dict, rows: int):
    """The drafted spec as `search run` loads it (its fields checked), and its data read through MiniLM's
    tokenizer: every question with its options, the right one among them."""
    path = tmp_path / "drafted.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path)
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert data.task == "multiple-choice" and len(data.train) + len(data.eval) == rows
    return loaded, data


def _right_options(tmp_path) -> list[str]:
    """Each question's right option's text, as the reader chooses it by the drafted fields."""
    from autopeft.tasks.choices import ANSWER_COLUMN, OPTIONS_COLUMN, with_options
    from autopeft.tasks.data import read_splits

    data = load_spec(tmp_path / "drafted.yaml").data
    read = with_options(read_splits(data)[0], data, lambda p: f"row {p}")
    return [options[answer] for options, answer in zip(read[OPTIONS_COLUMN], read[ANSWER_COLUMN])]


def _two(options: list[str], right: int, first: bool) -> list[str]:
    """The right option and a wrong one, the right one first or second."""
    pair = [options[right], options[(right + 1) % len(options)]]
    return pair if first else pair[::-1]


def _drafted(spec: dict, *fields: str) -> dict:
    return {f: spec["data"].get(f) for f in fields}


def test_piqa_goal_and_numbered_solutions(tmp_path):
    rows = [{"goal": q, "sol1": pair[0], "sol2": pair[1], "label": n % 2}
            for n, (q, o, a) in enumerate(QUESTIONS) for pair in [_two(o, a, n % 2 == 0)]]
    _write_jsonl(tmp_path / "piqa.jsonl", rows)
    draft = draft_spec(str(tmp_path / "piqa.jsonl"))
    assert draft.spec["model"] == {"name_or_path": ENCODER_MODEL, "task": "multiple-choice"}
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column", "label_values") == {
        "text_columns": ["goal"], "choice_columns": ["sol1", "sol2"], "label_column": "label", "label_values": None}
    assert draft.spec["objectives"] == [{"name": "accuracy"}, {"name": "trainable_params", "direction": "minimize"}]
    said = " ".join(draft.reasons)
    assert "columns 'sol1', 'sol2' hold 2 options per row (a column each): multiple-choice" in said
    assert "answer 'label': the right option by its position from 0" in said
    assert draft.spec["data"]["max_length"] == 32
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a] for _, o, a in QUESTIONS]


def test_the_length_keeps_the_question_with_each_option_whole(tmp_path):
    """The tokenizer reads a question with one option at a time: the length is the pairs', not the question's."""
    rows = [{"goal": q, "sol1": " ".join(pair[0] for _ in range(8)), "sol2": pair[1], "label": 0}
            for q, o, a in QUESTIONS for pair in [_two(o, a, True)]]
    _write_jsonl(tmp_path / "long.jsonl", rows)
    draft = draft_spec(str(tmp_path / "long.jsonl"))
    assert draft.spec["data"]["max_length"] >= 64  # each question alone is under 16 tokens
    _reads_as_drafted(tmp_path, draft.spec, 10)


def test_swag_reads_sent1_and_sent2_as_the_question_and_leaves_its_other_columns(tmp_path):
    rows = []
    for number, (question, options, answer) in enumerate(QUESTIONS):
        first, _, rest = question.partition(" ")
        rows.append({"video-id": f"lsmdc{1000 + number}_clip-{number}", "fold-ind": str(5000 + number),
                     "startphrase": question, "sent1": first, "sent2": rest, "gold-source": ["gold", "gen"][number % 2],
                     **{f"ending{i}": option for i, option in enumerate(options)}, "label": answer})
    pd.DataFrame(rows).to_csv(tmp_path / "swag.csv", index=False)
    draft = draft_spec(str(tmp_path / "swag.csv"))
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column") == {
        "text_columns": ["sent1", "sent2"], "choice_columns": ["ending0", "ending1", "ending2", "ending3"],
        "label_column": "label"}
    assert "label_values" not in draft.spec["data"]
    assert any(r == "question 'sent1' and 'sent2', joined by a space" for r in draft.reasons)
    assert "not read: 'video-id', 'fold-ind', 'startphrase', 'gold-source'" in draft.reasons
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a] for _, o, a in QUESTIONS]


@pytest.mark.parametrize("as_text", [False, True])
def test_hellaswag_endings_as_a_list_with_ctx_or_its_two_halves(tmp_path, as_text):
    rows = []
    for number, (question, options, answer) in enumerate(QUESTIONS):
        first, _, rest = question.partition(" ")
        rows.append({"ind": number, "activity_label": "Home", "ctx_a": first, "ctx_b": rest, "ctx": question,
                     "endings": options, "source_id": f"wikihow~{number}", "split": "train", "split_type": "indomain",
                     "label": str(answer) if as_text else answer})
    _write_jsonl(tmp_path / "hellaswag.jsonl", rows)
    draft = draft_spec(str(tmp_path / "hellaswag.jsonl"))
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column") == {
        "text_columns": ["ctx"], "choice_columns": ["endings"], "label_column": "label"}
    assert any("column 'endings' holds 4 options per row (as a list in each row)" in r for r in draft.reasons)
    _reads_as_drafted(tmp_path, draft.spec, 10)
    _write_jsonl(tmp_path / "halves.jsonl", [{k: v for k, v in row.items() if k != "ctx"} for row in rows])
    assert draft_spec(str(tmp_path / "halves.jsonl"), fit_length=False).spec["data"]["text_columns"] == \
        ["ctx_a", "ctx_b"]


def test_arc_choices_with_their_own_labels_letters_or_numbers(tmp_path):
    """ARC's answerKey names one of the row's own choice labels: A to E, or 1 to 4 in some rows (read as the
    labels, not as positions from 0); a question may have 3 or 5 choices."""
    rows = []
    for number, (question, options, answer) in enumerate(QUESTIONS):
        numbered = number % 3 == 0
        labels = [str(i + 1) if numbered else LETTERS[i] for i in range(len(options))]
        rows.append({"id": f"Mercury_{7000 + number}", "question": question,
                     "choices": {"text": list(options), "label": labels}, "answerKey": labels[answer]})
    rows[1]["choices"]["text"].append("wrap it in foil")
    rows[1]["choices"]["label"].append("E")
    _write_jsonl(tmp_path / "arc.jsonl", rows)
    draft = draft_spec(str(tmp_path / "arc.jsonl"))
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column", "label_values") == {
        "text_columns": ["question"], "choice_columns": ["choices"], "label_column": "answerKey", "label_values": None}
    assert any("holds 4 to 5 options per row" in r for r in draft.reasons)
    assert any("the right option by the choices' own labels" in r for r in draft.reasons)
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a] for _, o, a in QUESTIONS]


def test_openbookqa_from_a_parquet_file_and_its_datasets_form(tmp_path):
    rows = [{"id": f"7-{number}", "question_stem": question,
             "choices": {"text": options, "label": list(LETTERS)}, "answerKey": LETTERS[answer]}
            for number, (question, options, answer) in enumerate(QUESTIONS)]
    pd.DataFrame(rows).to_parquet(tmp_path / "openbookqa.parquet")
    draft = draft_spec(str(tmp_path / "openbookqa.parquet"))
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column") == {
        "text_columns": ["question_stem"], "choice_columns": ["choices"], "label_column": "answerKey"}
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a] for _, o, a in QUESTIONS]


@pytest.mark.parametrize("first", [0, 1])
def test_copa_premise_and_question_counted_from_0_or_1(tmp_path, first):
    rows = [{"premise": q, "choice1": pair[0], "choice2": pair[1], "question": "effect", "idx": n,
             "label": first + n % 2} for n, (q, o, a) in enumerate(QUESTIONS) for pair in [_two(o, a, n % 2 == 0)]]
    pd.DataFrame(rows).to_csv(tmp_path / "copa.csv", index=False)
    draft = draft_spec(str(tmp_path / "copa.csv"), fit_length=False)
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column", "label_values") == {
        "text_columns": ["premise", "question"], "choice_columns": ["choice1", "choice2"], "label_column": "label",
        "label_values": ["1", "2"] if first else None}
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a] for _, o, a in QUESTIONS]


def test_winogrande_answers_1_and_2_are_drafted_with_label_values(tmp_path):
    """Read from 0, WinoGrande's "2" is past its two options and its "1" the wrong one; the reader refuses
    them unless data.label_values names the options, and the draft names them."""
    people = [("Sarah", "Maria"), ("the teacher", "the student"), ("Kevin", "Dan"), ("the dog", "the cat"),
              ("Emma", "Olivia"), ("the baker", "the chef"), ("Jeffrey", "Logan"), ("the pilot", "the driver"),
              ("Laura", "Anna"), ("the doctor", "the nurse")]
    rows = [{"sentence": f"{a} helped {b} move because _ had a big truck.", "option1": a, "option2": b,
             "answer": str(1 + n % 2)} for n, (a, b) in enumerate(people)]
    pd.DataFrame(rows).to_csv(tmp_path / "winogrande.csv", index=False)
    draft = draft_spec(str(tmp_path / "winogrande.csv"))
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column", "label_values") == {
        "text_columns": ["sentence"], "choice_columns": ["option1", "option2"], "label_column": "answer",
        "label_values": ["1", "2"]}
    assert any("its number, counting from 1; data.label_values ['1', '2'] names the options in order" in r
               for r in draft.reasons)
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [pair[n % 2] for n, pair in enumerate(people)]


def test_social_iqa_context_question_and_lettered_answers(tmp_path):
    rows = [{"context": f"Jordan wanted to help. {question}", "question": "What should Jordan do?",
             **{f"answer{LETTERS[i]}": options[i] for i in range(3)}, "label": str(1 + a % 3)}
            for question, options, a in QUESTIONS]
    _write_jsonl(tmp_path / "siqa.jsonl", rows)
    draft = draft_spec(str(tmp_path / "siqa.jsonl"))
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column", "label_values") == {
        "text_columns": ["context", "question"], "choice_columns": ["answerA", "answerB", "answerC"],
        "label_column": "label", "label_values": ["1", "2", "3"]}
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a % 3] for _, o, a in QUESTIONS]


def test_a_question_a_list_of_options_and_the_answers_text_in_a_csv(tmp_path, capsys, monkeypatch):
    """The generic form: a question, its options as a JSON list in a .csv cell, the answer by its text; through
    the command line, with an evaluation file."""
    monkeypatch.chdir(tmp_path)
    table = pd.DataFrame({"question": [q for q, _, _ in QUESTIONS], "options": [json.dumps(o) for _, o, _ in QUESTIONS],
                          "answer": [o[a] for _, o, a in QUESTIONS]})
    table.iloc[:8].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[8:].to_csv(tmp_path / "dev.csv", index=False)
    code, out, err = run_cli(capsys, "init", "train.csv", "--eval", "dev.csv", "--out", "spec.yaml")
    assert code == 0, err
    out = " ".join(out.split())  # as the terminal's width wrapped it
    assert "answer 'answer': the right option by its text" in out
    assert "checked: 8 training and 2 evaluation rows read as drafted" in out
    loaded = load_spec(tmp_path / "spec.yaml")
    assert loaded.model.task == "multiple-choice" and loaded.data.choice_columns == ["options"]
    assert loaded.data.text_columns == ["question"] and loaded.objectives[0].name == "accuracy"


def test_answers_naming_the_option_columns_as_a_datasets_copy_of_copa_does(tmp_path, monkeypatch):
    """super_glue's COPA keeps its label as a class whose names are the option columns', choice1 and choice2;
    from Python the Dataset is drafted by those names, and the draft reads it."""
    datasets = pytest.importorskip("datasets")
    from autopeft.api import resolve

    monkeypatch.chdir(tmp_path)  # the passed rows are written under the working directory's runs/
    features = datasets.Features({"premise": datasets.Value("string"), "choice1": datasets.Value("string"),
                                  "choice2": datasets.Value("string"), "question": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["choice1", "choice2"])})
    pairs = [_two(o, a, n % 2 == 0) for n, (_, o, a) in enumerate(QUESTIONS)]
    dataset = datasets.Dataset.from_dict(
        {"premise": [q for q, _, _ in QUESTIONS], "choice1": [p[0] for p in pairs], "choice2": [p[1] for p in pairs],
         "question": ["effect"] * len(QUESTIONS), "label": [n % 2 for n in range(len(QUESTIONS))]},
        features=features)
    draft = draft_spec(dataset, fit_length=False)
    assert _drafted(draft.spec, "choice_columns", "label_column", "label_values") == {
        "choice_columns": ["choice1", "choice2"], "label_column": "label", "label_values": ["choice1", "choice2"]}
    resolved, _ = resolve(draft.spec, data={"train": dataset}, name="drafted", base_dir=tmp_path)
    data = load_task_data(resolved.data, resolved.model, resolved.seed)
    assert data.task == "multiple-choice" and len(data.train) + len(data.eval) == 10


def test_answers_in_a_fixed_wording_are_named_in_label_values(tmp_path):
    rows = [{"question": q, "choices": o, "answer": f"Option {a + 1}"} for q, o, a in QUESTIONS]
    _write_jsonl(tmp_path / "worded.jsonl", rows)
    draft = draft_spec(str(tmp_path / "worded.jsonl"), fit_length=False)
    assert draft.spec["data"]["label_values"] == ["Option 1", "Option 2", "Option 3", "Option 4"]
    _reads_as_drafted(tmp_path, draft.spec, 10)
    assert _right_options(tmp_path) == [o[a] for _, o, a in QUESTIONS]


def test_options_and_an_answer_without_a_question_are_refused_naming_the_fix(tmp_path):
    from autopeft.errors import UserError

    rows = [{"sol1": o[0], "sol2": o[1], "label": a % 2} for _, o, a in QUESTIONS]
    _write_jsonl(tmp_path / "no-question.jsonl", rows)
    with pytest.raises(UserError, match=r"^train: columns 'sol1', 'sol2' hold each row's options and 'label' the "
                                        r"right one, but no column holds the question"):
        draft_spec(str(tmp_path / "no-question.jsonl"), fit_length=False)


def _unchanged(monkeypatch, rows: str) -> str:
    """The draft (or the refusal) is the one drafted without multiple-choice recognition; its task, or the
    refusal's words."""
    from autopeft.errors import UserError

    def drafted() -> tuple[dict, list[str]] | str:
        try:
            draft = draft_spec(rows, fit_length=False)
        except UserError as refused:
            return str(refused)
        return draft.spec, draft.reasons

    now = drafted()
    with monkeypatch.context() as patched:
        patched.setattr(draft_module, "choice_form", lambda frame, reasons: None)
        assert drafted() == now
    return now if isinstance(now, str) else now[0]["model"]["task"]


def test_other_tables_are_drafted_as_before(tmp_path, monkeypatch):
    """A pair of texts beside a label, numbered features, words beside a sentence's label, a list of topics and
    numbered options beside a label naming none of them are not read as options."""
    texts = [q for q, _, _ in QUESTIONS]
    options = [o for _, o, _ in QUESTIONS]
    tables = {
        "mrpc.csv": pd.DataFrame({"sentence1": texts, "sentence2": [o[0] for o in options], "label": [0, 1] * 5}),
        "features.csv": pd.DataFrame({"text": texts, "x1": range(10), "x2": range(10, 20), "label": [0, 1] * 5}),
        "tags.csv": pd.DataFrame({"review": texts, "tag1": ["home", "kitchen"] * 5, "tag2": ["tools", "food"] * 5,
                                  "label": [0, 1] * 5}),
        "nli.csv": pd.DataFrame({"premise": texts, "hypothesis": [o[1] for o in options],
                                 "label": ["entailment", "neutral"] * 5}),
        "sentiment.jsonl": pd.DataFrame({"tokens": [t.split() for t in texts], "label": [0, 1] * 5}),
        "topics.jsonl": pd.DataFrame({"text": texts, "labels": [["home"], ["home", "food"]] * 5}),
        "sentiment-of-options.csv": pd.DataFrame({"review": texts, "option1": [o[0] for o in options],
                                                  "option2": [o[1] for o in options],
                                                  "sentiment": ["positive", "negative"] * 5}),
    }
    for name, table in tables.items():
        path = tmp_path / name
        if name.endswith(".csv"):
            table.to_csv(path, index=False)
        else:
            _write_jsonl(path, table.to_dict("records"))
        assert _unchanged(monkeypatch, str(path)) != "multiple-choice", name


def test_lettered_columns_and_an_article_with_its_question(tmp_path):
    """MMLU's .csv (question, A, B, C, D, answer letter) and RACE's article, question, options and answer."""
    pd.DataFrame([{"question": q, **dict(zip(LETTERS, o)), "answer": LETTERS[a]} for q, o, a in QUESTIONS]).to_csv(
        tmp_path / "mmlu.csv", index=False)
    draft = draft_spec(str(tmp_path / "mmlu.csv"), fit_length=False)
    assert _drafted(draft.spec, "text_columns", "choice_columns", "label_column") == {
        "text_columns": ["question"], "choice_columns": list(LETTERS), "label_column": "answer"}
    assert any("the right option by a letter, A for the first" in r for r in draft.reasons)
    _reads_as_drafted(tmp_path, draft.spec, 10)
    rows = [{"example_id": f"high{n}.txt", "article": f"Notes on home repairs, part {n}.", "question": q,
             "options": o, "answer": LETTERS[a]} for n, (q, o, a) in enumerate(QUESTIONS)]
    _write_jsonl(tmp_path / "race.jsonl", rows)
    draft = draft_spec(str(tmp_path / "race.jsonl"), fit_length=False)
    assert draft.spec["data"]["text_columns"] == ["article", "question"]
    _reads_as_drafted(tmp_path, draft.spec, 10)


def test_positions_that_are_never_0_are_said_to_maybe_count_from_1(tmp_path):
    """Too few rows reach the last option to tell: drafted from 0, as the reader reads them, and said."""
    rows = [{"question": q, "choices": o, "answer": 1 + n % 2} for n, (q, o, _) in enumerate(QUESTIONS)]
    _write_jsonl(tmp_path / "unsure.jsonl", rows)
    draft = draft_spec(str(tmp_path / "unsure.jsonl"), fit_length=False)
    assert "label_values" not in draft.spec["data"]
    assert any("by its position from 0 (none is 0: if they count the options from 1, set data.label_values: "
               "['1', '2', '3', '4'])" in r for r in draft.reasons)


def test_answers_by_texts_that_read_as_positions_are_refused_naming_the_fix(tmp_path):
    """The reader takes an answer "8" for the option at position 8, not the option "8": no spec reads such
    answers right, so the draft says how to write them."""
    from autopeft.errors import UserError

    rows = [{"question": f"What is {n} plus {n}?", "choices": [str(2 * n + k) for k in (-2, 0, 2, 4)],
             "answer": str(2 * n)} for n in range(3, 13)]
    _write_jsonl(tmp_path / "sums.jsonl", rows)
    with pytest.raises(UserError, match=r"^train: column 'answer' answers each row by its right option's text, and "
                                        r"some answers, such as '6', are numbers .* write each answer as its option's "
                                        r"position among column 'choices' \(from 0; or a letter"):
        draft_spec(str(tmp_path / "sums.jsonl"), fit_length=False)
