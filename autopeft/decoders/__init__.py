"""Decoders shipped as pip packages in GGUF form, converted once into a model folder that every tool reads.

A spec names one as ``model.name_or_path: python-package:autopeft.decoders.smollm2``; the module's
``get_model_path()`` returns the folder. The GGUF file is found without importing its package (whose
``__init__`` pulls in runtimes autopeft does not use), read by transformers through the ``gguf`` package
(dequantised to fp32), and saved with its tokenizer as a plain transformers folder under the cache directory
(``$AUTOPEFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/autopeft``, else ``~/.cache/autopeft``) in ``models/<name>``.
Conversion runs once per machine: a file lock serialises processes converting at the same time, the folder is
written under a temporary name and renamed into place, and ``source.json`` inside it records what it was made
from, so a new version of the package is converted again.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autopeft.errors import UserError, install_without_dependencies

SOURCE_FILE = "source.json"
# What a conversion writes besides the weights; a folder made by an earlier conversion is made again. 2: the chat
# template the GGUF metadata carries is kept with the tokenizer (transformers' GGUF reader leaves it out).
CONVERSION = 2


def cache_dir() -> Path:
    if os.environ.get("AUTOPEFT_CACHE_DIR"):
        return Path(os.environ["AUTOPEFT_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "autopeft"


@dataclass(frozen=True)
class GgufDecoder:
    """A decoder in a pip package: the package (distribution and import name), the GGUF file in it, the folder
    name in the cache, and the tokenizer settings the GGUF metadata gets wrong."""

    name: str
    distribution: str
    package: str
    gguf_file: str
    tokenizer_settings: dict[str, object] = field(default_factory=dict)

    def package_folder(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # finds the folder without running the package's __init__
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"the decoder {self.name} needs the pip package {self.distribution}: "
                            f"{install_without_dependencies(self.distribution)}")
        folder = Path(next(iter(spec.submodule_search_locations)))
        if not (folder / self.gguf_file).is_file():
            raise UserError(f"package {self.distribution} has no {self.gguf_file} in {folder}")
        return folder

    def source(self) -> dict[str, object]:
        gguf = self.package_folder() / self.gguf_file
        return {"distribution": self.distribution, "version": importlib.metadata.version(self.distribution),
                "gguf_file": self.gguf_file, "gguf_bytes": gguf.stat().st_size, "conversion": CONVERSION}

    def convert(self, target: Path) -> None:
        """Write the model folder (weights, configuration, tokenizer) into ``target``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = self.package_folder()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=self.gguf_file)
        for key, value in self.tokenizer_settings.items():
            setattr(tokenizer, key, value)
        if tokenizer.chat_template is None:
            tokenizer.chat_template = gguf_chat_template(folder / self.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=self.gguf_file)
        model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)

    def model_folder(self, convert: Callable[[Path], None] | None = None) -> Path:
        """The converted folder, converting first if it is missing or was made from another package version."""
        from filelock import FileLock

        source = self.source()
        models = cache_dir() / "models"
        final = models / self.name
        if _made_from(final) == source:
            return final
        models.mkdir(parents=True, exist_ok=True)
        with FileLock(str(models / f".{self.name}.lock")):
            if _made_from(final) == source:  # another process converted it while this one waited
                return final
            staging = Path(tempfile.mkdtemp(prefix=f".{self.name}-", dir=models))
            staging.chmod(0o755)  # mkdtemp makes it private; the cache is read by whoever runs a search
            try:
                (convert or self.convert)(staging)
                (staging / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
                if final.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{self.name}-old-", dir=models))
                    final.rename(old / self.name)
                    shutil.rmtree(old, ignore_errors=True)
                staging.rename(final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return final


def gguf_chat_template(path: Path) -> str | None:
    """The chat template in a GGUF file's metadata (``tokenizer.chat_template``), or None: an instruct model's
    own conversation format, which ``tokenizer.apply_chat_template`` needs."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("tokenizer.chat_template")
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def _made_from(folder: Path) -> dict[str, object] | None:
    try:
        return json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
