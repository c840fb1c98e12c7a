"""Predictability of the law across runs (Figs. 2-5, 7): per-run fits, early prediction at several fractions, and
the fitted coefficients against model size.

Every analysis here records each run's value under its arm and under the pseudo-arm "all" (every run of the
spec), so a claim can say "in every run" (`metric@all`, over: every) or "on average over runs"; and under
"unit" (one value per warm-up) and "seed" (one value per seed: the mean of its units), for a claim on the mean
whose values must be independent.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .collect import record
from .fits import early_prediction, early_shares, eval_points, fit_exp_law, law_vs_linear

ALL = "all"
# Fractions of the run the law is fitted on (Fig. 5); "paper" is the paper's first 36 steps of the 36 + ~200 it
# predicts, i.e. 36/236 of the span, scaled to the run's length.
FRACTIONS = {"f10": 0.10, "paper": 36 / 236, "f20": 0.20, "f33": 1 / 3}


def _record_all(per_seed: dict, variant: str, values: dict) -> None:
    for key, val in values.items():
        record(per_seed, key, variant, val)
        record(per_seed, key, ALL, val)


def law_per_run(runs: dict, units: dict | None = None) -> dict:
    """Per run: the law's fit (R², a, b, ceiling) and its held-out RMSE against a linear fit in H, also per unit
    and per seed (_record_groups); pooled: each run's fit, for one curve per run."""
    per_seed, pooled, rows = {}, {}, []
    for variant, seeds in runs.items():
        fits = {}
        for seed, metrics in seeds.items():
            _, h, r = eval_points(metrics)
            fit = fit_exp_law(h, r)
            fits[seed] = fit.to_dict()
            values = {"fit_r2": fit.r2, "fit_a": fit.a, "fit_b": fit.b, "fit_ceiling": fit.ceiling,
                      **law_vs_linear(h, r)}
            _record_all(per_seed, variant, values)
            rows.append((variant, seed, values))
        pooled[variant] = {"run_fits": fits}
    _record_groups(per_seed, rows, units)
    return {"per_seed": per_seed, "pooled": pooled}


LAW_PER_RUN_METRICS = ("fit_r2", "fit_a", "fit_b", "fit_ceiling", "exp_vs_linear_heldout_ratio", "linear_r2",
                       "exp_h_collinearity")


UNIT = "unit"
SEED = "seed"
PSEUDO_ARMS = (ALL, UNIT, SEED)  # what a claim may name besides a spec's own arms (`metric@all`, `@unit`, `@seed`)


def _unit_key(units: dict | None, variant: str, seed):
    """The run's warm-up key (runs with one key share a base policy); without units every run is its own unit."""
    return (units or {}).get(variant, {}).get(seed, (variant, seed))


def _mean(vals: list[float]) -> float:
    return float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else math.nan


def _record_groups(per_seed: dict, rows: list, units: dict | None) -> list[int]:
    """rows: (variant, seed, {metric: value}) of every run. Each metric's mean over the runs of one warm-up goes
    under the pseudo-arm "unit"; the mean over one seed's units under "seed" (one value per seed, in seed order):
    the units of a seed share its data and sampling streams, so only seeds are independent all the way down. A
    seed that lacks a run of some arm (dropped as broken) is NaN, as a NaN run makes it: its mean would average
    other arms. Returns the runs per unit."""
    by_unit, seed_of, arms_of = {}, {}, {}
    for variant, seed, values in rows:
        key = _unit_key(units, variant, seed)
        by_unit.setdefault(key, []).append(values)
        seed_of[key] = seed
        arms_of.setdefault(seed, set()).add(variant)
    unit_means = {key: {m: _mean([v[m] for v in members]) for m in members[0]} for key, members in by_unit.items()}
    for means in unit_means.values():
        for metric, value in means.items():
            record(per_seed, metric, UNIT, value)
    every_arm = set().union(*arms_of.values()) if arms_of else set()
    for seed in sorted(arms_of):
        group = [means for key, means in unit_means.items() if seed_of[key] == seed]
        for metric in group[0]:
            value = _mean([g[metric] for g in group]) if arms_of[seed] == every_arm else math.nan
            record(per_seed, metric, SEED, value)
    return sorted(len(m) for m in by_unit.values())


def shares_per_run(runs: dict, units: dict | None = None) -> dict:
    """Share of the entropy drop and of the accuracy gain in the first third and in the first 1/12 (Fig. 2).

    units ({variant: {seed: key}}, runs with one key share a warm-up): under the pseudo-arm "unit" each metric is
    the mean over the runs of one warm-up, under "seed" the mean of a seed's units (_record_groups); without units
    every run is its own unit."""
    per_seed, rows = {}, []
    for variant, seeds in runs.items():
        for seed, metrics in seeds.items():
            third, twelfth = early_shares(metrics, 1 / 3), early_shares(metrics, 1 / 12)
            values = {
                "entropy_drop_share_first_third": third["entropy_drop_share_first_third"],
                "acc_gain_share_first_third": third["acc_gain_share_first_third"],
                "entropy_drop_share_first_twelfth": twelfth["entropy_drop_share_first_third"],
                "acc_gain_share_first_twelfth": twelfth["acc_gain_share_first_third"],
                "entropy_final_over_initial": third["entropy_final_over_initial"]}
            _record_all(per_seed, variant, values)
            rows.append((variant, seed, values))
    return {"per_seed": per_seed, "pooled": {UNIT: {"runs_per_unit": _record_groups(per_seed, rows, units)}}}


SHARES_METRICS = ("entropy_drop_share_first_third", "acc_gain_share_first_third", "entropy_drop_share_first_twelfth",
                  "acc_gain_share_first_twelfth", "entropy_final_over_initial")


def beats_both_from(law: list[float], nulls: list[list[float]], fractions: list[float]) -> float:
    """The smallest fraction from which on (at it and every larger one) the law's RMSE is below every null's;
    1.0 when the law does not beat both at the largest fraction, NaN when a value is missing."""
    rows = list(zip(law, *nulls))
    if any(not math.isfinite(v) for row in rows for v in row):
        return math.nan
    first = 1.0
    for frac, (lv, *nv) in reversed(list(zip(fractions, rows))):
        if lv >= min(nv):
            break
        first = frac
    return first


def early_curve(runs: dict, units: dict | None = None) -> dict:
    """Per run and fraction f (FRACTIONS): the law fitted on the first f of the steps predicts the later
    accuracy; its RMSE against the no-change and linear-in-step (clipped to [0, 1]) nulls on the same points
    (Fig. 5). pooled: each arm's per-run RMSE curves (and every run's under "all"), for the figure. Under the
    pseudo-arms "unit" and "seed", the means over a warm-up's runs and over a seed's units (as shares_per_run): a
    claim on the mean over runs counts one value per seed."""
    per_seed, pooled, rows = {}, {}, []
    for variant, seeds in runs.items():
        curves = {"fractions": list(FRACTIONS.values()), "law": [], "no_change": [], "linear_step": []}
        for seed, metrics in seeds.items():
            res = {tag: early_prediction(metrics, frac) for tag, frac in FRACTIONS.items()}
            law = [res[t]["early_fit_rmse_rest"] for t in FRACTIONS]
            nc = [res[t]["no_change_rmse_rest"] for t in FRACTIONS]
            ls = [res[t]["linear_step_rmse_rest"] for t in FRACTIONS]
            values = {"law_beats_both_from": beats_both_from(law, [nc, ls], list(FRACTIONS.values()))}
            for tag, lv, nv, sv in zip(FRACTIONS, law, nc, ls):
                values.update({f"law_rmse_{tag}": lv, f"law_minus_best_null_{tag}": lv - min(nv, sv)})
            _record_all(per_seed, variant, values)
            rows.append((variant, seed, values))
            for key, vals in (("law", law), ("no_change", nc), ("linear_step", ls)):
                curves[key].append(vals)
        pooled[variant] = {"early_curve": curves}
    everything = {key: [row for v in pooled.values() for row in v["early_curve"][key]]
                  for key in ("law", "no_change", "linear_step")}
    pooled[ALL] = {"early_curve": {"fractions": list(FRACTIONS.values()), **everything}}
    pooled[UNIT] = {"runs_per_unit": _record_groups(per_seed, rows, units)}
    return {"per_seed": per_seed, "pooled": pooled}


EARLY_CURVE_METRICS = ("law_beats_both_from", *(f"{kind}_{tag}" for tag in FRACTIONS
                                                 for kind in ("law_rmse", "law_minus_best_null")))


def prediction_interval(x, y, x0: float, level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares line y = c·x + d; the prediction at x0 and the half-width of the t prediction interval of
    a new observation there, and the slope."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        return math.nan, math.nan, math.nan
    res = stats.linregress(x, y)
    s = math.sqrt(np.sum((y - (res.intercept + res.slope * x)) ** 2) / (n - 2))
    sxx = float(np.sum((x - x.mean()) ** 2))
    half = stats.t.ppf(0.5 + level / 2, n - 2) * s * math.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / sxx)
    return float(res.intercept + res.slope * x0), float(half), float(res.slope)


def _size_points(runs: dict) -> list[tuple[float, float, float]]:
    """(log10 non-embedding parameters, a, b) of every run."""
    out = []
    for seeds in runs.values():
        for metrics in seeds.values():
            size = next((m["params_nonembed"] for m in metrics if "params_nonembed" in m), None)
            if size is None:
                raise ValueError("size_trend needs params_nonembed in the metrics (logged at step 0 by the trainer)")
            _, h, r = eval_points(metrics)
            fit = fit_exp_law(h, r)
            out.append((math.log10(size), fit.a, fit.b))
    return out


def size_trend(runs: dict) -> dict:
    """a and b against log10 size: a line fitted on every run of the smaller sizes predicts each run of the
    largest size (held out) with a 95% prediction interval, against predicting the smaller sizes' mean (Fig. 7).
    <a|b>_predicted_informatively = 1 when the run's value lies inside the interval AND the interval excludes
    the smaller sizes' mean (an uninformative interval, one covering the no-size-dependence prediction, scores 0)."""
    pts = np.array(_size_points(runs))
    largest = pts[:, 0].max()
    train, held = pts[pts[:, 0] < largest], pts[pts[:, 0] == largest]
    per_seed, trend = {}, {}
    for col, name in ((1, "a"), (2, "b")):
        pred, half, slope = prediction_interval(train[:, 0], train[:, col], largest)
        trend[name] = {"x": train[:, 0].tolist(), "y": train[:, col].tolist(), "held_x": held[:, 0].tolist(),
                       "held_y": held[:, col].tolist(), "pred": pred, "half": half, "slope": slope,
                       "intercept": pred - slope * largest}
        for value in held[:, col]:
            err, null = abs(value - pred), abs(value - train[:, col].mean())
            record(per_seed, f"{name}_in_interval", ALL, float(err <= half) if math.isfinite(half) else math.nan)
            # informative: inside the interval, and the interval excludes the no-size-dependence prediction (the
            # smaller sizes' mean), so an interval wide enough to cover every plausible value scores 0
            informative = err <= half < abs(pred - train[:, col].mean())
            record(per_seed, f"{name}_predicted_informatively", ALL,
                   float(informative) if math.isfinite(half) else math.nan)
            record(per_seed, f"{name}_trend_abs_error", ALL, err)
            record(per_seed, f"{name}_trend_minus_mean_abs_error", ALL, err - null)
            record(per_seed, f"{name}_interval_half_width", ALL, half)
    return {"per_seed": per_seed, "pooled": {ALL: {"size_trend": trend}}}


SIZE_TREND_METRICS = tuple(f"{n}_{k}" for n in ("a", "b") for k in ("in_interval", "predicted_informatively",
                                                                      "trend_abs_error",
                                                                      "trend_minus_mean_abs_error",
                                                                      "interval_half_width"))
