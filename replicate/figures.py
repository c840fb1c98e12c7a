"""Matplotlib panels shared by all figures. Panels draw what analysis computed; they fit nothing."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _series(seeds: dict, key: str):
    """Steps and a [seed, step] array of `key`, over the steps every seed logged it."""
    per = [{m["step"]: m[key] for m in rows if key in m} for rows in seeds.values()]
    steps = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return np.array(steps), np.array([[p[s] for s in steps] for p in per])


def _band(ax, steps, values, color, label):
    ax.plot(steps, values.mean(0), color=color, label=label)
    if len(values) > 1:
        ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2, linewidth=0)


def panel_curves(ax, runs, analysis, title):
    """Entropy (left axis) and validation accuracy (right axis) over steps; bands span the seeds."""
    right = ax.twinx()
    for i, (variant, seeds) in enumerate(runs.items()):
        tag = "" if variant == "main" else f" ({variant})"
        s, ent = _series(seeds, "entropy")
        _band(ax, s, ent, COLORS[0 if len(runs) == 1 else i % len(COLORS)], "entropy" + tag)
        s, acc = _series(seeds, "val_acc")
        _band(right, s, acc, COLORS[1 if len(runs) == 1 else i % len(COLORS)], "val accuracy" + tag)
        if len(runs) > 1:
            right.lines[-1].set_linestyle("--")
    ax.set_xlabel("RL step")
    ax.set_ylabel("policy entropy (nats / token)")
    right.set_ylabel("validation accuracy")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8)
    ax.set_title(title)


def panel_law_fit(ax, runs, analysis, title):
    """Validation accuracy vs entropy, one colour per seed, with the pooled fit R = -a·exp(H) + b."""
    for i, (variant, seeds) in enumerate(runs.items()):
        for j, (seed, rows) in enumerate(seeds.items()):
            pts = [(m["entropy"], m["val_acc"]) for m in rows if "val_acc" in m]
            h, r = np.array(pts).T
            ax.scatter(h, r, s=10, alpha=0.6, color=COLORS[(i + j) % len(COLORS)], label=f"seed {seed}")
        fit = analysis["pooled"].get(variant, {}).get("exp_law_fit")
        if fit and np.isfinite(fit["a"]):
            allh = np.concatenate([[m["entropy"] for m in rows if "val_acc" in m] for rows in seeds.values()])
            grid = np.linspace(allh.min(), allh.max(), 100)
            ax.plot(grid, -fit["a"] * np.exp(grid) + fit["b"], color="black",
                    label=f"R = -{fit['a']:.3g}·exp(H) + {fit['b']:.3g}\nR² = {fit['r2']:.3f}, ceiling b-a = {fit['ceiling']:.3f}")
    ax.invert_xaxis()
    ax.set_xlabel("policy entropy H (decreasing →)")
    ax.set_ylabel("validation accuracy R")
    ax.legend(fontsize=7)
    ax.set_title(title)


PANELS = {"curves": panel_curves, "law_fit": panel_law_fit}


def render(spec, runs: dict, analysis: dict, out: Path, scale: str) -> list[Path]:
    """Draw the spec's panels side by side; write <id>.png and <id>.pdf into `out`."""
    n = len(spec.panels)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 4.6), squeeze=False)
    for ax, panel in zip(axes[0], spec.panels):
        PANELS[panel.kind](ax, runs, analysis, panel.title)
    nseeds = max(len(s) for s in runs.values())
    fig.suptitle(f"{spec.id} ({scale} scale, {nseeds} seeds): {spec.reproduces.split(':')[0]}", fontsize=9)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{spec.id}.png", out / f"{spec.id}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths
