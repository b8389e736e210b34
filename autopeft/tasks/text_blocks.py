"""A decoder's plain text in blocks of at most ``data.max_length`` tokens, with nothing cut and nothing scored twice.

A text longer than the model is trained on at once is split per text, never across texts (a block does not attend
across two records, and each block keeps the record it came from). The blocks overlap as a strided sliding window
does (the way Hugging Face's perplexity guide scores a long text): a block after the first begins with the half
``max_length`` of tokens before its own, as context that is read and not scored, then scores the tokens after it.
So every token of the text but its first is scored exactly once, and each with at least half a block before it.

Blocks cut end to end (run_clm's) lose the start of each block's context: on SmolLM2-135M and math word problems
of a median 127 tokens, the untouched model's loss at max_length 128 in such blocks was 14% above its loss of the
whole texts, and 4% above it in these (bench/decoders/plain_text.py); a long text costs up to twice its tokens in
forward passes for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class TextBlock(NamedTuple):
    """Token ids of one block, the first ``context`` of which are read and not scored."""

    ids: list[int]
    context: int


def text_blocks(ids: Sequence[int], max_length: int) -> list[TextBlock]:
    """``ids`` in blocks of at most ``max_length`` tokens: the first scores every token but the text's first; each
    later block reads the ``max_length // 2`` tokens before its own and scores the rest. A text of one token has
    nothing to predict and gives no block."""
    if max_length < 2:
        raise ValueError(f"max_length {max_length}: a block needs a context token and one to predict")
    ids = list(ids)
    if len(ids) < 2:
        return []
    blocks = [TextBlock(ids[:max_length], 1)]
    keep = max_length // 2
    scored_to = min(len(ids), max_length)  # tokens before this are scored
    while scored_to < len(ids):
        start = scored_to - keep
        block = ids[start:start + max_length]
        blocks.append(TextBlock(block, keep))
        scored_to = start + len(block)
    return blocks
