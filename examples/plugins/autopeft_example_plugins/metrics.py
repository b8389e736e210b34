"""A metric autopeft does not have: the recall of the worst-served class.

A classifier that is right on 95% of a skewed eval set can still miss most of the rare class; searching on the
worst class's recall (or bounding it with a constraint) keeps such configurations off the front. The entry point
names :data:`WORST_CLASS_RECALL`; the same function can be registered at run time instead::

    from autopeft.plugins import register_metric
    register_metric("worst_class_recall", worst_class_recall, tasks="sequence-classification")
"""

from __future__ import annotations

import numpy as np

from autopeft.plugins import MetricDefinition


def worst_class_recall(predictions: np.ndarray, references: np.ndarray) -> float:
    """The lowest per-class recall: for each gold label (the label text, as in the data), the share of its
    examples predicted as it."""
    labels = np.unique(references)
    return float(min(np.mean(predictions[references == label] == label) for label in labels))


WORST_CLASS_RECALL = MetricDefinition(worst_class_recall, direction="maximize", tasks=("sequence-classification",),
                                      help="recall of the class the model serves worst")
