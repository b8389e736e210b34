"""Property tests of the spec loader: whatever text or structure a user writes, loading either succeeds or raises
SpecError (one line per problem, each naming its field) — never another exception, never a traceback."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopeft.errors import SpecError
from autopeft.spec import SearchSpec, load_spec, parse_spec
from tests.conftest import tiny_spec

# 200 examples per property in the suite (seconds); AUTOPEFT_FUZZ_EXAMPLES=5000 for a long run.
EXAMPLES = int(os.environ.get("AUTOPEFT_FUZZ_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values YAML can produce: scalars of every kind (including NaN, huge ints, dates as text), lists and mappings.
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["python-package:", "python-package:..", "python-package:os.path", "~", "/",
                                     "sqlite:///", "../../etc/passwd", "tpe", "lora", "cuda", "1e400"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=12), st.integers()), inner, max_size=4)),
    max_leaves=12)

VALID = tiny_spec(Path(tempfile.gettempdir()))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside the valid spec, so a mutation can hit any field at any depth."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


PATHS = _paths(VALID)


def _assert_spec_or_spec_error(load) -> None:
    try:
        result = load()
    except SpecError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert "\n" not in str(exc), str(exc)  # the CLI prints it as one line
        return
    assert isinstance(result, SearchSpec)


@SETTINGS
@given(raw=values)
def test_any_structure_gives_a_spec_or_a_spec_error(raw):
    _assert_spec_or_spec_error(lambda: parse_spec(raw, "fuzz.yaml"))


@SETTINGS
@given(path=st.sampled_from(PATHS), value=values, delete=st.booleans())
def test_one_field_changed_anywhere_gives_a_spec_or_a_spec_error(tmp_path, path, value, delete):
    spec = copy.deepcopy(VALID)
    node = spec
    for part in path[:-1]:
        node = node[part]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    file = tmp_path / "fuzz.yaml"
    file.write_text(yaml.safe_dump(spec, allow_unicode=True))
    _assert_spec_or_spec_error(lambda: load_spec(file))


@SETTINGS
@given(text=st.one_of(st.text(max_size=200),
                      st.text(alphabet=st.sampled_from(list("{}[]:-,&*!|>'\"%@`#?\n\t abc019")), max_size=120)))
def test_any_text_gives_a_spec_or_a_spec_error(tmp_path, text):
    file = tmp_path / "fuzz.yaml"
    file.write_text(text, encoding="utf-8", errors="surrogatepass")
    _assert_spec_or_spec_error(lambda: load_spec(file))


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_give_a_spec_or_a_spec_error(tmp_path, data):
    file = tmp_path / "fuzz.yaml"
    file.write_bytes(data)
    _assert_spec_or_spec_error(lambda: load_spec(file))
