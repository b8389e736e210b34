"""A search the wall clock stops before its budget says so in its closing summary, with how to go on."""

from __future__ import annotations

from tests.conftest import ONE_AT_A_TIME, run_cli, tiny_spec, write_spec


def test_the_closing_summary_says_the_wall_clock_stopped_the_search(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    spec = tiny_spec(tmp_path, budget={"trials": 5, "steps_per_trial": 5, "wall_clock_minutes": 0.01},
                     workers=ONE_AT_A_TIME)
    code, out, _ = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--name", "clocked",
                           "--executor", "local")
    text = " ".join(out.split())
    assert code == 0
    # 0.6 s of wall clock: the first trial starts, none after it.
    assert "The wall clock (budget.wall_clock_minutes: 0.01) stopped this search after 1 of its 5 trials." in text
    assert "Go on with: autopeft search resume clocked" in text
    code, out, _ = run_cli(capsys, "search", "list", "--storage", spec["storage"], "--json")
    assert '"spent": 1' in out
