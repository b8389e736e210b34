"""A decoder's plain text in blocks of at most ``data.max_length`` tokens, with nothing cut and nothing scored twice.

A text longer than the model is trained on at once is split, as Hugging Face's ``run_clm`` splits its corpus, but
per text rather than across texts: a block never attends across two records, and each block keeps the record it
came from. Consecutive blocks overlap by one token: the last token of a block is the first of the next, its
context there and not scored again, so every token of the text but its first is predicted exactly once, and the
mean token loss over the blocks equals the text's own (save the context a block does not see).
"""

from __future__ import annotations

from collections.abc import Sequence


def text_blocks(ids: Sequence[int], max_length: int) -> list[list[int]]:
    """``ids`` split into blocks of at most ``max_length`` tokens, each beginning with the previous one's last token.
    A text of one token has nothing to predict and gives no block."""
    if max_length < 2:
        raise ValueError(f"max_length {max_length}: a block needs a context token and one to predict")
    ids = list(ids)
    step = max_length - 1
    return [ids[start:start + max_length] for start in range(0, len(ids) - 1, step)]
