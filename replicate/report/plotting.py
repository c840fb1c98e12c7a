"""Drawing helpers shared by every panel module: the colours, mean-and-band curves, the law curve and its axes."""
from __future__ import annotations

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def seeds_label(n: int) -> str:
    """'1 seed', '2 seeds'."""
    return f"{n} seed{'' if n == 1 else 's'}"


def _series(seeds: dict, key: str):
    """Steps and a [seed, step] array of `key`, over the steps every seed logged it."""
    per = [{m["step"]: m[key] for m in rows if key in m} for rows in seeds.values()]
    steps = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return np.array(steps), np.array([[p[s] for s in steps] for p in per])


def _band(ax, steps, values, color, label):
    ax.plot(steps, values.mean(0), color=color, label=label)
    if len(values) > 1:
        ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2, linewidth=0)


def _legend_twin(ax, right, **kwargs):
    """One legend for a panel with a second y axis."""
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], **kwargs)


def law_curve(ax, fit: dict | None, h, n: int = 100, label_of=None, **plot_kw):
    """Draw a fit R = -a·exp(H) + b over the range of the entropies h, labelled label_of(fit) (nothing for a
    missing or failed fit)."""
    if not fit or not np.isfinite(fit["a"]) or not len(h):
        return
    grid = np.linspace(min(h), max(h), n)
    ax.plot(grid, -fit["a"] * np.exp(grid) + fit["b"], label=label_of(fit) if label_of else None, **plot_kw)


def finish_law_axes(ax, title: str):
    """Accuracy-vs-entropy axes: entropy decreasing to the right, as training goes."""
    ax.invert_xaxis()
    ax.set_xlabel("policy entropy H (decreasing →)")
    ax.set_ylabel("validation accuracy R")
    ax.legend(fontsize=7)
    ax.set_title(title)


def _mark_flagged(ax, seeds: dict, key: str, flagged: dict, color):
    """Draw each run that broke (runners/rl/health.py) on its own, dashed with x markers, labelled once."""
    for i, seed in enumerate(s for s in seeds if s in flagged or str(s) in flagged):
        steps, vals = _series({seed: seeds[seed]}, key)
        if len(steps):
            ax.plot(steps, vals[0], color=color, linestyle="--", marker="x", markersize=3, linewidth=0.8,
                    label=f"flagged run (seed {seed})" if i == 0 else None)
