"""Partial fine-tuning (Lee et al., 2019, "What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning"):
every weight of the chosen layers trains, with the task head; the embeddings and the other layers stay frozen.

It sits between the adapter family and full fine-tuning. Where adapters need more steps than a search can give a
trial (QNLI at 250 steps: the best adapter found stays under full fine-tuning), training the top layers outright
reaches full fine-tuning's quality with a fraction of its parameters (a BERT-style model keeps about half of its
weights in the embeddings, which no layer choice trains), and the frozen lower layers are cached by the worker.
"""

from __future__ import annotations

from autopeft.methods.base import LayerTensors
from autopeft.methods.registry import register


@register
class PartialFineTuning(LayerTensors):
    name = "partial"
    options = ()
    help = "every weight of the chosen layers trains (and the task head); embeddings and other layers stay frozen"

    def picks(self, name: str) -> bool:
        return True
