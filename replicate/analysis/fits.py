"""The entropy-performance law R = -a·exp(H) + b, and how early entropy and accuracy move."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass
class ExpLawFit:
    a: float
    b: float
    r2: float
    n: int

    @property
    def ceiling(self) -> float:
        """Predicted accuracy when entropy is exhausted (H -> 0): b - a."""
        return self.b - self.a

    def predict(self, entropy):
        return -self.a * np.exp(np.asarray(entropy, dtype=float)) + self.b

    def to_dict(self):
        return {**asdict(self), "ceiling": self.ceiling}


def fit_exp_law(entropy, accuracy) -> ExpLawFit:
    """Least-squares fit of R = -a·exp(H) + b; linear in (a, b), so a regression of R on exp(H)."""
    h, r = np.asarray(entropy, dtype=float), np.asarray(accuracy, dtype=float)
    if len(h) < 3 or np.ptp(h) == 0:
        return ExpLawFit(math.nan, math.nan, math.nan, len(h))
    res = stats.linregress(np.exp(h), r)
    return ExpLawFit(a=-res.slope, b=res.intercept, r2=res.rvalue ** 2, n=len(h))


def loo_rmse(x, y) -> float:
    """Leave-one-out RMSE of the least-squares line y = c·x + d (closed form: e_i / (1 - h_ii))."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 4 or np.ptp(x) == 0:
        return math.nan
    design = np.column_stack([x, np.ones_like(x)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    hat = np.einsum("ij,jk,ik->i", design, np.linalg.inv(design.T @ design), design)
    return float(np.sqrt(np.mean(((y - design @ coef) / (1 - hat)) ** 2)))


def law_vs_linear(entropy, accuracy) -> dict:
    """The exponential law against the linear null R = c·H + d on the same points.

    exp_vs_linear_heldout_ratio: leave-one-out RMSE of R = -a·exp(H) + b over that of R = c·H + d (<= 1: the law
    predicts held-out points at least as well); linear_r2: R² of the linear fit; exp_h_collinearity: 1 - r² of
    exp(H) and H over the points (near 0: the data cannot tell the two laws apart).
    """
    h, r = np.asarray(entropy, dtype=float), np.asarray(accuracy, dtype=float)
    if len(h) < 4 or np.ptp(h) == 0 or np.ptp(r) == 0:  # constant accuracy (e.g. a run stuck at 0): nothing to fit
        return {"exp_vs_linear_heldout_ratio": math.nan, "linear_r2": math.nan, "exp_h_collinearity": math.nan}
    return {"exp_vs_linear_heldout_ratio": loo_rmse(np.exp(h), r) / loo_rmse(h, r),
            "linear_r2": float(stats.linregress(h, r).rvalue ** 2),
            "exp_h_collinearity": float(1 - stats.pearsonr(np.exp(h), h)[0] ** 2)}


def eval_points(metrics: list[dict]):
    """(steps, entropy, val_acc) at the steps where validation ran."""
    rows = [m for m in metrics if "val_acc" in m and "entropy" in m]
    return (np.array([m["step"] for m in rows]), np.array([m["entropy"] for m in rows]),
            np.array([m["val_acc"] for m in rows]))


def _window_mean(x, centre, half):
    lo, hi = max(0, centre - half), min(len(x), centre + half + 1)
    return float(np.mean(x[lo:hi]))


def early_shares(metrics: list[dict], fraction: float = 1 / 3) -> dict:
    """Share of the total entropy drop and of the accuracy gain reached by `fraction` of training.

    Levels are window means (5% of steps for entropy, 3 eval points for accuracy) at the start, at the
    fraction and at the end: share = (x_start - x_frac) / (x_start - x_end), entropy; mirrored for accuracy.
    """
    ent = np.array([m["entropy"] for m in metrics])
    w = max(1, len(ent) // 20)
    k = int(round(fraction * (len(ent) - 1)))
    h0, hk, hT = float(np.mean(ent[:w])), _window_mean(ent, k, w // 2), float(np.mean(ent[-w:]))
    steps, _, acc = eval_points(metrics)
    j = int(np.argmin(np.abs(steps - k))) if len(steps) else 0
    r0, rk, rT = (float(acc[0]), _window_mean(acc, j, 1), float(np.mean(acc[-3:]))) if len(acc) else (math.nan,) * 3
    return {
        "entropy_initial": h0, "entropy_final": hT,
        "entropy_final_over_initial": hT / h0 if h0 else math.nan,
        "entropy_drop_share_first_third": (h0 - hk) / (h0 - hT) if h0 != hT else math.nan,
        "acc_initial": r0, "acc_final": rT,
        "acc_gain_share_first_third": (rk - r0) / (rT - r0) if rT != r0 else math.nan,
    }


def early_prediction(metrics: list[dict], fraction: float = 1 / 3) -> dict:
    """Fit the law on the eval points in the first `fraction` of steps and predict every later one (Fig. 5).

    The RMSE over the later points is set against two nulls on the same points: no change (the accuracy of the
    last early point) and a straight line in the step number fitted to the early points, its predictions clipped
    to [0, 1]: an accuracy outside that range is a prediction no one would make (unclipped, fig1 small's line
    foretold 2.2-2.6 at the last step). The law's own predictions are not clipped: the paper's law as fitted.
    """
    nan = {"early_fit_final_abs_error": math.nan, "early_fit_rmse_rest": math.nan, "no_change_rmse_rest": math.nan,
           "linear_step_rmse_rest": math.nan, "early_fit_ceiling": math.nan}
    steps, h, r = eval_points(metrics)
    if len(steps) == 0:
        return nan
    early = steps < fraction * (max(m["step"] for m in metrics) + 1)
    if early.sum() < 3 or not (~early).any():
        return nan
    fit = fit_exp_law(h[early], r[early])
    rest = r[~early]
    trend = stats.linregress(steps[early], r[early])

    def rmse(pred):
        return float(np.sqrt(np.mean((np.asarray(pred, dtype=float) - rest) ** 2)))
    return {"early_fit_final_abs_error": float(abs(fit.predict(h[-1]) - r[-1])),
            "early_fit_rmse_rest": rmse(fit.predict(h[~early])),
            "no_change_rmse_rest": rmse(np.full(len(rest), r[early][-1])),
            "linear_step_rmse_rest": rmse(np.clip(trend.intercept + trend.slope * steps[~early], 0.0, 1.0)),
            "early_fit_ceiling": fit.ceiling}
