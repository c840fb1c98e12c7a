"""Seeds needed for a decisive verdict, from a pilot's (or the current result's) per-seed values.

A mean claim is decided when its 95% t-interval lies wholly on one side of the threshold (claims.verdict). Two
plans, for a claim whose mean and per-seed SD stay as measured:

- `decided` (the rule behind the specs' planned seed counts so far): the smallest n >= 2 at which the interval of
  those very values would exclude the threshold, t_{0.975, n-1} · sd / sqrt(n) < |mean - threshold|. A fresh
  experiment's mean falls on either side of its expectation, so this n decides only about half the time
  (power 0.50-0.76 for effects up to 2 SDs).
- `80%` (a power analysis): the smallest n at which a fresh experiment decides, on the pilot's side, with
  probability 0.8: P(T > t_{0.975, n-1}) >= 0.8 for T a noncentral t with n - 1 degrees of freedom and
  noncentrality |mean - threshold| · sqrt(n) / sd. With Holm's correction over the spec's m mean claims a claim
  may have to pass at 0.05 / m, so `80% Holm` plans at that level (Bonferroni's bound on Holm).

A pilot of 3 seeds measures its SD on 2 degrees of freedom: the true SD may well be twice the estimate, and a
plan on the estimate then falls short (docs/power.md counts how the specs' plans fared). `sd_ucl` plans on the
SD's one-sided upper confidence limit instead (Browne 1995: 0.8 is the usual choice), sd · sqrt((n - 1) /
chi2_{1-ucl, n-1}): x2.12 for 3 seeds, x1.46 for 6.

A claim over a paired difference (an arm minus the reference arm on the same seed, `*_minus_ref`, or their
ratio) is already one value per seed, so its SD is the SD of the paired differences. A claim over every run
("over: every") is no mean: it has no seed count here.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

MAX_SEEDS = 10_000
FEW_SEEDS = 3  # below this a pilot's SD is itself too noisy to plan from (and with 2 seeds t = 12.7)
POWER = 0.8


def _smallest(decides: Callable[[int], bool], max_n: int) -> int | None:
    """Smallest n in [2, max_n] with decides(n), for a `decides` that stays true once true; None if none is."""
    if not decides(max_n):
        return None
    lo, hi = 1, 2  # decides(hi) once found; n = 1 never decides
    while not decides(hi):
        lo, hi = hi, min(2 * hi, max_n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decides(mid) else (mid, hi)
    return hi


def _effect_ok(effect: float, sd: float) -> bool:
    return math.isfinite(effect) and math.isfinite(sd) and effect != 0


def seeds_needed(mean: float, sd: float, threshold: float, level: float = 0.95, max_n: int = MAX_SEEDS) -> int | None:
    """Smallest n >= 2 with t_{(1+level)/2, n-1} · sd / sqrt(n) < |mean - threshold|; None when no n up to max_n
    does (the effect is 0, or not finite)."""
    effect, q = abs(mean - threshold), 0.5 + level / 2
    if not _effect_ok(effect, sd):
        return None
    return _smallest(lambda n: stats.t.ppf(q, n - 1) * sd / math.sqrt(n) < effect, max_n)


def power_at(effect: float, sd: float, n: int, level: float = 0.95) -> float:
    """The probability that n seeds' interval lies wholly on the side of `effect` (the true mean minus the
    threshold) when per-seed values are normal with SD `sd`: P(T > t_{(1+level)/2, n-1}), T noncentral t
    (n - 1 degrees of freedom, noncentrality |effect| · sqrt(n) / sd). NaN below 2 seeds."""
    if n < 2 or not (math.isfinite(effect) and math.isfinite(sd)):
        return math.nan
    crit = stats.t.ppf(0.5 + level / 2, n - 1)
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    nc = abs(effect) * math.sqrt(n) / sd
    p = float(stats.nct.sf(crit, n - 1, nc))
    if math.isnan(p):  # scipy's nct gives NaN at a huge noncentrality (an SD of rounding error: 7e-17 for equal
        # values); there the normal part is negligible: P(crit · S < nc), S² = chi2_{n-1} / (n - 1)
        p = float(stats.chi2.cdf((n - 1) * (nc / crit) ** 2, n - 1))
    return p


def seeds_for_power(effect: float, sd: float, power: float = POWER, level: float = 0.95,
                    max_n: int = MAX_SEEDS) -> int | None:
    """Smallest n >= 2 with power_at(effect, sd, n, level) >= power; None when no n up to max_n reaches it."""
    if not _effect_ok(effect, sd):
        return None
    return _smallest(lambda n: power_at(effect, sd, n, level) >= power, max_n)


def sd_upper(sd: float, n: int, ucl: float) -> float:
    """The one-sided `ucl` upper confidence limit of an SD measured as `sd` on n values (chi-square, n - 1 df)."""
    return sd * math.sqrt((n - 1) / stats.chi2.ppf(1 - ucl, n - 1)) if n > 1 else math.nan


def claim_power(row: dict, family: int = 1, at: int | None = None, sd_ucl: float | None = None) -> dict:
    """One judged claim row (claims.judge_claims) -> n, sd, effect, the seeds each plan asks, the power at `at`
    values (the spec's judged seeds), and a warning, if any. `family`: the spec's mean claims (Holm's m);
    `sd_ucl`: plan on the SD's upper confidence limit (then `sd` is that limit)."""
    v = np.array([x for x in row["values"] if x is not None and math.isfinite(x)], float)
    out = {"id": row["id"], "metric": row["metric"], "over": row.get("over", "mean"), "n": len(v),
           "mean": float(v.mean()) if len(v) else math.nan, "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
           "effect": (float(v.mean()) - row["threshold"]) if len(v) else math.nan, "needed": None,
           "needed_power": None, "needed_power_holm": None, "at": at, "power_at": math.nan, "warning": ""}
    if out["over"] == "every":
        out["warning"] = "over every run: no seed count (one failing run refutes it)"
        return out
    if len(v) < FEW_SEEDS:
        out["warning"] = f"only {len(v)} measured seed(s): the SD is not a plan (need >= {FEW_SEEDS})"
    if len(v) > 1:
        if sd_ucl:
            out["sd"] = sd_upper(out["sd"], len(v), sd_ucl)
        effect, sd = out["effect"], out["sd"]
        out["needed"] = seeds_needed(out["mean"], sd, row["threshold"])
        out["needed_power"] = seeds_for_power(effect, sd)
        out["needed_power_holm"] = seeds_for_power(effect, sd, level=1 - 0.05 / max(family, 1))
        out["power_at"] = power_at(effect, sd, at) if at else math.nan
    return out


def power_table(rows: list[dict], judged: int | None = None, seeds: int | None = None,
                sd_ucl: float | None = None) -> list[dict]:
    """claim_power of each row; Holm's family is the rows judged over the mean, as in claims.holm. The power is
    taken at `judged` seeds' worth of values: a claim with k values per seed of the result's `seeds` gets k x
    judged."""
    family = sum(r.get("over", "mean") == "mean" for r in rows)
    per_seed = lambda r: len(r["values"]) / seeds if seeds else 1
    return [claim_power(r, family, round(judged * per_seed(r)) if judged else None, sd_ucl) for r in rows]


def _count(r: dict, key: str) -> str:
    if r["over"] == "every":
        return "-"
    if r[key] is not None:
        return str(r[key])
    return "?" if r["n"] < 2 else "never" if r["effect"] == 0 else f">{MAX_SEEDS}"


def power_text(spec_id: str, source: str, table: list[dict], judged: int | None = None,
               sd_ucl: float | None = None) -> str:
    """The table `python -m replicate power` prints (`judged`: the spec's judged seeds, for the power column)."""
    fmt = lambda x: "n/a" if x is None or not math.isfinite(x) else f"{x:.3g}"
    at = f"pw@{judged}" if judged else "pw@-"
    lines = [f"Seeds for a decisive verdict, {spec_id} (from {source}), if mean and sd stayed as measured.",
             "  decided: the smallest n whose own interval excludes the threshold (about 50% power; the rule behind",
             "           the specs' planned seed counts)",
             ("  80%: power 0.8 on the measured side (noncentral t); 80% Holm: the same at 0.05 / m, m = the spec's "
              "mean claims"),
             (f"  {at}: the power at the spec's {judged or '?'} judged seeds, of a verdict on the measured side (not "
              "replicated, where the mean"),
             ("           is on the claim's wrong side): a plan from a pilot; from the judged seeds' own result it only "
              "restates their p-value"),
             ("  n counts the claim's values: one per seed, or one per run where the claim pools arms or runs (then "
              "the counts are runs)"),
             *([f"  sd: the measured SD raised to its one-sided {sd_ucl:g} upper confidence limit (--sd-ucl)"]
               if sd_ucl else []), "",
             f"{'claim':38} {'n':>5} {'sd':>9} {'effect':>9} {'decided':>8} {'80%':>7} {'80% Holm':>9} {at:>7}"]
    for r in table:
        lines.append(f"{r['id'][:38]:38} {r['n']:>5} {fmt(r['sd']):>9} {fmt(r['effect']):>9} "
                     f"{_count(r, 'needed'):>8} {_count(r, 'needed_power'):>7} {_count(r, 'needed_power_holm'):>9} "
                     f"{fmt(r['power_at']):>7}" + (f"   warning: {r['warning']}" if r["warning"] else ""))
    return "\n".join(lines)
