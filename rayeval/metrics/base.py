"""Compatibility name of :mod:`rayeval.core.state` (grouped states, results) and the direction
constants of :mod:`rayeval.core.contract`; new code imports from ``rayeval.core``."""

from rayeval.core.state import (HIGHER, LOWER, NEUTRAL, Batch, GroupIndex, Key,  # noqa: F401
                                KeyedArrays, MetricResult, ResultColumns, StateMismatchError,
                                common_rows, grouped_sum, merge_keyed, results_by_key,
                                safe_div, union_keys)
