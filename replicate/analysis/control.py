"""Entropy control (Clip-Cov, KL-Cov, the entropy bonus, the KL penalty): every arm against a reference arm.

The reference arm is the one named `grpo` (the fixed name every entropy-control spec gives its control; a spec
without one uses its first arm). Differences are paired by seed: an arm's seed-s run minus the reference's
seed-s run, which shares its warm-up (the same base policy) and its evaluation prompts.

Definitions (all from metrics.jsonl of the rl runner):
- smoothed entropy: a trailing moving average of the per-step rollout entropy over SMOOTH steps;
- final entropy: the mean entropy of the last SMOOTH steps; initial entropy: the mean of the first SMOOTH;
- final accuracy: the mean of the last FINAL_EVALS validation evaluations (val_acc);
- level accuracy: val_acc_L<level> at the last step (the final policy on each difficulty level of the
  validation set); acc_avg is the unweighted mean over the levels, as a benchmark table's average. A run with
  per-benchmark accuracies instead (verl's, imported: val_acc@<benchmark>, and after the last update
  val_acc_after_last_step@<benchmark>) gets the last validation's per benchmark (acc@<benchmark>), averaged
  the same way.
"""
from __future__ import annotations

import math

import numpy as np

from .collect import record

REFERENCE = "grpo"
SMOOTH = 5
FINAL_EVALS = 3
LEVELS = tuple(range(1, 7))
# verl runs' per-benchmark accuracies (their parquet data_source names: `python -m replicate data`)
from evaluators.lmeval import BENCHMARKS  # noqa: E402
BENCHMARK_KEYS = tuple(BENCHMARKS)


def _entropy(rows) -> np.ndarray:
    return np.array([r["entropy"] for r in rows], float)


def _smoothed(x: np.ndarray, w: int = SMOOTH) -> np.ndarray:
    """Trailing moving average over w steps, full windows only (a run shorter than w: its mean): a partial window
    at the start is a 1- to (w-1)-step average, so its peak would be one step's value, not a w-step average."""
    x = np.asarray(x, dtype=float)
    if len(x) < w:
        return np.array([x.mean()]) if len(x) else x
    c = np.cumsum(np.insert(x, 0, 0.0))
    return (c[w:] - c[:-w]) / w


def _final_acc(rows) -> float:
    acc = [r["val_acc"] for r in rows if "val_acc" in r]
    return float(np.mean(acc[-FINAL_EVALS:])) if acc else math.nan


def _levels(rows) -> dict:
    last = next((r for r in reversed(rows) if any(k.startswith("val_acc_L") for k in r)), {})
    return {int(k.removeprefix("val_acc_L")): v for k, v in last.items() if k.startswith("val_acc_L")}


def _benchmarks(rows) -> dict:
    """{benchmark: accuracy} of the last validation with per-benchmark accuracies (after the last step first)."""
    for prefix in ("val_acc_after_last_step@", "val_acc@"):
        for row in reversed(rows):
            found = {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}
            if found:
                return found
    return {}


def summary(rows) -> dict:
    """One run's own numbers."""
    h = _entropy(rows)
    levels = _levels(rows)
    benches = {} if levels else _benchmarks(rows)
    out = {"entropy_start": float(h[:SMOOTH].mean()), "entropy_end": float(h[-SMOOTH:].mean()),
           "entropy_min_smoothed": float(_smoothed(h).min()), "entropy_max_smoothed": float(_smoothed(h).max()),
           "acc_end": _final_acc(rows),
           "response_length_end": float(np.mean([r["response_length"] for r in rows[-SMOOTH:]])),
           "acc_avg": float(np.mean(list((levels or benches).values()))) if levels or benches else math.nan}
    for lv in LEVELS:
        if lv in levels:
            out[f"acc_L{lv}"] = levels[lv]
    out.update({f"acc@{b}": v for b, v in sorted(benches.items()) if b in BENCHMARK_KEYS})
    return out


def reference_arm(runs: dict) -> str:
    return REFERENCE if REFERENCE in runs else next(iter(runs))


def arm_compare(runs: dict) -> dict:
    """Per arm and seed: its own summary, and its differences to the reference arm's run of the same seed.

    entropy_end_minus_ref_end: the arm's final entropy minus the reference's final entropy (> 0: the arm ends
    above the level the reference collapses to; final minus final, so the reference against itself scores 0 —
    a minimum of a noisy series minus a final mean would be biased low);
    entropy_end_over_ref_end: the ratio of final entropies; entropy_end_log_over_ref_end: its log, which the
    claims judge (the mean of ratios is biased above 1 when the arm does nothing, since the reference's final
    entropy varies several-fold across seeds; the mean of logs is not); acc_end_minus_ref / acc_avg_minus_ref: accuracy
    differences (final validation accuracy; mean over the difficulty levels at the last step);
    entropy_max_over_start: the arm's peak smoothed entropy over its initial entropy (> 1: entropy grew;
    an explosion is a large value). A seed the reference lacks gives NaN differences.
    pooled: a `table` of the mean level accuracies per arm (what table.csv holds) and the reference's name.
    """
    ref_name = reference_arm(runs)
    ref = {seed: summary(rows) for seed, rows in runs[ref_name].items()}
    per_seed, pooled = {}, {}
    for variant, seeds in runs.items():
        for seed, rows in seeds.items():
            own = summary(rows)
            base = ref.get(seed)
            nan = base is None
            vals = {"entropy_end": own["entropy_end"], "entropy_start": own["entropy_start"],
                    "acc_end": own["acc_end"], "response_length_end": own["response_length_end"],
                    "acc_avg": own["acc_avg"],
                    "entropy_max_over_start": own["entropy_max_smoothed"] / own["entropy_start"],
                    "entropy_end_minus_ref_end": math.nan if nan else own["entropy_end"] - base["entropy_end"],
                    "entropy_end_over_ref_end": math.nan if nan else own["entropy_end"] / base["entropy_end"],
                    "entropy_end_log_over_ref_end":
                        math.nan if nan else math.log(own["entropy_end"] / base["entropy_end"]),
                    "acc_end_minus_ref": math.nan if nan else own["acc_end"] - base["acc_end"],
                    "acc_avg_minus_ref": math.nan if nan else own["acc_avg"] - base["acc_avg"]}
            vals.update({k: v for k, v in own.items() if k.startswith(("acc_L", "acc@"))})
            for key, val in vals.items():
                record(per_seed, key, variant, val)
        pooled[variant] = {"reference_arm": ref_name}
    return {"per_seed": per_seed, "pooled": pooled, "table": level_table(per_seed, list(runs))}


def level_table(per_seed: dict, arms: list[str]) -> list[dict]:
    """One row per arm: the mean over seeds of each level's accuracy and of their average, in percent, with
    the seeds' 95% t half-interval (columns <level>_ci); per benchmark instead when the runs have those."""
    from replicate.analysis.stats import mean_ci
    levels = [f"acc_L{lv}" for lv in LEVELS if f"acc_L{lv}" in per_seed]
    levels += sorted(k for k in per_seed if k.startswith("acc@"))
    rows = []
    for arm in arms:
        row = {"arm": arm}
        for key, col in [*((k, k.removeprefix("acc_").removeprefix("acc@")) for k in levels), ("acc_avg", "average")]:
            m, lo, hi = mean_ci(per_seed.get(key, {}).get(arm, []))
            row[col] = round(100 * m, 2) if math.isfinite(m) else None
            row[f"{col}_ci"] = round(100 * (hi - m), 2) if math.isfinite(hi) else None
        rows.append(row)
    return rows


METRICS = ("entropy_end", "entropy_start", "acc_end", "response_length_end", "acc_avg", "entropy_max_over_start",
           "entropy_end_minus_ref_end", "entropy_end_over_ref_end", "entropy_end_log_over_ref_end", "acc_end_minus_ref",
           "acc_avg_minus_ref",
           *(f"acc_L{lv}" for lv in LEVELS), *(f"acc@{b}" for b in BENCHMARK_KEYS))


TOP_GROUPS = (("top 0.02%", "cov_top_0p02"), ("top 0.2%", "cov_top_0p2"), ("top 2%", "cov_top_2p0"),
              ("top 20%", "cov_top_20p0"), ("top 50%", "cov_top_50p0"), ("all", "cov_all"))


def cov_top(runs: dict) -> dict:
    """Table 1: per run, the mean over steps of each step's mean Cov_i over the top p% of its tokens (and over all
    tokens), logged by the trainer (covariance.top_fraction_means); cov_top_monotone = 1 when the six group
    means never increase from the top 0.02% down to all tokens and the first exceeds the last;
    cov_top2_over_all = the top-2% mean over the all-token mean (how concentrated the covariance is; large even
    for independent log-probs and advantages, whose all-token mean is ~0, so no claim rests on it);
    cov_top2_minus_perm = the mean over steps of the top-2% mean minus the same statistic with the advantages
    shuffled within the batch (the trainer's perm_cov_top_2p0): > 0 when the tokens that carry the covariance do
    so through the coupling of log-prob and advantage, not through the spread of either alone.
    pooled: the table (mean over seeds of each group) per arm."""
    per_seed, pooled = {}, {}
    for variant, seeds in runs.items():
        for rows in seeds.values():
            means = [float(np.mean([r[key] for r in rows if key in r])) if any(key in r for r in rows) else math.nan
                     for _, key in TOP_GROUPS]
            for (_, key), m in zip(TOP_GROUPS, means):
                record(per_seed, f"mean_{key}", variant, m)
            mono = all(a >= b for a, b in zip(means, means[1:])) and means[0] > means[-1]
            record(per_seed, "cov_top_monotone", variant, float(mono) if all(map(math.isfinite, means)) else math.nan)
            record(per_seed, "cov_top2_over_all", variant, means[2] / means[-1] if means[-1] else math.nan)
            diffs = [r["cov_top_2p0"] - r["perm_cov_top_2p0"] for r in rows if "perm_cov_top_2p0" in r]
            record(per_seed, "cov_top2_minus_perm", variant, float(np.mean(diffs)) if diffs else math.nan)
        pooled[variant] = {"table1": {label: float(np.mean(per_seed[f"mean_{key}"][variant]))
                                      for label, key in TOP_GROUPS}}
    return {"per_seed": per_seed, "pooled": pooled}


COV_TOP_METRICS = (*(f"mean_{key}" for _, key in TOP_GROUPS), "cov_top_monotone", "cov_top2_over_all",
                   "cov_top2_minus_perm")


def knob_trend(runs: dict) -> dict:
    """Sensitivity (Fig. 12): arms named <knob><value> (`r0.02`, `k0.1`, `beta2`; any other name, e.g. `grpo`,
    is left out) form one family per knob. Per seed and family: plateau_rise = the final entropy (mean of the
    last SMOOTH steps) at the family's largest value minus that at its smallest, recorded under the arm of the
    largest value; plateau_spearman = the rank correlation of the final entropy with the value over the
    family's arms (NaN with fewer than 3 arms), recorded there too."""
    import re
    from scipy import stats
    fams: dict = {}
    for arm in runs:
        m = re.fullmatch(r"([a-z_]+?)_?(\d+(?:\.\d+)?(?:e-?\d+)?)", arm)
        if m and m.group(1) != "grpo":
            fams.setdefault(m.group(1), []).append((float(m.group(2)), arm))
    per_seed = {}
    for fam, arms in fams.items():
        arms.sort()
        top = arms[-1][1]
        for seed in runs[top]:
            ends = [float(_entropy(runs[a][seed])[-SMOOTH:].mean()) if seed in runs[a] else math.nan for _, a in arms]
            record(per_seed, "plateau_rise", top, ends[-1] - ends[0])
            rho = stats.spearmanr([v for v, _ in arms], ends)[0] if len(arms) >= 3 else math.nan
            record(per_seed, "plateau_spearman", top, float(rho))
    return {"per_seed": per_seed, "pooled": {}}


def selection_share(runs: dict) -> dict:
    """The cov_scope figure: per run, the mean over steps of the share of valid tokens Clip-Cov / KL-Cov acted on
    (the trainer's `cov_frac`, averaged over a step's micro-batches), and its ratio to the reference arm's on the
    same seed (`grpo` if present, else the first arm): share_ratio_dev = |share / share_ref - 1|."""
    ref_name = reference_arm(runs)
    share = {v: {s: float(np.mean([r["cov_frac"] for r in rows if "cov_frac" in r] or [math.nan]))
                 for s, rows in seeds.items()} for v, seeds in runs.items()}
    per_seed = {}
    for variant, seeds in share.items():
        for seed, val in seeds.items():
            ref = share[ref_name].get(seed, math.nan)
            record(per_seed, "selected_share", variant, val)
            record(per_seed, "share_ratio_dev", variant, abs(val / ref - 1) if ref else math.nan)
    return {"per_seed": per_seed, "pooled": {}}
