"""Seeds needed for a decisive verdict, from a pilot's (or the current result's) per-seed values.

A mean claim is decided when its 95% t-interval lies wholly on one side of the threshold (claims.verdict). If
the mean and the per-seed SD stayed as measured, that happens at the smallest n >= 2 with

    t_{0.975, n-1} · sd / sqrt(n) < |mean - threshold|.

A claim over a paired difference (an arm minus the reference arm on the same seed, `*_minus_ref`, or their
ratio) is already one value per seed, so its SD is the SD of the paired differences. A claim over every run
("over: every") is no mean: it has no seed count here.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

MAX_SEEDS = 10_000
FEW_SEEDS = 3  # below this a pilot's SD is itself too noisy to plan from (and with 2 seeds t = 12.7)


def seeds_needed(mean: float, sd: float, threshold: float, level: float = 0.95, max_n: int = MAX_SEEDS) -> int | None:
    """Smallest n >= 2 with t_{(1+level)/2, n-1} · sd / sqrt(n) < |mean - threshold|; None when no n up to max_n
    does (the effect is 0, or not finite)."""
    effect = abs(mean - threshold)
    if not (math.isfinite(effect) and math.isfinite(sd)) or effect == 0:
        return None
    q = 0.5 + level / 2

    def decided(n: int) -> bool:
        return stats.t.ppf(q, n - 1) * sd / math.sqrt(n) < effect

    if not decided(max_n):
        return None
    lo, hi = 1, 2  # decided(hi) once found; decided(lo) false (n = 1 never decides)
    while not decided(hi):
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:  # t·sd/sqrt(n) falls with n, so bisect
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decided(mid) else (mid, hi)
    return hi


def claim_power(row: dict) -> dict:
    """One judged claim row (claims.judge_claims) -> n, sd, effect, seeds needed and a warning, if any."""
    v = np.array([x for x in row["values"] if x is not None and math.isfinite(x)], float)
    out = {"id": row["id"], "metric": row["metric"], "over": row.get("over", "mean"), "n": len(v),
           "mean": float(v.mean()) if len(v) else math.nan, "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
           "effect": (float(v.mean()) - row["threshold"]) if len(v) else math.nan, "needed": None, "warning": ""}
    if out["over"] == "every":
        out["warning"] = "over every run: no seed count (one failing run refutes it)"
        return out
    if len(v) < FEW_SEEDS:
        out["warning"] = f"only {len(v)} measured seed(s): the SD is not a plan (need >= {FEW_SEEDS})"
    if len(v) > 1:
        out["needed"] = seeds_needed(out["mean"], out["sd"], row["threshold"])
    return out


def power_table(rows: list[dict]) -> list[dict]:
    return [claim_power(r) for r in rows]


def power_text(spec_id: str, source: str, table: list[dict]) -> str:
    """The table `python -m replicate power` prints."""
    fmt = lambda x: "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"
    lines = [f"Seeds for a decisive verdict, {spec_id} (from {source}): smallest n with "
             "t_{0.975,n-1}·sd/√n < |mean - threshold|, if mean and sd stayed as measured. n counts the claim's "
             "values: one per seed, or one per run where the claim pools arms or runs (then `needed` is runs).", "",
             f"{'claim':38} {'n':>5} {'sd':>9} {'effect':>9} {'needed':>8}"]
    for r in table:
        needed = ("-" if r["over"] == "every" else str(r["needed"]) if r["needed"] is not None else
                  "?" if r["n"] < 2 else "never" if r["effect"] == 0 else f">{MAX_SEEDS}")
        lines.append(f"{r['id'][:38]:38} {r['n']:>5} {fmt(r['sd']):>9} {fmt(r['effect']):>9} {needed:>8}"
                     + (f"   warning: {r['warning']}" if r["warning"] else ""))
    return "\n".join(lines)
