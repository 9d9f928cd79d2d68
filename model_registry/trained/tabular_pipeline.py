"""A trained tabular model's files, as training writes them and serving reads
them: the skops pipeline (loaded only if it holds no type outside
TRUSTED_TYPES), its feature matrix from JSON rows, numpy scalars as JSON values."""

import os

MODEL_FILE = "model.skops"
TRAINED_FILE = "trained.json"

# The types skops does not trust by default that our pipelines hold (their
# get_untrusted_types, checked by the tests for every estimator of
# trainers/tabular.py); a file
# holding anything else was not written by that trainer and is refused.
TRUSTED_TYPES = ["numpy.dtype", "sklearn.tree._tree.Tree"]


class UntrustedModelFile(Exception):
    pass


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def feature_matrix(features: list[dict], kinds: dict[str, str]):
    """An object array, one column per model column in `kinds` order: numbers as
    floats and missing numbers NaN, categories as strings and missing ones NaN."""
    import numpy as np

    matrix = np.empty((len(features), len(kinds)), dtype=object)
    for i, row in enumerate(features):
        for j, (column, kind) in enumerate(kinds.items()):
            value = row.get(column)
            if value is None:
                matrix[i, j] = np.nan
            elif kind == "categorical":
                matrix[i, j] = str(value)
            elif is_number(value):
                matrix[i, j] = float(value)
            else:
                raise ValueError(f"row {i}: {value!r} in numeric column {column!r} is not a number")
    return matrix


def load_pipeline(path: str):
    """The pipeline in a skops file, refused (UntrustedModelFile) if the file holds
    any type outside TRUSTED_TYPES: skops would otherwise build it on loading."""
    import skops.io

    outside = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if outside:
        raise UntrustedModelFile(f"{os.path.basename(path)} holds types a trained tabular model never has: "
                                 f"{', '.join(outside)}; it is not loaded.")
    return skops.io.load(path, trusted=TRUSTED_TYPES)


def plain(value):
    """A numpy scalar as the Python value JSON carries."""
    return value.item() if hasattr(value, "item") else value
