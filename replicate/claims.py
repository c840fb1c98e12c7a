"""Claims as data: evaluate each against its measured per-seed values; write claims.json and claims.md.

Verdict with n >= 2 seeds: the 95% t-interval of the mean lies wholly on the claim's side of the
threshold -> replicated; wholly on the other side -> not replicated; otherwise (or with one seed, or a
value that could not be measured) -> inconclusive.
"""
from __future__ import annotations

import json
import math
import operator
from pathlib import Path

import numpy as np
from scipy import stats

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def verdict(values, op: str, threshold: float) -> str:
    m, lo, hi = mean_ci(values)
    if math.isnan(m) or math.isnan(lo):
        return "inconclusive"
    holds = OPS[op]
    if holds(lo, threshold) and holds(hi, threshold):
        return "replicated"
    if not holds(lo, threshold) and not holds(hi, threshold):
        return "not replicated"
    return "inconclusive"


def evaluate_claims(claims, per_seed: dict, variant: str = "main") -> list[dict]:
    rows = []
    for c in claims:
        metric, _, arm = c.metric.partition("@")
        values = per_seed.get(metric, {}).get(arm or variant, [])
        m, lo, hi = mean_ci(values)
        rows.append({"id": c.id, "statement": c.statement, "source": c.source, "paper_value": c.paper_value,
                     "metric": c.metric, "op": c.op, "threshold": c.threshold, "threshold_reason": c.threshold_reason,
                     "values": [float(v) for v in values], "mean": m, "ci95": [lo, hi],
                     "verdict": verdict(values, c.op, c.threshold)})
    return rows


def _fmt(x) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.3g}"
    return str(x)


def claims_markdown(spec_id: str, scale: str, rows: list[dict], extra: dict | None = None) -> str:
    lines = [f"# Claims of {spec_id} ({scale} scale)", "",
             "| claim | paper | measured mean [95% CI] (per seed) | threshold | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        per = ", ".join(_fmt(v) for v in r["values"])
        lines.append(f"| **{r['id']}**: {r['statement']} | {_fmt(r['paper_value'])} | {_fmt(r['mean'])} "
                     f"[{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}] ({per}) | {r['metric']} {r['op']} "
                     f"{_fmt(r['threshold'])} | {r['verdict']} |")
    lines += ["", "Thresholds and why:"] + [f"- {r['id']}: {r['threshold_reason'] or 'from the paper statement'} "
                                             f"(source: {r['source']})" for r in rows]
    if extra:
        lines += ["", "```json", json.dumps(extra, indent=2, default=_fmt), "```"]
    return "\n".join(lines) + "\n"


def write_claims(out: Path, spec_id: str, scale: str, seeds: list[int], rows: list[dict], extra: dict):
    out.mkdir(parents=True, exist_ok=True)
    payload = {"spec": spec_id, "scale": scale, "seeds": seeds, "claims": rows, **extra}
    (out / "claims.json").write_text(json.dumps(payload, indent=2, default=lambda x: None))
    (out / "claims.md").write_text(claims_markdown(spec_id, scale, rows, extra.get("pooled")))
