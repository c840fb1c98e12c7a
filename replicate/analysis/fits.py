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
    """Fit the law on eval points in the first `fraction` of steps; error of predicting the rest."""
    steps, h, r = eval_points(metrics)
    if len(steps) == 0:
        return {"early_fit_final_abs_error": math.nan, "early_fit_rmse_rest": math.nan}
    cut = fraction * (max(m["step"] for m in metrics) + 1)
    early = steps < cut
    fit = fit_exp_law(h[early], r[early])
    pred = fit.predict(h[~early])
    return {"early_fit_final_abs_error": float(abs(fit.predict(h[-1]) - r[-1])),
            "early_fit_rmse_rest": float(np.sqrt(np.mean((pred - r[~early]) ** 2))) if (~early).any() else math.nan,
            "early_fit_ceiling": fit.ceiling}
