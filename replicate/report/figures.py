"""Matplotlib panels shared by all figures. Panels draw what analysis computed; they fit nothing."""
from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from replicate.registry import Registry  # noqa: E402
from replicate.report.panels_predict import PREDICT_PANELS  # noqa: E402
from replicate.report.plotting import (COLORS, _band, _legend_twin, _mark_flagged, _series, finish_law_axes,  # noqa: E402
                                       law_curve, seeds_label)

def panel_curves(ax, runs, analysis, title):
    """Entropy (left axis) and validation accuracy (right axis) over steps; bands span the seeds."""
    right = ax.twinx()
    for i, (variant, seeds) in enumerate(runs.items()):
        tag = "" if variant == "main" else f" ({variant})"
        s, ent = _series(seeds, "entropy")
        _band(ax, s, ent, COLORS[0 if len(runs) == 1 else i % len(COLORS)], "entropy" + tag)
        _mark_flagged(ax, seeds, "entropy", analysis.get("health", {}).get(variant, {}).get("flagged", {}),
                      COLORS[0 if len(runs) == 1 else i % len(COLORS)])
        s, acc = _series(seeds, "val_acc")
        _band(right, s, acc, COLORS[1 if len(runs) == 1 else i % len(COLORS)], "val accuracy" + tag)
        if len(runs) > 1:
            right.lines[-1].set_linestyle("--")
    ax.set_xlabel("RL step")
    ax.set_ylabel("policy entropy (nats / token)")
    right.set_ylabel("validation accuracy")
    _legend_twin(ax, right, loc="center right", fontsize=8)
    ax.set_title(title)


def panel_law_fit(ax, runs, analysis, title):
    """Validation accuracy vs entropy, one colour per seed, with the pooled fit R = -a·exp(H) + b."""
    for i, (variant, seeds) in enumerate(runs.items()):
        for j, (seed, rows) in enumerate(seeds.items()):
            pts = [(m["entropy"], m["val_acc"]) for m in rows if "val_acc" in m]
            h, r = np.array(pts).T
            ax.scatter(h, r, s=10, alpha=0.6, color=COLORS[(i + j) % len(COLORS)], label=f"seed {seed}")
            curve = analysis["pooled"].get(variant, {}).get("sharpened_curves", {}).get(seed)
            if curve:  # the sharpening null: the base policy only cooled, no RL (analysis/sharpening.py)
                ax.plot(*curve, ls="--", lw=1, color=COLORS[(i + j) % len(COLORS)],
                        label="base, temperature lowered (no RL)" if j == 0 else None)
        fit = analysis["pooled"].get(variant, {}).get("exp_law_fit")
        allh = [m["entropy"] for rows in seeds.values() for m in rows if "val_acc" in m]
        law_curve(ax, fit, allh, color="black", label_of=lambda f: f"R = -{f['a']:.3g}·exp(H) + {f['b']:.3g}\n"
                  f"R² = {f['r2']:.3f}, ceiling b-a = {f['ceiling']:.3f}")
    finish_law_axes(ax, title)


def panel_arm_law_fit(ax, runs, analysis, title):
    """Validation accuracy vs entropy, one colour per arm (points of every seed), each with its pooled fit
    R = -a·exp(H) + b (exp_law's pooled fit of the arm) and its ceiling b - a in the legend."""
    for i, (variant, seeds) in enumerate(runs.items()):
        pts = np.array([(m["entropy"], m["val_acc"]) for rows in seeds.values() for m in rows if "val_acc" in m])
        if not len(pts):
            continue
        color = COLORS[i % len(COLORS)]
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.4, color=color)
        fit = analysis["pooled"].get(variant, {}).get("exp_law_fit")
        law_curve(ax, fit, pts[:, 0], color=color,
                  label_of=lambda f: f"{variant}: R² {f['r2']:.2f}, b-a {f['ceiling']:.3f}")
    finish_law_axes(ax, title)


def _smoothed(seeds: dict, key: str, window: int):
    """Steps and the seed-mean of a moving average of `key` (steps where a seed lacks it are skipped)."""
    n = max(len(rows) for rows in seeds.values())
    out = np.full((len(seeds), n), np.nan)
    for i, rows in enumerate(seeds.values()):
        raw = np.full(n, np.nan)
        for r in rows:
            if key in r:
                raw[r["step"]] = r[key]
        for t in range(n):
            chunk = raw[max(0, t - window + 1):t + 1]
            out[i, t] = np.nanmean(chunk) if np.isfinite(chunk).any() else np.nan
    with warnings.catch_warnings():  # a step where no seed has the key is NaN on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.arange(n), np.nanmean(out, 0), out


def panel_lemma_scatter(ax, runs, analysis, title):
    """Predicted (-Cov) vs exact entropy change at one step size, per update kind, with the identity line."""
    from replicate.analysis.dynamics import SCATTER_ETA
    rows = next(iter(next(iter(runs.values())).values()))
    eta = min({r["eta"] for r in rows}, key=lambda e: abs(e - SCATTER_ETA))
    lemma = next(iter(analysis["pooled"].values()))["lemma"]
    for i, kind in enumerate(lemma):
        pts = np.array([(r["predicted"], r["exact"]) for r in rows if r["update"] == kind and r["eta"] == eta])
        ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.6, color=COLORS[i], label=f"{kind} (r = {lemma[kind]['corr']:.5f})")
    lim = ax.get_xlim()
    ax.plot(lim, lim, color="black", lw=0.8, label="identity")
    ax.set_xlabel("predicted ΔH = -Cov(log π, Δz)")
    ax.set_ylabel("exact ΔH")
    ax.legend(fontsize=7)
    ax.set_title(f"{title} (η = {eta:.0e})")


def panel_lemma_error(ax, runs, analysis, title):
    """Median absolute and relative error of the first-order prediction against the step size η."""
    lemma = next(iter(analysis["pooled"].values()))["lemma"]
    for i, (kind, s) in enumerate(lemma.items()):
        ax.loglog(s["etas"], s["median_abs_error"], "o-", color=COLORS[i], label=f"{kind} |error| (slope {s['abs_error_slope']:.2f})")
        ax.loglog(s["etas"], s["median_rel_error"], "s--", color=COLORS[i], alpha=0.6,
                  label=f"{kind} relative (slope {s['rel_error_slope']:.2f})")
    ax.set_xlabel("step size η")
    ax.set_ylabel("median error of the prediction")
    ax.legend(fontsize=6)
    ax.set_title(title)


def _positions(rows, direction):
    return [r for r in rows if r.get("kind") == "position" and r.get("direction") == direction]


def panel_lm_lemma_scatter(ax, runs, analysis, title):
    """Taylor check: measured ΔH vs -Cov_π(log π, Δz) from the measured logit change, gradient step."""
    for i, (seed, rows) in enumerate(next(iter(runs.values())).items()):
        pts = np.array([(r["predicted"], r["exact"]) for r in _positions(rows, "gradient")])
        ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.5, color=COLORS[i % len(COLORS)], label=f"seed {seed}")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="identity")
    corr = analysis["per_seed"].get("lm_corr", {}).get("main", [])
    slope = analysis["per_seed"].get("lm_slope", {}).get("main", [])
    if corr:
        ax.text(0.03, 0.95, f"r = {np.mean(corr):.4f}, slope = {np.mean(slope):.3f} (mean over seeds)",
                transform=ax.transAxes, fontsize=8, va="top")
    ax.set_xlabel("Taylor: -Cov(log π, Δz), measured Δz")
    ax.set_ylabel("measured ΔH")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)


def panel_lm_theorem_scatter(ax, runs, analysis, title):
    """The theorem: measured ΔH vs -Cov_π(log π, A·(onehot(y) - π)) from log-probs and advantages alone, for
    the gradient step (colour) and a random step of the same norm (grey)."""
    for i, (seed, rows) in enumerate(next(iter(runs.values())).items()):
        for direction, color in (("random", "#999999"), ("gradient", COLORS[i % len(COLORS)])):
            pts = np.array([(r["theorem"], r["exact"]) for r in _positions(rows, direction)])
            ax.scatter(pts[:, 0], pts[:, 1], s=5, alpha=0.4, color=color,
                       label=f"seed {seed}" if direction == "gradient" else ("random step" if i == 0 else None))
    per = analysis["per_seed"]
    for key, y in (("theorem_corr", 0.95), ("theorem_corr_random", 0.88)):
        vals = per.get(key, {}).get("main", [])
        if vals:
            ax.text(0.03, y, f"{key}: r = {np.nanmean(vals):.3f} (mean over seeds)", transform=ax.transAxes,
                    fontsize=8, va="top")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("theorem: -Cov(log π, A·(onehot(y) - π)) (up to η)")
    ax.set_ylabel("measured ΔH")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)


def panel_cov_vs_entropy_change(ax, runs, analysis, title):
    """The covariance term and -ΔH (fixed probe prompts) over steps; moving averages, bands over seeds."""
    seeds = next(iter(runs.values()))
    w = max(1, max(len(r) for r in seeds.values()) // 30)
    steps, cov, allcov = _smoothed(seeds, "cov", w)
    ax.plot(steps, cov, color=COLORS[0], label="covariance term")
    ax.fill_between(steps, np.nanmin(allcov, 0), np.nanmax(allcov, 0), color=COLORS[0], alpha=0.2, lw=0)
    right = ax.twinx()
    neg = {s: [{**r, "neg_dH": -r["probe_delta_entropy"]} for r in rows if "probe_delta_entropy" in r]
           for s, rows in seeds.items()}
    steps, dh, alldh = _smoothed(neg, "neg_dH", w)
    right.plot(steps, dh, color=COLORS[1], label="-ΔH (probe prompts)")
    right.fill_between(steps, np.nanmin(alldh, 0), np.nanmax(alldh, 0), color=COLORS[1], alpha=0.2, lw=0)
    right.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("RL step")
    ax.set_ylabel("covariance")
    right.set_ylabel("-ΔH per step")
    _legend_twin(ax, right, fontsize=8, loc="upper right")
    ax.set_title(f"{title} (moving average, {w} steps)")


def panel_cov_by_accuracy(ax, runs, analysis, title):
    """Covariance over steps for prompts whose group accuracy is 1/8, 4/8, 7/8 (smoothed, mean over seeds)."""
    seeds = next(iter(runs.values()))
    group = next(r["group_size"] for rows in seeds.values() for r in rows)
    w = max(1, max(len(r) for r in seeds.values()) // 15)
    for i, k in enumerate((1, group // 2, group - 1)):
        steps, vals, _ = _smoothed(seeds, f"cov_acc_{k}", w)
        ax.plot(steps, vals, color=COLORS[i], label=f"group accuracy {k}/{group}")
    ax.set_xlabel("RL step")
    ax.set_ylabel("covariance within the group")
    ax.legend(fontsize=8)
    ax.set_title(f"{title} (moving average, {w} steps)")


def _by_level(seeds: dict, phase: str, key: str):
    """Levels and a [seed, level] array of `key` from the preference runner's before/after rows."""
    per = [{r["level"]: r[key] for r in rows if r.get("phase") == phase} for rows in seeds.values()]
    levels = sorted(set.intersection(*(set(p) for p in per))) if per else []
    return np.array(levels), np.array([[p[lv] for lv in levels] for p in per])


def _panel_levels(ax, runs, key, ylabel, title):
    """`key` by difficulty level: the original model (black) and each arm after training; mean over seeds,
    bars span the seeds (min to max)."""
    first = next(iter(runs.values()))
    lv, base = _by_level(first, "before", key)
    ax.errorbar(lv, base.mean(0), yerr=[base.mean(0) - base.min(0), base.max(0) - base.mean(0)], color="black",
                marker="o", lw=2, capsize=2, label="original (before)")
    arms = [v for v in runs if v != "base"]
    for i, variant in enumerate(arms):
        lv, vals = _by_level(runs[variant], "after", key)
        off = (i - (len(arms) - 1) / 2) * 0.06
        ax.errorbar(lv + off, vals.mean(0), yerr=[vals.mean(0) - vals.min(0), vals.max(0) - vals.mean(0)],
                    color=COLORS[i % len(COLORS)], marker="s", ms=3, capsize=2,
                    ls="-" if variant == "dast" else "--", label=f"{variant} (after)")
    ax.set_xlabel("difficulty level (digits)")
    ax.set_ylabel(ylabel)
    ax.set_xticks(lv)
    ax.legend(fontsize=7)
    ax.set_title(title)


def panel_tokens_by_level(ax, runs, analysis, title):
    """Mean greedy response tokens per difficulty level, before and after, per arm (DAST's by-level figure)."""
    _panel_levels(ax, runs, "tokens", "mean response tokens (greedy)", title)


def panel_acc_by_level(ax, runs, analysis, title):
    """Greedy accuracy per difficulty level, before and after, per arm."""
    _panel_levels(ax, runs, "acc", "accuracy (greedy)", title)
    ax.set_ylim(-0.02, 1.02)


def panel_compression_by_level(ax, runs, analysis, title):
    """Compression ratio 1 - tokens/original tokens per level and arm (bars: mean over seeds; dots: seeds)."""
    arms = [v for v in runs if v != "base"]
    width = 0.8 / max(1, len(arms))
    for i, variant in enumerate(arms):
        lv, after = _by_level(runs[variant], "after", "tokens")
        _, before = _by_level(runs[variant], "before", "tokens")
        comp = 1 - after / before
        x = lv + (i - (len(arms) - 1) / 2) * width
        ax.bar(x, comp.mean(0), width, color=COLORS[i % len(COLORS)], alpha=0.7, label=variant)
        for row in comp:
            ax.scatter(x, row, s=6, color="black", zorder=3)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("difficulty level (digits)")
    ax.set_ylabel("compression (1 - tokens / original tokens)")
    ax.legend(fontsize=7)
    ax.set_title(title)


def _panel_arms(ax, runs, key, ylabel, title, log=False, health=None):
    """`key` over steps, one colour per arm (mean over seeds, band min..max); a run that broke is also drawn on
    its own, dashed with x markers."""
    for i, (variant, seeds) in enumerate(runs.items()):
        steps, vals = _series(seeds, key)
        if len(steps):
            _band(ax, steps, vals, COLORS[i % len(COLORS)], variant)
            _mark_flagged(ax, seeds, key, (health or {}).get(variant, {}).get("flagged", {}), COLORS[i % len(COLORS)])
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.set_title(title)


def panel_metric(ax, runs, analysis, title, metric: str = ""):
    """`kind: metric, metric: NAME`: any logged metric over steps, per arm (mean over seeds, band min..max)."""
    if not any(metric in row for seeds in runs.values() for rows in seeds.values() for row in rows):
        logged = sorted({k for seeds in runs.values() for rows in seeds.values() for row in rows for k in row} - {"step"})
        ax.text(0.5, 0.5, f"no run logged {metric!r}\n(logged: {', '.join(logged[:12])}...)", ha="center",
                va="center", fontsize=7, wrap=True, transform=ax.transAxes)
        ax.set_title(title or metric)
        return
    _panel_arms(ax, runs, metric, metric, title or f"{metric} over training")


def panel_arm_entropy(ax, runs, analysis, title):
    """Policy entropy over steps, one line per arm (mean over seeds, band min..max; log scale)."""
    _panel_arms(ax, runs, "entropy", "policy entropy (nats / token, log scale)", title, log=True,
                health=analysis.get("health"))


def panel_arm_length(ax, runs, analysis, title):
    """Mean response length (tokens) over steps, one line per arm (mean over seeds, band min..max)."""
    _panel_arms(ax, runs, "response_length", "response length (tokens)", title, health=analysis.get("health"))


def panel_arm_accuracy(ax, runs, analysis, title):
    """Validation accuracy over steps, one line per arm (mean over seeds, band min..max)."""
    _panel_arms(ax, runs, "val_acc", "validation accuracy", title, health=analysis.get("health"))


def panel_level_bars(ax, runs, analysis, title):
    """Final accuracy per difficulty level and the average, one bar per arm (mean over seeds, 95% t interval)."""
    table = analysis.get("table") or []
    if not table:
        return
    cols = [c for c in table[0] if c != "arm" and not c.endswith("_ci")]
    width = 0.8 / len(table)
    x = np.arange(len(cols))
    for i, row in enumerate(table):
        vals = [np.nan if row[c] is None else row[c] for c in cols]
        err = [0 if row[f"{c}_ci"] is None else row[f"{c}_ci"] for c in cols]
        ax.bar(x + (i - (len(table) - 1) / 2) * width, vals, width, yerr=err, capsize=2,
               color=COLORS[i % len(COLORS)], label=row["arm"])
    ax.set_xticks(x)
    ax.set_xticklabels(cols)
    ax.set_ylabel("final accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title(title)


def panel_cov_top_bars(ax, runs, analysis, title):
    """Table 1: mean Cov_i over the top p% of tokens and over all tokens (mean over steps and seeds; dots: seeds),
    log scale, next to the paper's (secondary) values as red ticks."""
    import yaml
    from replicate.analysis.control import TOP_GROUPS
    from replicate.paths import experiments_dir
    arm = next(iter(runs))
    per = analysis["per_seed"]
    x = np.arange(len(TOP_GROUPS))
    vals = [np.mean(per[f"mean_{key}"][arm]) for _, key in TOP_GROUPS]
    ax.bar(x, vals, color=COLORS[0], alpha=0.7, label=f"{arm} (tiny), mean over steps and seeds")
    for i, (_, key) in enumerate(TOP_GROUPS):
        ax.scatter([i] * len(per[f"mean_{key}"][arm]), per[f"mean_{key}"][arm], s=8, color="black", zorder=3)
    ref = experiments_dir() / "reported" / "entropy-mechanism" / "table1.yaml"
    if ref.exists():
        paper = [r["mean_cov"] for r in yaml.safe_load(ref.read_text())["rows"]]
        ax.scatter(x, paper, marker="_", s=300, color=COLORS[1], zorder=4, label="paper (secondary)")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([g for g, _ in TOP_GROUPS], fontsize=8)
    ax.set_ylabel("mean Cov_i of the group")
    ax.legend(fontsize=7)
    ax.set_title(title)


PANELS = Registry("panel", {"cov_top_bars": panel_cov_top_bars, "arm_entropy": panel_arm_entropy, "arm_length": panel_arm_length, "arm_accuracy": panel_arm_accuracy,
          "level_bars": panel_level_bars, "tokens_by_level": panel_tokens_by_level, "acc_by_level": panel_acc_by_level,
          "compression_by_level": panel_compression_by_level, "metric": panel_metric,
          "curves": panel_curves, "law_fit": panel_law_fit, "arm_law_fit": panel_arm_law_fit, "lemma_scatter": panel_lemma_scatter,
          "lemma_error": panel_lemma_error, "lm_lemma_scatter": panel_lm_lemma_scatter,
          "lm_theorem_scatter": panel_lm_theorem_scatter,
          "cov_vs_entropy_change": panel_cov_vs_entropy_change, "cov_by_accuracy": panel_cov_by_accuracy})

PANELS.update(PREDICT_PANELS)


def render(spec, runs: dict, analysis: dict, out: Path, scale: str) -> list[Path]:
    """Draw the spec's panels side by side; write <id>.png and <id>.pdf into `out`."""
    panels = [p for p in spec.panels if set(p.arms) <= set(spec.arms(scale))]  # arms null at this scale: not drawn
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        extra = {"metric": panel.metric} if panel.kind == "metric" else {}
        PANELS[panel.kind](ax, {v: runs[v] for v in panel.arms} if panel.arms else runs, analysis, panel.title, **extra)
    nseeds = max(len(s) for s in runs.values())
    title = f"{spec.id} ({scale} scale, {seeds_label(nseeds)}): {spec.reproduces.split(':')[0]}"
    fig.suptitle(textwrap.fill(title, width=int(6.2 * n * 15)), fontsize=9)  # ~15 characters an inch at 9 pt
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{spec.id}.png", out / f"{spec.id}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths
