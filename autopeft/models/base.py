"""Loading base models and tokenizers: from a local folder, or by hub name where a hub is reachable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from autopeft.errors import UserError
from autopeft.models.pooling import apply_pooling, resolve_pooling
from autopeft.spec import ModelSpec

TASK_MODEL_CLASSES: dict[str, Any] = {
    "sequence-classification": AutoModelForSequenceClassification,
    "multi-label-classification": AutoModelForSequenceClassification,
    "sequence-regression": AutoModelForSequenceClassification,
    "token-classification": AutoModelForTokenClassification,
    # one score per (question, option) pair, the options compared by the runner (autopeft/tasks/choices.py says
    # why not transformers' *ForMultipleChoice)
    "multiple-choice": AutoModelForSequenceClassification,
    "causal-lm": AutoModelForCausalLM,
}


def _labelled_head(label_names: Sequence[str]) -> dict[str, Any]:
    return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)}}


# The task head each task's base is loaded with: from_pretrained's keyword arguments, given the label names.
# Regression has one output and problem_type "regression", so transformers' forward takes the MSE loss of the
# single logit against float labels; multi-label, an output per label and problem_type
# "multi_label_classification": the binary cross-entropy of each label's logit against a 0/1 row, and the saved
# config tells whoever loads the head to read it through a sigmoid, not a softmax.
TASK_HEADS: dict[str, Callable[[Sequence[str]], dict[str, Any]]] = {
    "sequence-classification": _labelled_head,
    "multi-label-classification": lambda label_names: {**_labelled_head(label_names),
                                                       "problem_type": "multi_label_classification"},
    "sequence-regression": lambda label_names: {"num_labels": 1, "problem_type": "regression"},
    "token-classification": _labelled_head,  # an output per tag, read at every token
    # one output, each option's score (no problem_type: the runner takes the softmax over a question's options)
    "multiple-choice": lambda label_names: {"num_labels": 1, "id2label": {0: "option_score"},
                                            "label2id": {"option_score": 0}},
    "causal-lm": lambda label_names: {},
}


def num_labels(task: str, label_names: Sequence[str]) -> int:
    """Outputs of the task head: one per label (classification, multi-label too), 1 (regression), 0 (causal-lm:
    no head)."""
    return TASK_HEADS[task](label_names).get("num_labels", 0)


def _load(what: str, loader, model: ModelSpec, **kwargs):
    try:
        return loader(model.name_or_path, revision=model.revision, trust_remote_code=model.trust_remote_code,
                      **kwargs)
    except (OSError, ValueError, TypeError) as exc:  # missing or broken files surface as any of these
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "trust_remote_code" in str(exc) and not model.trust_remote_code:
            raise UserError(f"model.trust_remote_code: {model.name_or_path!r} ships its own model code "
                            "(config.json's auto_map) that transformers does not include; set "
                            "model.trust_remote_code: true if you trust that code") from None
        raise UserError(f"model.name_or_path: cannot load the {what} of {model.name_or_path!r}: {reason}"
                        f"{_where_to_find(model.name_or_path)}") from None


def _where_to_find(name_or_path: str) -> str:
    """The fix for a name that is no local folder: with the hub switched off (as on a machine without it), a
    hub id loads only from the local cache, which transformers' own message does not say."""
    if Path(name_or_path).exists():
        return ""
    from transformers.utils.hub import is_offline_mode

    if is_offline_mode():
        return (" — the hub is switched off here (HF_HUB_OFFLINE=1) and this name is not in the local cache: name a "
                "local model folder (one that save_pretrained wrote), or run once where the hub is reachable so "
                "that the files are cached")
    return " — give a hub id this machine can reach ('organisation/model') or a local model folder"


def load_model_config(model: ModelSpec):
    return _load("configuration", AutoConfig.from_pretrained, model)


def check_reads_left_to_right(model: ModelSpec, model_config) -> None:
    """Refuse causal-lm on an encoder, before anything is created.

    causal-lm trains a model to predict each token from the tokens before it. An encoder (BERT, RoBERTa, ELECTRA,
    ...) attends to the whole text, yet transformers builds a causal-lm head on it all the same (BertLMHeadModel,
    with a warning in the log): each token is then predicted from a text that contains it, so the training loss
    falls while nothing is learned, and generation, which has no later tokens to look at, gets none of it. The
    families at risk are those transformers maps both to a masked LM (how they were trained) and to a causal LM;
    one whose config asks for the left-to-right mask (``is_decoder: true``, XLM's ``causal: true``) is a decoder
    as the user set it up, and an encoder-decoder's causal-lm head is its decoder."""
    if model.task != "causal-lm" or any(getattr(model_config, flag, False)
                                        for flag in ("is_decoder", "causal", "is_encoder_decoder")):
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = getattr(model_config, "model_type", None)
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise UserError(
            f"model.task: causal-lm needs a decoder, and {model.name_or_path!r} is a {kind} encoder, which reads the "
            f"whole text at once (trained as a causal LM it would see each token it predicts): use task "
            f"sequence-classification or sequence-regression with it, or a decoder for instruction records "
            f"(python-package:autopeft.decoders.smollm2 is shipped; a {kind} trained left to right has is_decoder: "
            f"true in its config.json)")


# Families whose learned position embeddings have no fallback past their table (a longer text fails in the
# forward pass: BERT's "The size of tensor a (741) must match the size of tensor b (512)", an index error in
# GPT-2's), and how many of the table's rows a text can use. Rotary (LLaMA, Qwen, ...) and ALiBi (BLOOM)
# positions have no table to run out of. RoBERTa's relatives count positions from after the padding index.
_POSITIONS_AFTER_PADDING = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                                      "data2vec-text", "roberta-prelayernorm", "xmod", "ibert", "mpnet"})
_LEARNED_POSITION_TYPES = frozenset({"distilbert", "opt", "mpnet"})  # no position_embedding_type to say so


def position_limit(model_config, tokenizer) -> tuple[int, str] | None:
    """The most tokens the model reads in one text, and what says so; None where nothing does."""
    limits = []
    stated = getattr(tokenizer, "model_max_length", None)
    if isinstance(stated, int) and stated < 1_000_000:  # transformers' sentinel (1e30) where the author set none
        limits.append((stated, "its tokenizer's model_max_length"))
    kind = getattr(model_config, "model_type", "")
    table = getattr(model_config, "n_positions", None)  # GPT-2 and its relatives
    if table is None and (getattr(model_config, "position_embedding_type", None) == "absolute"
                          or kind in _LEARNED_POSITION_TYPES):
        table = getattr(model_config, "max_position_embeddings", None)
        if table is not None and kind in _POSITIONS_AFTER_PADDING:
            table -= int(getattr(model_config, "pad_token_id", None) or 0) + 1
    if isinstance(table, int) and table > 0:
        limits.append((table, "its learned position embeddings"))
    return min(limits) if limits else None


def check_max_length_fits(model: ModelSpec, model_config, tokenizer, max_length: int) -> None:
    """Refuse a ``data.max_length`` the model cannot read, before anything is created: every trial with a text
    that long failed in its forward pass, and only a text that long, so a search could run for a while first."""
    limit = position_limit(model_config, tokenizer)
    if limit is not None and max_length > limit[0]:
        raise UserError(f"data.max_length: {max_length} is more than {model.name_or_path!r} reads: {limit[0]} "
                        f"tokens ({limit[1]}); set max_length: {limit[0]} or less")


def load_tokenizer(model: ModelSpec):
    return _load("tokenizer", AutoTokenizer.from_pretrained, model)


def padding_id(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-sequence token, else 0.

    GPT-2, Llama 3 and many decoders define no pad token. Their classification heads read the last token that is
    not padding, which needs the padding id in the model's config; the end-of-sequence token is the usual stand-in
    (a text to classify does not end with one, so the last real token is still the one read)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def head_padding_id(model: ModelSpec, model_config) -> int | None:
    """The padding id a classification or regression head must be told (``pad_token_id``), where its configuration
    has none; None where it has one, or for a causal LM (whose loss and generation mask padding themselves)."""
    if model.task == "causal-lm" or getattr(model_config, "pad_token_id", None) is not None:
        return None
    return padding_id(load_tokenizer(model))


def load_base_model(model: ModelSpec, label_names: Sequence[str]) -> PreTrainedModel:
    """The frozen base with its task's head (classification: sized for the labels; regression: one output),
    re-initialised per trial, reading the pooling ``model.pooling`` resolves to; ``label_names`` is ignored by the
    tasks without labels."""
    loaded = _load("weights", TASK_MODEL_CLASSES[model.task].from_pretrained, model,
                   **TASK_HEADS[model.task](label_names))
    padding = head_padding_id(model, loaded.config)
    if padding is not None:
        loaded.config.pad_token_id = padding
    return apply_pooling(loaded, resolve_pooling(model.pooling, model.name_or_path, model.task, model.revision))
