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


def p_value(values, threshold: float) -> float:
    """Two-sided p of the t-test of mean = threshold over the measured values: the interval of `mean_ci` excludes
    the threshold exactly when p < 0.05. NaN with fewer than 2 measured values; 0 when they are all equal and
    differ from the threshold (1 when they equal it)."""
    v = np.asarray(_measured(values), dtype=float)
    if len(v) < 2:
        return math.nan
    sd = v.std(ddof=1)
    if sd == 0:
        return 0.0 if v[0] != threshold else 1.0
    t = (v.mean() - threshold) / (sd / math.sqrt(len(v)))
    return float(2 * stats.t.sf(abs(t), len(v) - 1))
