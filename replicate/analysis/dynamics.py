"""Entropy dynamics: the lemma checks and the covariance term during training."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from scipy import stats

from .collect import record
from replicate.algorithms.lemma import UPDATES, summarize

SCATTER_ETA = 1e-2


def lemma_exact(runs: dict) -> dict:
    per_seed, pooled = {}, {}
    for variant, seeds in runs.items():
        for seed, rows in seeds.items():
            summary = summarize(rows, SCATTER_ETA)
            for kind in UPDATES:
                for key in ("abs_error_slope", "rel_error_slope", "corr"):
                    record(per_seed, f"{key}_{kind}", variant, summary[kind][key])
            pooled.setdefault(variant, {"lemma": summary})
    return {"per_seed": per_seed, "pooled": pooled}


def lemma_lm(runs: dict) -> dict:
    """Per seed, over the response positions of the gradient step: the measured ΔH against the theorem's
    prediction from log-probs and advantages alone (theorem_corr, theorem_slope: the effective step size,
    theorem_sign_agreement), the same correlation for the random step of equal norm (theorem_corr_random) and
    the gap between them; and the Taylor check from the measured logit change (lm_corr, lm_slope,
    lm_median_rel_error)."""
    per_seed = {}
    for variant, seeds in runs.items():
        for rows in seeds.values():
            def cols(direction, *keys):
                pos = [r for r in rows if r.get("kind") == "position" and r.get("direction") == direction]
                return [np.array([r[k] for r in pos]) for k in keys]
            exact, theory, pred = cols("gradient", "exact", "theorem", "predicted")
            theorem, taylor = _linregress(theory, exact), _linregress(pred, exact)
            random_corr = _corr(*cols("random", "theorem", "exact"), "pearson")
            for key, val in (("theorem_corr", theorem.rvalue), ("theorem_slope", theorem.slope),
                             ("theorem_sign_agreement", float(np.mean(np.sign(exact) == np.sign(theory)))),
                             ("theorem_corr_random", random_corr), ("theorem_corr_minus_random", theorem.rvalue - random_corr),
                             ("lm_corr", taylor.rvalue), ("lm_slope", taylor.slope),
                             ("lm_median_rel_error", float(np.median(np.abs(exact - pred) / np.maximum(np.abs(pred), 1e-12))))):
                record(per_seed, key, variant, float(val))
    return {"per_seed": per_seed, "pooled": {}}


def _undefined(x, y) -> bool:
    """Fewer than 3 points, or x or y constant: no correlation or regression line is defined (e.g. a batch whose
    advantages are all 0, every group all right or all wrong, so the step moves nothing)."""
    return len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0


def _linregress(x, y):
    """scipy's linregress, or NaN slope and r where it is undefined (_undefined)."""
    if _undefined(x, y):
        return SimpleNamespace(slope=math.nan, rvalue=math.nan)
    return stats.linregress(x, y)


def _corr(x, y, kind):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if _undefined(x, y):
        return math.nan
    return float((stats.pearsonr if kind == "pearson" else stats.spearmanr)(x, y)[0])


def cov_dynamics(runs: dict) -> dict:
    """Per run: share of steps with positive covariance; Pearson and Spearman correlation of the covariance with
    -ΔH (ΔH measured on fixed probe prompts, and on the step's own rollout states), and Pearson of their first
    differences; mean covariance by bucket."""
    per_seed = {}
    for variant, seeds in runs.items():
        for rows in seeds.values():
            cov = [r["cov"] for r in rows]
            record(per_seed, "cov_positive_share", variant, float(np.mean(np.array(cov) > 0)))
            for src, key in (("probe", "probe_delta_entropy"), ("rollout", "delta_entropy")):
                pairs = [(r["cov"], -r[key]) for r in rows if key in r]
                c, d = zip(*pairs) if pairs else ((), ())
                record(per_seed, f"pearson_cov_neg_dH_{src}", variant, _corr(c, d, "pearson"))
                record(per_seed, f"spearman_cov_neg_dH_{src}", variant, _corr(c, d, "spearman"))
                # step-to-step changes: two series that merely both decay correlate in levels, not here
                record(per_seed, f"pearson_diff_cov_neg_dH_{src}", variant, _corr(np.diff(c), np.diff(d), "pearson"))
            both = [(r["cov_easy"], r["cov_hard"]) for r in rows if "cov_easy" in r and "cov_hard" in r]
            record(per_seed, "cov_easy_minus_hard", variant, float(np.mean([e - h for e, h in both])) if both else math.nan)
            for bucket in ("cov_easy", "cov_medium", "cov_hard"):
                vals = [r[bucket] for r in rows if bucket in r]
                record(per_seed, f"mean_{bucket}", variant, float(np.mean(vals)) if vals else math.nan)
    return {"per_seed": per_seed, "pooled": {}}
