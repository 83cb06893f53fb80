"""One batch column as a spec reads it, by the role the spec declares (no Ray): the joined
label for the ground-truth roles, float64 for numeric roles (a non-numeric column is an
InputError naming it), an (n, K) matrix for ``scores``, the values as they are for classes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rayeval.engine.labels import to_numpy
from rayeval.io.readers import InputError


def _batch_column(table: pa.Table, label_cols: dict, label: str, column, role: str
                  ) -> np.ndarray:
    """One batch key of a spec, by its role (``spec.inputs()``): the joined label column for the
    ground-truth roles, else the table's column; numeric roles as float64, ``scores`` as an
    (n, K) float64 matrix (one column per name), class roles as they are."""
    if role == "scores":
        return np.stack([_float(table, c) for c in column], 1)
    if role in ("class_label", "numeric_target"):
        values = label_cols[label]
        return values.astype(np.float64) if role.startswith("numeric") else values
    if role in ("score", "numeric_prediction", "numeric_target"):
        return _float(table, column)
    return to_numpy(table[column])


def _float(table: pa.Table, name: str) -> np.ndarray:
    """Column ``name`` as float64 (null -> NaN); a non-numeric column raises InputError."""
    col = table[name]
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_null(t)):
        raise InputError(f"Column {name!r} has type {t}; expected a numeric column "
                         f"({table.num_rows} rows in this block)")
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False)
