"""Every dashboard view, headless (Streamlit's AppTest), on the database of a real search (real MiniLM, real
SST-2 sample, a real SQLite file) that the dashboard read throughout while the search ran.

The expected numbers come from Optuna's own API and autopeft's views (``storage.trial_records``,
``pareto.pareto_front``, `autopeft export`), a different path from the dashboard's SQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from autopeft.results.pareto import pareto_front
from autopeft.store import storage
from dashboard import analysis, bundle, cache, data, figures
from tests.conftest import ROOT, run_cli, tiny_spec, write_spec

APP = str(ROOT / "dashboard" / "app.py")
NAME = "watched"


def render(view: str, **state) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.session_state["view"] = view
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


class Reader(threading.Thread):
    """Reads the way the dashboard does until stopped, several times a second (a busier reader than the page's own
    refresh), with a whole page render every few seconds; records what it saw. A render takes about a CPU-second:
    one after every few reads kept a core busy while the search it watched needed both."""

    RENDER_EVERY_S = 5.0

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.reads = 0
        self.renders = 0
        self.running_seen = 0
        self.errors: list[str] = []

    def run(self) -> None:
        next_render = 0.0
        while not self.stop.is_set():
            try:
                if NAME in [s.name for s in data.list_searches(self.url)]:
                    trials, _ = data.load_trials(self.url, NAME)
                    self.running_seen = max(self.running_seen, int((trials["state"] == "RUNNING").sum()))
                    self.reads += 1
                    if time.monotonic() >= next_render:  # a whole page render now and then, as a browser causes
                        render("Pareto front")
                        self.renders += 1
                        next_render = time.monotonic() + self.RENDER_EVERY_S
            except data.StorageUnavailable:
                pass  # the file or the study is not created yet
            except Exception as exc:  # noqa: BLE001 - every other error is a finding
                self.errors.append(repr(exc))
            time.sleep(0.2)


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A real search run by the CLI while a reader hammers its database; the dashboard then reads the result."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    spec = tiny_spec(tmp_path, budget={"trials": 5, "steps_per_trial": 15})
    url = spec["storage"]
    previous = os.environ.get("AUTOPEFT_STORAGE")
    os.environ["AUTOPEFT_STORAGE"] = url
    reader = Reader(url)
    reader.start()
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "run", str(write_spec(tmp_path, spec)),
                           "--name", NAME, "--executor", "local"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    reader.stop.set()
    reader.join(timeout=60)
    study, stored = storage.load_search(storage.open_storage(url), NAME)
    yield {"url": url, "tmp": tmp_path, "done": done, "reader": reader, "study": study, "spec": stored,
           "records": storage.trial_records(study, stored)}
    if previous is None:
        os.environ.pop("AUTOPEFT_STORAGE", None)
    else:
        os.environ["AUTOPEFT_STORAGE"] = previous


def test_reading_throughout_a_running_search_causes_no_database_error(watched):
    done, reader = watched["done"], watched["reader"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "locked" not in (done.stdout + done.stderr).lower()
    print(f"\nwhile the search ran: {reader.reads} reads, {reader.renders} page renders, "
          f"up to {reader.running_seen} trials seen running")
    assert reader.errors == []
    assert reader.reads >= 20 and reader.renders >= 2, (reader.reads, reader.renders)
    assert reader.running_seen >= 1, "the reader never overlapped a running trial"
    states = [r.state for r in watched["records"]]
    assert states.count("COMPLETE") == 5 and "FAIL" not in states, states


def test_the_dashboard_cannot_write(watched):
    engine = data.engine_for(watched["url"])
    with pytest.raises(sa.exc.OperationalError, match="readonly|read-only"):
        with engine.connect() as conn:
            conn.execute(sa.text("UPDATE studies SET study_name = 'x'"))
    path = Path(watched["url"].removeprefix("sqlite:///"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    for view in ("Searches", "Pareto front", "Progress", "Trials", "Trial", "Space", "Compare", "Pick and export"):
        render(view)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_searches_view_lists_the_search_with_its_counts(watched):
    app = render("Searches")
    table = app.dataframe[0].value
    row = table[table["search"] == NAME].iloc[0]
    assert row["state"] == "finished"
    assert row["complete"] == 5 and row["failed"] == 0 and row["running"] == 0 and row["budget"] == 5
    best = max(r.measurements["accuracy"] for r in watched["records"] if r.state == "COMPLETE")
    assert row["best"] == pytest.approx(best)


def test_pareto_view_counts_and_front_match_the_database(watched):
    app = render("Pareto front")
    shown = {m.label: m.value for m in app.metric}
    front = pareto_front(watched["records"], watched["spec"])
    assert shown["Trials"] == str(sum(not storage.is_reference(t) for t in watched["study"].get_trials()))
    assert shown["Complete"] == "5" and shown["Failed"] == "0"
    assert shown["On the front"] == str(len(front))
    assert sorted(app.dataframe[0].value["number"]) == sorted(r.number for r in front)
    assert (app.selectbox(key="front_x").value, app.selectbox(key="front_y").value) == ("trainable_params", "accuracy")
    assert len(app.get("plotly_chart")) == 1


def test_the_front_shows_the_chance_level_the_search_stored(watched):
    stored = watched["study"].user_attrs[storage.CHANCE]["metrics"]
    chance = data.chance_metrics(watched["url"], NAME)
    assert chance == stored and 0.4 < chance["accuracy"] < 0.7  # SST-2's majority label on the eval subset
    trials, spec = data.load_trials(watched["url"], NAME)
    figure = figures.pareto(trials, spec, "trainable_params", "accuracy", chance=chance)
    assert [shape.y0 for shape in figure.layout.shapes] == [chance["accuracy"]]
    assert not figures.pareto(trials, spec, "trainable_params", "peak_memory_mb", chance=chance).layout.shapes
    app = render("Pareto front")
    assert any("dotted line is chance" in c.value for c in app.caption)


def test_pareto_view_any_two_measurements(watched):
    app = render("Pareto front", front_x="peak_memory_mb", front_y="macro_f1")
    assert len(app.get("plotly_chart")) == 1


def test_progress_view_shows_hypervolume_and_worker_timeline(watched):
    app = render("Progress")
    feasible = [r for r in watched["records"] if r.state == "COMPLETE" and r.feasible]
    assert f"after {len(feasible)} trials" in app.caption[0].value
    assert len(app.get("plotly_chart")) == 3  # hypervolume vs trials, vs time; trials per worker


def test_trials_view_filters(watched):
    app = render("Trials")
    assert len(app.dataframe[0].value) == len(watched["records"])
    app.multiselect(key="filter_state").set_value(["COMPLETE"]).run()
    assert len(app.dataframe[0].value) == 5
    app.checkbox(key="filter_front").check().run()
    assert len(app.dataframe[0].value) == len(pareto_front(watched["records"], watched["spec"]))
    app.text_input(key="filter_text").input("no such configuration").run()
    assert len(app.dataframe[0].value) == 0


def test_trial_view_shows_configuration_curve_costs_and_adapter(watched):
    record = [r for r in watched["records"] if r.state == "COMPLETE"][2]
    app = render("Trial", trial_number=record.number)
    assert app.header[0].value.startswith(f"Trial {record.number} — COMPLETE")
    shown = {m.label: m.value for m in app.metric}
    assert shown["accuracy"] == f"{record.measurements['accuracy']:.4f}"
    assert shown["trainable_params"] == f"{int(record.measurements['trainable_params']):,}"
    assert record.adapter_dir in app.markdown[-1].value and record.worker in app.markdown[-1].value
    assert app.json[0].value and '"method": "lora"' in app.json[0].value
    assert len(app.get("plotly_chart")) == 1  # the loss curve


def test_a_trial_is_tried_on_new_texts_from_its_page(watched):
    """The trial page's "Try it" runs the trial's adapter on the visitor's texts, reading them as the search read
    its evaluation rows: the same labels as Search.predict, each label's probability beside them."""
    import autopeft

    record = [r for r in watched["records"] if r.state == "COMPLETE"][2]
    app = render("Trial", trial_number=record.number)
    assert app.button(key="try_run").disabled  # nothing to run yet
    texts = ["a gripping , funny and moving film", "flat , dull and far too long"]
    app.text_area(key="try_texts").input("\n".join(texts)).run()
    app.button(key="try_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    shown = app.dataframe[-1].value
    expected = autopeft.load_search(NAME, storage=watched["url"]).predict(record.number, texts, probabilities=True)
    assert list(shown["sentence"]) == texts and list(shown["prediction"]) == list(expected.idxmax(axis=1))
    assert list(shown[["0", "1"]].round(5).itertuples(index=False)) == list(
        expected[["0", "1"]].round(5).itertuples(index=False))


def test_many_labels_are_tried_as_the_likeliest_few(watched, monkeypatch):
    """Past a few labels a column each ran off the page (40 intents): the likeliest labels in one column, every
    label's probability in an expander. Here with the bar lowered, so that the watched two-label search takes that
    branch."""
    import autopeft
    from autopeft.results import predict

    monkeypatch.setattr(predict, "LABELS_AS_COLUMNS", 1)
    record = [r for r in watched["records"] if r.state == "COMPLETE"][2]
    app = render("Trial", trial_number=record.number)
    texts = ["a gripping , funny and moving film", "flat , dull and far too long"]
    app.text_area(key="try_texts").input("\n".join(texts)).run()
    app.button(key="try_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    shown, every = app.dataframe[-2].value, app.dataframe[-1].value
    expected = autopeft.load_search(NAME, storage=watched["url"]).predict(record.number, texts, probabilities=True)
    assert list(shown.columns) == ["sentence", "prediction", "most likely"]
    assert list(shown["most likely"]) == predict.likeliest_labels(expected)
    assert list(every.columns) == ["0", "1"] and app.expander[-1].label.startswith("every label's probability")


def test_space_and_compare_views_render(watched):
    app = render("Space")
    assert app.dataframe[0].value["method"].tolist() == ["lora"]
    assert app.dataframe[0].value["trials"].tolist() == [len(watched["records"])]
    app = render("Compare")
    assert app.multiselect(key="compare_searches").value == [NAME]
    assert len(app.get("plotly_chart")) == 1


def test_pick_knee_and_download_the_export(watched, capsys):
    url, spec = watched["url"], watched["spec"]
    # The watched search's 15-step trials may sit at chance, which the view leaves out unless asked.
    app = render("Pick and export", include_chance=True)
    trials, _ = data.load_trials(url, NAME)
    matched = [int(n) for n in data.noise_report(url, NAME, trials, spec)["matched_within_noise"]]
    front = trials[analysis.front(trials, spec) & ~trials["number"].isin(matched)]
    knee = analysis.knee(front, spec)
    assert app.dataframe[0].value["number"].tolist() == [knee]
    app.radio(key="pick_mode").set_value("best under a budget").run()
    assert not app.exception
    out = watched["tmp"] / "cli-export"
    code, _, err = run_cli(capsys, "export", NAME, "--out", str(out), "--storage", url)
    assert code == 0, err
    archive = zipfile.ZipFile(io.BytesIO(bundle.export_zip(url, NAME)))
    cli_files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(n.removeprefix(f"{NAME}/") for n in archive.namelist()) == cli_files
    assert archive.read(f"{NAME}/summary.csv") == (out / "summary.csv").read_bytes()
    picked = zipfile.ZipFile(io.BytesIO(bundle.export_zip(url, NAME, [knee])))
    folders = {n.split("/")[1] for n in picked.namelist() if n.count("/") > 1}
    assert folders == {f"trial-{knee:04d}"}
    rows = list(csv.DictReader(io.StringIO(picked.read(f"{NAME}/summary.csv").decode())))
    assert [int(r["trial"]) for r in rows] == [knee]


def test_missing_database_and_empty_database_are_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_STORAGE", f"sqlite:///{tmp_path / 'absent.db'}")
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert "no database file" in app.error[0].value
    assert not (tmp_path / "absent.db").exists()  # opening read-only never creates the file
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    storage.open_storage(empty)  # what a search does first: Optuna's tables, no study yet
    monkeypatch.setenv("AUTOPEFT_STORAGE", empty)
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception and "No searches" in app.info[0].value
    # A study that is not an autopeft search (no stored spec) is listed, and explained when opened.
    optuna.create_study(study_name="plain-optuna", storage=storage.open_storage(empty))
    cache.searches.clear()  # rather than waiting out the two-second cache
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception and "no readable autopeft spec" in app.error[0].value


def test_pick_by_hand_exports_only_the_picked_front_trials(watched):
    front = sorted(r.number for r in pareto_front(watched["records"], watched["spec"]))
    app = render("Pick and export", pick_mode="by hand")
    assert app.multiselect(key="hand_picked").value == front[:1]
    app.multiselect(key="hand_picked").set_value(front).run()
    assert not app.exception
    assert sorted(app.dataframe[0].value["number"]) == front
    assert "Download export" in app.get("download_button")[0].proto.label


def test_the_dashboard_loads_without_the_training_libraries():
    """Its views read the database; only the export download needs torch, transformers and peft, and imports them
    when asked, so the dashboard starts without their seconds of import."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, dashboard.app, dashboard.views.pick; "
         "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_every_built_in_method_has_its_own_colour():
    """A search over the whole registry draws each method distinctly: no two share a colour, and none takes the
    red of infeasible points and failures (the palette once had nine colours, so a full-space search repeated
    them)."""
    from autopeft.methods.registry import available_methods

    methods = available_methods()
    colours = figures.method_colours(methods)
    assert len(methods) >= 20 and len(set(colours.values())) == len(methods)
    assert "#D62728" not in {c.upper() for c in colours.values()}
