"""Rows of a `datasets.Dataset` as a DataFrame, with its classes by name.

A `datasets` class column (``ClassLabel``) stores integers and keeps the names in its features, which
``to_pandas`` drops: a search on GLUE's SST-2 would then call its classes '0' and '1' in the front's chance line
("always '1'"), in the dashboard and in the exported model's ``id2label``. Writing each class as its name, and
keeping the dataset's order of names as the head's order, gives every surface the names the dataset declares and
the head the indices the dataset uses (0 is 'negative' in both).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

# datasets writes -1 in a class column for a row without a label (the test splits of GLUE and SuperGLUE)
_NO_LABEL = -1


def dataset_frame(rows: Any) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """``rows`` (a ``datasets.Dataset``) as a DataFrame with each class column written as its class names, an
    unlabelled row (-1) as an empty cell, which the data checks name with its row; and per class column, its
    names in the dataset's order."""
    import datasets

    frame = rows.to_pandas()
    classes: dict[str, list[str]] = {}
    for column, feature in rows.features.items():
        if isinstance(feature, datasets.ClassLabel) and column in frame:
            names = [str(name) for name in feature.names]
            codes = frame[column].to_numpy()
            if ((codes < _NO_LABEL) | (codes >= len(names))).any():  # not a class: leave the numbers as they are
                continue
            frame[column] = pd.Categorical.from_codes(codes, categories=names).astype(object)
            classes[column] = names
        elif isinstance(getattr(feature, "feature", None), datasets.ClassLabel) and column in frame:
            # a list of classes per row (GoEmotions' labels: multi-label-classification), each written by name
            names = [str(name) for name in feature.feature.names]
            frame[column] = [[names[int(code)] for code in codes if 0 <= int(code) < len(names)]
                             for codes in frame[column]]
            classes[column] = names
    return frame, classes
