"""GPUs per trial come from the spec: whole or fractional (Ray packs trials that each ask for a fraction of a
GPU onto one GPU); the default is one GPU on CUDA and none on CPU."""

from __future__ import annotations

import pytest

from autopeft.search.executor import trial_gpus
from autopeft.spec import parse_spec
from tests.conftest import tiny_spec


@pytest.mark.parametrize("workers,gpus", [
    ({"device": "cpu"}, 0),
    ({"device": "cuda"}, 1),
    ({"device": "cuda", "gpus_per_trial": 0.25}, 0.25),
    ({"device": "auto", "gpus_per_trial": 0.5}, 0.5),
    ({"device": "cuda", "gpus_per_trial": 2}, 2),
    ({"device": "cuda", "gpus_per_trial": 0}, 0),
])
def test_gpus_per_trial(tmp_path, workers, gpus):
    assert trial_gpus(parse_spec(tiny_spec(tmp_path, workers=workers))) == gpus
