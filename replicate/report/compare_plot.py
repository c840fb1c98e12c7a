"""The overlay figure of `compare`: A's and B's per-seed claim values side by side, and where both sides' runs
are in the run store, their entropy and validation-accuracy curves (mean and min-max band per arm) on shared axes."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

CURVES = ("entropy", "val_acc")


def _runs(payload: dict) -> dict[str, list[list[dict]]]:
    """{arm: [metrics rows per seed]} of the runs a result names, when every one is in the store; else {}."""
    from replicate.paths import home
    from replicate.store import Run
    out: dict[str, list] = {}
    for r in payload.get("provenance", {}).get("runs", []):
        run = Run(Path(r["dir"]) if Path(r["dir"]).is_absolute() else home() / r["dir"])
        if not run.metrics_file.exists():
            return {}
        out.setdefault(r["variant"], []).append(run.metrics(torn_ok=True))
    return out


def _band(ax, runs: list[list[dict]], key: str, label: str, color, style):
    series = [[(r["step"], r[key]) for r in rows if key in r] for rows in runs]
    steps = sorted(set.intersection(*(set(s for s, _ in ser) for ser in series))) if series else []
    if not steps:
        return
    vals = np.array([[dict(ser)[s] for s in steps] for ser in series])
    ax.plot(steps, vals.mean(0), style, color=color, label=label)
    ax.fill_between(steps, vals.min(0), vals.max(0), color=color, alpha=0.15)


def overlay(a: dict, b: dict, rows: list[dict], path: Path) -> None:
    shared = [r for r in rows if r["a"] and r["b"]]
    runs_a, runs_b = _runs(a), _runs(b)
    curves = [k for k in CURVES if runs_a and runs_b]
    n = len(curves) + max(1, len(shared))
    cols = min(4, n)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(3.6 * cols, 3.0 * math.ceil(n / cols)), squeeze=False)
    axes = list(axes.flat)
    for ax, key in zip(axes, curves):
        for i, arm in enumerate(sorted(set(runs_a) & set(runs_b))):
            color = f"C{i}"
            _band(ax, runs_a[arm], key, f"A {arm}", color, "-")
            _band(ax, runs_b[arm], key, f"B {arm}", color, "--")
        ax.set(title=key, xlabel="step")
        ax.legend(fontsize=7)
    for ax, r in zip(axes[len(curves):], shared):
        for x, side in ((0, "a"), (1, "b")):
            vals = [v for v in r[side]["values"] if v is not None]
            ax.plot([x] * len(vals), vals, "o", color=f"C{x}", alpha=0.7)
            lo, hi = r[side]["ci95"]
            mean = r[side]["mean"]
            if None not in (lo, hi, mean):
                ax.errorbar([x + 0.15], [mean], yerr=[[max(0.0, mean - lo)], [max(0.0, hi - mean)]], fmt="s",
                            color=f"C{x}", capsize=3)
        ax.axhline(r["a"]["threshold"], color="grey", lw=0.8, ls=":")
        ax.set_xticks([0, 1], [f"A: {r['a']['verdict']}", f"B: {r['b']['verdict']}"], fontsize=7)
        ax.set_title(r["id"] + (" (changed)" if r.get("changed") else ""), fontsize=8,
                     color="red" if r.get("changed") else "black")
    for ax in axes[len(curves) + len(shared):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
