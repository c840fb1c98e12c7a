"""Analyses by name: each maps the metrics of a spec's runs to per-seed values and pooled results.

An analysis takes {variant: {seed: metrics rows}} and returns {"per_seed": {metric: {variant: [values]}},
"pooled": {...}}. Analyses read the run store; they never train.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from replicate.algorithms.lemma import UPDATES
from replicate.registry import Registry

from .collect import record
from .control import COV_TOP_METRICS, METRICS as CONTROL_METRICS, arm_compare, cov_top, knob_trend, selection_share
from .dast import METRICS as DAST_METRICS, dast
from .dynamics import cov_dynamics, lemma_exact, lemma_lm
from .fits import ExpLawFit, early_prediction, early_shares, eval_points, fit_exp_law, law_vs_linear
from .predict import (ALL, EARLY_CURVE_METRICS, LAW_PER_RUN_METRICS, PSEUDO_ARMS, SHARES_METRICS,
                      SIZE_TREND_METRICS, early_curve, law_per_run, shares_per_run, size_trend)
from .sharpening import METRICS as SHARPENING_METRICS, sharpening


def exp_law(runs: dict) -> dict:
    """Per run: the law's fit (R², a, b, ceiling b - a), against a linear fit on held-out points, and its
    prediction of the later two thirds from the first third against the no-change and linear-in-step nulls (the
    line clipped to [0, 1])."""
    per_seed, pooled = {}, {}
    for variant, seeds in runs.items():
        all_h, all_r = [], []
        for metrics in seeds.values():
            _, h, r = eval_points(metrics)
            all_h += list(h)
            all_r += list(r)
            fit = fit_exp_law(h, r)
            early = early_prediction(metrics)
            values = {"fit_r2": fit.r2, "fit_a": fit.a, "fit_b": fit.b, "fit_ceiling": fit.ceiling,
                      **law_vs_linear(h, r), **early,
                      "law_minus_no_change_rmse": early["early_fit_rmse_rest"] - early["no_change_rmse_rest"],
                      "law_minus_linear_step_rmse": early["early_fit_rmse_rest"] - early["linear_step_rmse_rest"]}
            for key, val in values.items():
                record(per_seed, key, variant, val)
        pooled[variant] = {"exp_law_fit": fit_exp_law(all_h, all_r).to_dict()}
    return {"per_seed": per_seed, "pooled": pooled}


def law_across_arms(runs: dict) -> dict:
    """How much the law's fitted ceiling b - a depends on the algorithm (Fig. 6): per seed, the range of the arms'
    ceilings and their SD over the seed-to-seed SD, recorded under the reference arm (`grpo`, else the first).

    ceiling_range = max_arm c(arm, s) - min_arm c(arm, s), c = b - a of the run's own fit;
    ceiling_arm_sd_over_seed_sd = SD over arms of c(·, s) / sqrt(mean over arms of the variance over seeds of
    c(arm, ·)): 1 when the algorithm moves the ceiling no more than the seed does. NaN where a fit is.
    """
    from .control import reference_arm
    ceilings = {arm: {seed: fit_exp_law(*eval_points(rows)[1:]).ceiling for seed, rows in seeds.items()}
                for arm, seeds in runs.items()}
    seed_var = [np.var(list(c.values()), ddof=1) for c in ceilings.values() if len(c) > 1]
    noise = math.sqrt(np.mean(seed_var)) if seed_var else math.nan
    ref, per_seed = reference_arm(runs), {}
    for seed in runs[ref]:
        c = np.array([ceilings[arm].get(seed, math.nan) for arm in runs])
        record(per_seed, "ceiling_range", ref, float(np.ptp(c)) if len(c) > 1 else math.nan)
        sd = float(np.std(c, ddof=1)) if len(c) > 1 else math.nan
        record(per_seed, "ceiling_arm_sd_over_seed_sd", ref, sd / noise if noise else math.nan)
    return {"per_seed": per_seed, "pooled": {ref: {"ceilings": ceilings, "ceiling_seed_sd": noise}}}


def early_share(runs: dict) -> dict:
    per_seed = {}
    for variant, seeds in runs.items():
        for metrics in seeds.values():
            for key, val in early_shares(metrics).items():
                record(per_seed, key, variant, val)
    return {"per_seed": per_seed, "pooled": {}}


@dataclass(frozen=True)
class Analysis:
    """An analysis, the per-seed metrics it produces (claims may name only these) and the pseudo-arms it also records
    them under: "all" (every run), "unit" (one value per warm-up), "seed" (one value per seed)."""
    fn: Callable
    metrics: tuple[str, ...]
    pseudo_arms: tuple[str, ...] = ()

    def __call__(self, runs: dict, units: dict | None = None) -> dict:
        """units: {variant: {seed: warm-up key}}, passed to the analyses that take it (which runs are independent)."""
        import inspect
        out = self.fn(runs, units=units) if units is not None and "units" in inspect.signature(self.fn).parameters \
            else self.fn(runs)
        unknown = set(out["per_seed"]) - set(self.metrics)
        if unknown:
            raise RuntimeError(f"analysis {self.fn.__name__} produced undeclared metrics {sorted(unknown)}")
        return out


ANALYSES = {
    "exp_law": Analysis(exp_law, (
        "fit_r2", "fit_a", "fit_b", "fit_ceiling", "exp_vs_linear_heldout_ratio", "linear_r2", "exp_h_collinearity",
        "early_fit_final_abs_error", "early_fit_rmse_rest", "no_change_rmse_rest", "linear_step_rmse_rest",
        "early_fit_ceiling", "law_minus_no_change_rmse", "law_minus_linear_step_rmse")),
    "law_across_arms": Analysis(law_across_arms, ("ceiling_range", "ceiling_arm_sd_over_seed_sd")),
    "early_share": Analysis(early_share, (
        "entropy_initial", "entropy_final", "entropy_final_over_initial", "entropy_drop_share_first_third",
        "acc_initial", "acc_final", "acc_gain_share_first_third")),
    "lemma_exact": Analysis(lemma_exact, tuple(f"{key}_{kind}" for kind in UPDATES
                                               for key in ("abs_error_slope", "rel_error_slope", "corr"))),
    "lemma_lm": Analysis(lemma_lm, ("theorem_corr", "theorem_slope", "theorem_sign_agreement", "theorem_corr_random",
                                    "theorem_corr_minus_random", "lm_corr", "lm_slope", "lm_median_rel_error")),
    "cov_dynamics": Analysis(cov_dynamics, (
        "cov_positive_share", *(f"{kind}_cov_neg_dH_{src}" for src in ("probe", "rollout")
                                for kind in ("pearson", "spearman", "pearson_diff")),
        "cov_easy_minus_hard", "mean_cov_easy", "mean_cov_medium", "mean_cov_hard")),
    "dast": Analysis(dast, DAST_METRICS),
    "arm_compare": Analysis(arm_compare, CONTROL_METRICS),
    "cov_top": Analysis(cov_top, COV_TOP_METRICS),
    # the predictability figures (fig2-fig5, fig7): every run's value also under the pseudo-arms "all", "unit", "seed"
    "law_per_run": Analysis(law_per_run, LAW_PER_RUN_METRICS, PSEUDO_ARMS),
    "shares_per_run": Analysis(shares_per_run, SHARES_METRICS, PSEUDO_ARMS),
    "early_curve": Analysis(early_curve, EARLY_CURVE_METRICS, PSEUDO_ARMS),
    "size_trend": Analysis(size_trend, SIZE_TREND_METRICS, (ALL,)),
    "knob_trend": Analysis(knob_trend, ("plateau_rise", "plateau_spearman")),
    "selection_share": Analysis(selection_share, ("selected_share", "share_ratio_dev")),
    "sharpening": Analysis(sharpening, SHARPENING_METRICS, (ALL,)),
}

ANALYSES = Registry("analysis", ANALYSES)  # a second analysis under a taken name is an error

__all__ = ["ANALYSES", "PSEUDO_ARMS", "ExpLawFit", "early_prediction", "early_shares", "eval_points", "fit_exp_law",
           "law_vs_linear"]
