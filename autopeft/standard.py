"""The standard configurations: the points papers and practitioners reach for first.

LoRA r=8 on query/value (Hu et al. 2021), a Pfeiffer adapter of size 64 (Pfeiffer et al. 2021), a prefix of 10
(Li & Liang 2021), IA3 (Liu et al. 2022), BitFit (Ben Zaken et al. 2022) and full fine-tuning, each in every layer
at its usual learning rate (the rates of the methods benchmark, bench/methods). Two parts of the product read them:
``autopeft baselines`` trains them beside a search, so "did the search beat the usual choices?" is in the data
(autopeft/baselines.py), and the known-cost sampler tries those its space can draw first (autopeft/
known_cost_sampler.py), as SMAC starts from a tool's default configuration: on a task where few points of a wide
space learn at the search's fidelity, these are the ones most likely to.
"""

from __future__ import annotations

from typing import Any

STANDARD: dict[str, dict[str, Any]] = {
    "lora-r8-qv": {"method": "lora", "lora": {"r": 8, "alpha_over_r": 2.0, "target_modules": ["query", "value"]},
                   "learning_rate": 1e-3},
    "pfeiffer-64": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 64}, "learning_rate": 1e-3},
    "prefix-10": {"method": "prefix", "prefix": {"prefix_length": 10}, "learning_rate": 3e-3},
    "ia3": {"method": "ia3", "learning_rate": 3e-3},
    "bitfit": {"method": "bitfit", "learning_rate": 1e-3},
    "full": {"method": "full", "learning_rate": 5e-5},
}
