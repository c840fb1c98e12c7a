"""Analyses by name: each maps the metrics of a spec's runs to per-seed values and pooled results.

An analysis takes {variant: {seed: metrics rows}} and returns {"per_seed": {metric: {variant: [values]}},
"pooled": {...}}. Analyses read the run store; they never train.
"""
from __future__ import annotations

from .collect import record
from .fits import ExpLawFit, early_prediction, early_shares, eval_points, fit_exp_law


def exp_law(runs: dict) -> dict:
    per_seed, pooled = {}, {}
    for variant, seeds in runs.items():
        all_h, all_r = [], []
        for metrics in seeds.values():
            _, h, r = eval_points(metrics)
            all_h += list(h)
            all_r += list(r)
            fit = fit_exp_law(h, r)
            early = early_prediction(metrics)
            for key, val in (("fit_r2", fit.r2), ("fit_a", fit.a), ("fit_b", fit.b), ("fit_ceiling", fit.ceiling),
                             ("early_fit_final_abs_error", early["early_fit_final_abs_error"]),
                             ("early_fit_rmse_rest", early["early_fit_rmse_rest"])):
                record(per_seed, key, variant, val)
        pooled[variant] = {"exp_law_fit": fit_exp_law(all_h, all_r).to_dict()}
    return {"per_seed": per_seed, "pooled": pooled}


def early_share(runs: dict) -> dict:
    per_seed = {}
    for variant, seeds in runs.items():
        for metrics in seeds.values():
            for key, val in early_shares(metrics).items():
                record(per_seed, key, variant, val)
    return {"per_seed": per_seed, "pooled": {}}


from .dynamics import cov_dynamics, lemma_exact, lemma_lm  # noqa: E402

ANALYSES = {"exp_law": exp_law, "early_share": early_share, "lemma_exact": lemma_exact, "lemma_lm": lemma_lm,
            "cov_dynamics": cov_dynamics}

__all__ = ["ANALYSES", "ExpLawFit", "early_prediction", "early_shares", "eval_points", "fit_exp_law"]
