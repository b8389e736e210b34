"""Decoders shipped as pip packages in GGUF form, converted once into a model folder that every tool reads.

A spec names one as ``model.name_or_path: python-package:autopeft.decoders.smollm2``; the module's
``get_model_path()`` returns the folder. The GGUF file is found without importing its package (whose
``__init__`` pulls in runtimes autopeft does not use), read by transformers through the ``gguf`` package
(dequantised to fp32), and saved with its tokenizer as a plain transformers folder under the cache directory
(``$AUTOPEFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/autopeft``, else ``~/.cache/autopeft``) in ``models/<name>``.
Conversion runs once per machine: a file lock serialises processes converting at the same time, the folder is
written under a temporary name and renamed into place, and ``source.json`` inside it records what it was made
from, so a new version of the package is converted again.

A user's own GGUF file is read the same way: ``model.name_or_path: path/to/model.gguf`` is converted once into
``models/<file stem>-<hash of its path>`` (again when the file changes), and the spec then names that folder, which
every worker, the export and stock peft read as any model folder.
"""

from __future__ import annotations

import hashlib
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
        convert_gguf(self.package_folder() / self.gguf_file, target, self.tokenizer_settings)

    def model_folder(self, convert: Callable[[Path], None] | None = None) -> Path:
        """The converted folder, converting first if it is missing or was made from another package version."""
        return converted_folder(self.name, self.source(), convert or self.convert)


def convert_gguf(path: Path, target: Path, tokenizer_settings: dict[str, object] | None = None) -> None:
    """Write the GGUF file's model as a transformers folder (weights dequantised to fp32, configuration,
    tokenizer with its chat template) into ``target``. ``tokenizer_settings``: what a known file's metadata gets
    wrong; without them, :func:`settle_special_tokens` mends the one slip seen in such files."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = gguf_chat_template(path)
    if tokenizer_settings is None:
        settle_special_tokens(tokenizer)
    for key, value in (tokenizer_settings or {}).items():
        setattr(tokenizer, key, value)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


# The tokens chat templates end a turn with (ChatML, Llama 3, Gemma, Phi-3, GPT-style, SentencePiece), in the order
# they are looked for in a template
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")


def settle_special_tokens(tokenizer) -> None:
    """A GGUF file's end-of-sequence token as the model ends a reply, and a padding token.

    Some converters write a ChatML model's *start* of turn (``<|im_start|>``) as both its beginning- and
    end-of-sequence token (SmolLM2's GGUF does): generation would then stop at the next turn's start, never at the
    end of the reply, and every text would begin with a turn marker. Where the end-of-sequence token is a start
    token and the chat template ends its turns with a token of its vocabulary, that token ends a sequence, and the
    start token is no longer put in front of texts (the template writes it where a turn begins). Padding, where the
    file names none, is the end-of-sequence token (batches mask it)."""
    eos, template = tokenizer.eos_token, tokenizer.chat_template or ""
    if eos and "start" in eos.lower():
        vocabulary = tokenizer.get_vocab()
        end = next((token for token in END_OF_TURN_TOKENS if token in template and token in vocabulary), None)
        if end is not None:
            if tokenizer.bos_token == eos:
                tokenizer.add_bos_token = False
            tokenizer.eos_token = end
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def gguf_model_folder(path: Path) -> Path:
    """A user's GGUF file (``model.name_or_path: model.gguf``) as a model folder in the cache: converted on first
    use, and again when the file changes (its size or modification time)."""
    path = path.absolute()  # the name the user gave it (a link is read through, but keeps its own name)
    stat = path.stat()
    name = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    source = {"gguf_path": str(path), "gguf_bytes": stat.st_size, "gguf_mtime_ns": stat.st_mtime_ns,
              "conversion": CONVERSION}

    def convert(target: Path) -> None:
        try:
            convert_gguf(path, target)
        except ImportError as exc:  # transformers reads GGUF through the gguf package
            raise UserError(f"reading {path.name} needs the gguf package: pip install gguf ({exc})") from None
        except Exception as exc:  # an unsupported architecture, a damaged file: the user's to know, not a traceback
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot convert the GGUF file {path} into a model folder: {reason}") from None

    return converted_folder(name, source, convert)


def converted_folder(name: str, source: dict[str, object], convert: Callable[[Path], None]) -> Path:
    """``models/<name>`` in the cache, made by ``convert`` unless it was made from ``source`` already; one process
    converts while others wait, into a staging folder renamed into place."""
    from filelock import FileLock

    models = cache_dir() / "models"
    final = models / name
    if _made_from(final) == source:
        return final
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{name}.lock")):
        if _made_from(final) == source:  # another process converted it while this one waited
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=models))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is read by whoever runs a search
        try:
            convert(staging)
            (staging / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
            if final.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=models))
                final.rename(old / name)
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
