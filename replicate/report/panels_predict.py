"""Panels of the predictability figures (fig2-fig5, fig7): one fitted curve per run, early-prediction RMSE against
the fraction fitted, and the law's coefficients against model size. They draw what analysis/predict.py computed."""
from __future__ import annotations

import numpy as np

from replicate.report.plotting import COLORS, finish_law_axes, law_curve

MARKERS = "osD^v<>"


def panel_law_fit_runs(ax, runs, analysis, title):
    """Validation accuracy vs entropy, one colour per arm and one marker per seed, each run with its own fit."""
    for i, (variant, seeds) in enumerate(runs.items()):
        fits = analysis["pooled"].get(variant, {}).get("run_fits", {})
        r2 = [f["r2"] for f in fits.values() if f["r2"] is not None and np.isfinite(f["r2"])]
        for j, (seed, rows) in enumerate(seeds.items()):
            h = np.array([m["entropy"] for m in rows if "val_acc" in m])
            r = np.array([m["val_acc"] for m in rows if "val_acc" in m])
            label = f"{variant} (mean R² {np.mean(r2):.2f})" if j == 0 and r2 else None
            ax.scatter(h, r, s=8, alpha=0.45, color=COLORS[i % len(COLORS)], marker=MARKERS[j % len(MARKERS)],
                       label=label)
            law_curve(ax, fits.get(seed), h, n=50, color=COLORS[i % len(COLORS)], lw=1)
    finish_law_axes(ax, title)


def panel_early_rmse(ax, runs, analysis, title):
    """RMSE over the rest of the run against the fraction fitted: the law and the two nulls (mean over the runs of
    the panel's arms, thin lines: each run's law)."""
    parts = [analysis["pooled"].get(v, {}).get("early_curve") for v in runs]
    parts = [p for p in parts if p]
    if not parts:
        return
    curve = {key: [row for p in parts for row in p[key]] for key in ("law", "no_change", "linear_step")}
    x = np.array(parts[0]["fractions"])
    for k, (key, label) in enumerate((("law", "law R = -a exp(H) + b"), ("no_change", "no change"),
                                      ("linear_step", "linear in step"))):
        vals = np.array(curve[key], dtype=float)
        if key == "law":
            for row in vals:
                ax.plot(x, row, color=COLORS[0], lw=0.5, alpha=0.3)
        ax.plot(x, np.nanmean(vals, 0), "o-", color=COLORS[k], lw=2, label=f"{label} (mean of {len(vals)} runs)")
    ax.axvline(36 / 236, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the run fitted (dotted: the paper's 36 steps, scaled)")
    ax.set_ylabel("RMSE of the later validation accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title)


def _panel_size(ax, analysis, name, title):
    trend = analysis["pooled"].get("all", {}).get("size_trend", {}).get(name)
    if not trend:
        return
    ax.scatter(trend["x"], trend["y"], color=COLORS[0], s=14, label="runs fitted (smaller sizes)")
    ax.scatter(trend["held_x"], trend["held_y"], color=COLORS[1], marker="D", s=18, label="largest size (held out)")
    xs = np.linspace(min(trend["x"]), max(trend["held_x"]), 50)
    if trend["slope"] is not None and np.isfinite(trend["slope"]):
        ax.plot(xs, trend["intercept"] + trend["slope"] * xs, color="black", lw=1,
                label=f"trend: slope {trend['slope']:.3g} per decade")
        x0 = trend["held_x"][0]
        ax.errorbar([x0], [trend["pred"]], yerr=[trend["half"]], color="black", capsize=4,
                    label="prediction, 95% interval")
    ax.set_xlabel("log10 non-embedding parameters")
    ax.set_ylabel(f"fitted {name}")
    ax.legend(fontsize=7)
    ax.set_title(title)


def panel_size_trend_a(ax, runs, analysis, title):
    """Fitted a against log size, the trend of the smaller sizes and its prediction interval at the largest."""
    _panel_size(ax, analysis, "a", title)


def panel_size_trend_b(ax, runs, analysis, title):
    """Fitted b against log size, as for a."""
    _panel_size(ax, analysis, "b", title)


PREDICT_PANELS = {"law_fit_runs": panel_law_fit_runs, "early_rmse": panel_early_rmse,
                  "size_trend_a": panel_size_trend_a, "size_trend_b": panel_size_trend_b}
