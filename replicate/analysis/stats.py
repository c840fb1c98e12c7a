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


def two_way(table) -> dict:
    """The arm effect in an arms x seeds table of one value per run (two-way layout, one run per cell), against the
    residual noise that remains once each seed's and each arm's mean is taken out:

        r(a, s) = x(a, s) - mean_s x(a, ·) - mean_a x(·, s) + mean x,  MS_res = sum r² / ((A - 1)(S - 1)),
        MS_arm = S · sum_a (mean x(a, ·) - mean x)² / (A - 1),  F = MS_arm / MS_res on (A - 1, (A - 1)(S - 1)).

    A shift shared by every arm of a seed (its own warm-up) drops out of r, where a between-seed SD of one arm keeps
    it; an arm x seed interaction stays in r (one run per cell cannot tell it from noise). No F (NaN) for a table
    with an unmeasured cell or with no spread at all; F = inf where only the arms differ. `residual_ss`: each arm's
    sum of r², to see which arm the residual comes from."""
    x = np.asarray(table, dtype=float)
    arms, seeds = x.shape
    df_arm, df_res = arms - 1, (arms - 1) * (seeds - 1)
    if np.isnan(x).any() or arms < 2 or seeds < 2:
        return {"f": math.nan, "p": math.nan, "df": [df_arm, df_res], "residual_sd": math.nan,
                "arm_means": [math.nan] * arms, "residual_ss": [math.nan] * arms}
    arm_means, seed_means, grand = x.mean(1), x.mean(0), x.mean()
    residual = x - arm_means[:, None] - seed_means[None, :] + grand
    residual_ss = (residual ** 2).sum(1)
    ms_arm, ms_res = seeds * float(((arm_means - grand) ** 2).sum()) / df_arm, float(residual_ss.sum()) / df_res
    f = ms_arm / ms_res if ms_res > 0 else (math.inf if ms_arm > 0 else math.nan)
    return {"f": f, "p": float(stats.f.sf(f, df_arm, df_res)), "df": [df_arm, df_res],
            "residual_sd": math.sqrt(ms_res), "arm_means": arm_means.tolist(), "residual_ss": residual_ss.tolist()}
