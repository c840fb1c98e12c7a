"""Interval statistics over seeds, shared by analyses and the claims that judge them."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _measured(values) -> list[float]:
    return [float(x) for x in values if x is not None and not math.isnan(x)]


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and 95% t-interval of the measured values (unmeasured ones are left out; see `verdict`)."""
    v = np.asarray(_measured(values), dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half
