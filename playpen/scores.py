"""Numbers read from clemcore's score files and results tables."""
from __future__ import annotations

import math
import numbers


def score_number(value) -> float | None:
    """``value`` as a float; None for a missing, non-numeric, boolean or NaN value (clemcore writes NaN
    for a score an aborted episode does not have)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    return float(value)
