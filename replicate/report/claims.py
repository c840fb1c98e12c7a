"""Claims as data: evaluate each against its measured per-seed values; write claims.json and claims.md.

A claim over the mean (the default) with n >= 2 seeds: the 95% t-interval of the mean lies wholly on the
claim's side of the threshold -> replicated; wholly on the other side -> not replicated; otherwise (or with one
seed) -> inconclusive. A claim over every run ("over: every", e.g. "the law fits every run"): replicated when
every seed's value holds, not replicated when any seed's fails. A seed whose value could not be measured (NaN)
makes a claim inconclusive unless another seed already refutes it; the row says how many.
"""
from __future__ import annotations

import json
import math
import operator
from pathlib import Path

from replicate.analysis.stats import _measured, mean_ci, p_value  # noqa: F401  (claims judge with the analysis' interval)

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def verdict(values, op: str, threshold: float, over: str = "mean") -> str:
    holds, measured = OPS[op], _measured(values)
    missing = len(values) - len(measured)
    if over == "every":
        if any(not holds(v, threshold) for v in measured):
            return "not replicated"
        return "replicated" if measured and not missing else "inconclusive"
    m, lo, hi = mean_ci(measured)
    if missing or math.isnan(lo):
        return "inconclusive"
    if holds(lo, threshold) and holds(hi, threshold):
        return "replicated"
    if not holds(lo, threshold) and not holds(hi, threshold):
        return "not replicated"
    return "inconclusive"


def holm_reject(pvalues: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down: sort the m p-values ascending; reject the i-th smallest (1-based) while
    p_(i) < alpha / (m - i + 1); from the first that is not, nothing more is rejected."""
    order = sorted(range(len(pvalues)), key=lambda j: pvalues[j])
    out = [False] * len(pvalues)
    for rank, j in enumerate(order):
        if not pvalues[j] < alpha / (len(pvalues) - rank):
            break
        out[j] = True
    return out


def holm(rows: list[dict], alpha: float = 0.05) -> list[str]:
    """Each claim's verdict after a Holm correction over the family `rows` (one spec's claims).

    The family is the claims judged on the mean, with their `p_value`s; a claim with an unmeasured seed counts
    with p = 1 (it is inconclusive anyway). A rejected claim keeps its verdict (replicated or not replicated:
    the interval's side); one not rejected becomes inconclusive. Claims over every run are no test of a mean and
    keep their verdict.
    """
    family = [i for i, r in enumerate(rows) if r.get("over", "mean") == "mean"]
    pv = []
    for i in family:
        p = p_value(rows[i]["values"], rows[i]["threshold"])
        pv.append(1.0 if rows[i].get("unmeasured") or math.isnan(p) else p)
    out = [r["verdict"] for r in rows]
    for i, rejected in zip(family, holm_reject(pv, alpha)):
        if not rejected:
            out[i] = "inconclusive"
    return out


def worst(values, op: str) -> float:
    """The seed's value least favourable to the claim: the smallest for '>'/'>=', the largest for '<'/'<='."""
    measured = _measured(values)
    if not measured:
        return math.nan
    return min(measured) if op.startswith(">") else max(measured)


def judge_claims(claims, per_seed: dict, variant: str = "main") -> list[dict]:
    rows = []
    for c in claims:
        metric, _, arm = c.metric.partition("@")
        values = [number(v) for v in per_seed.get(metric, {}).get(arm or variant, [])]
        m, lo, hi = mean_ci(values)
        rows.append({"id": c.id, "statement": c.statement, "source": c.source, "paper_value": c.paper_value,
                     "metric": c.metric, "op": c.op, "threshold": c.threshold, "threshold_reason": c.threshold_reason,
                     "beats": c.beats, "over": c.over, "control_of": c.control_of,
                     "values": values, "unmeasured": len(values) - len(_measured(values)),
                     "mean": m, "min": min(_measured(values), default=math.nan), "worst": worst(values, c.op),
                     "ci95": [lo, hi],
                     "verdict": verdict(values, c.op, c.threshold, c.over),
                     "p_value": p_value(values, c.threshold) if c.over == "mean" else math.nan})
    for r, v in zip(rows, holm(rows)):
        r["verdict_holm"] = v
    return rows


def number(x) -> float:
    """A value read back from claims.json: None, which `finite` writes for NaN (an unmeasured seed), as NaN."""
    return math.nan if x is None else float(x)


def finite(obj):
    """obj with every NaN or infinity replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.3g}"
    return str(x)


def measured_cell(r: dict) -> str:
    """What a claim's verdict reads: the worst run for a claim over every run, else the mean and its 95% interval;
    for a claim with no values at all, that its metric and arm were never recorded (a misnamed arm reads so)."""
    if not r.get("values"):
        return f"no values: no analysis recorded {r['metric']} in this result"
    if r.get("over") == "every":
        return f"worst {_fmt(r.get('worst', r.get('min')))}"
    lo, hi = r.get("ci95") or [None, None]
    return f"{_fmt(r.get('mean'))} [{_fmt(lo)}, {_fmt(hi)}]"


def threshold_cell(r: dict) -> str:
    return f"{r['metric']} {r['op']} {_fmt(r['threshold'])}{' in every run' if r.get('over') == 'every' else ''}"


def rests_on_flagged(rows: list[dict], health: dict | None) -> dict[str, str]:
    """Claim id -> its verdict without the flagged runs, for each claim where that differs from its verdict over
    all runs (claims.md and the README mark it †): the verdict does not survive dropping the runs that broke."""
    again = {s["id"]: s["verdict"] for s in (health or {}).get("sensitivity") or []}
    return {r["id"]: again[r["id"]] for r in rows if r["id"] in again and again[r["id"]] != r["verdict"]}


SHARPENING = ("rl_gain_over_sharpening", "law_gain_over_sharpening")


def sharpening_lines(rows: list[dict]) -> list[str]:
    """When a spec's sharpening claim fails, a line that says so beside its other claims: they pool every run,
    including runs where RL did no better than the base policy at its best temperature."""
    failed = [r for r in rows if r["metric"].partition("@")[0] in SHARPENING and r["verdict"] != "replicated"]
    if not failed:
        return []
    fails = lambda r: sum(not OPS[r["op"]](v, r["threshold"]) for v in _measured(r["values"]))
    unmeasured = lambda r: len(r["values"]) - len(_measured(r["values"]))
    parts = [f"{r['id']} {r['verdict']} (RL not {r['op']} {_fmt(r['threshold'])} in {fails(r)} of "
             f"{len(_measured(r['values']))} values" + (f"; {unmeasured(r)} unmeasured" if unmeasured(r) else "") + ")"
             for r in failed]
    # an inconclusive claim with no failing value (an unmeasured run, or a mean whose interval holds 0) names no
    # run where RL did no better, so only a failing value earns the sentence about the other claims
    tail = (" The spec's other claims count every run, so they also stand on runs where RL did no better than the base "
            "policy at its best temperature." if any(fails(r) for r in failed) else "")
    return ["", "Sharpening null: " + "; ".join(parts) + "." + tail]


def claims_markdown(spec_id: str, scale: str, rows: list[dict], extra: dict | None = None,
                    health: dict | None = None) -> str:
    lines = [f"# Claims of {spec_id} ({scale} scale)", "",
             "| claim | paper | measured (per seed) | threshold | null it beats | verdict | after Holm |",
             "|---|---|---|---|---|---|---|"]
    flips = rests_on_flagged(rows, health)
    for r in rows:
        per = ", ".join(_fmt(v) for v in r["values"])
        name = f"**{r['id']}**" + (f" (control of {r['control_of']}: must not replicate)" if r.get("control_of") else "")
        mark = " †" if r["id"] in flips else ""
        lines.append(f"| {name}: {r['statement']} | {_fmt(r['paper_value'])} | {measured_cell(r)} ({per}) | "
                     f"{threshold_cell(r)} | {r['beats'] or '-'} | {r['verdict']}{mark} | "
                     f"{r.get('verdict_holm', r['verdict'])} |")
    lines += ["", count_line(rows)]
    if flips:
        lines += ["", f"† {len(flips)} verdict(s) change without the flagged runs: "
                  + "; ".join(f"{cid} {v}" for cid, v in flips.items()) + " (run health, below; a verdict one seed "
                  "from the threshold may also change without a healthy seed)."]
    lines += sharpening_lines(rows)
    if health:
        lines += health_lines(health)
    lines += ["", "Thresholds and why:"] + [f"- {r['id']}: {r['threshold_reason'] or 'from the paper statement'} "
                                             f"(source: {r['source']})" for r in rows]
    if extra:
        lines += ["", "```json", json.dumps(extra, indent=2, default=_fmt), "```"]
    return "\n".join(lines) + "\n"


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        out += _flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [(f"{prefix}{k}", v)]
    return out


def overrides_text(req: dict) -> str:
    """The command-line changes of a smoke run, only those given: '--steps 20 --set rollout.group_size=4'."""
    parts = ["--pilot"] if req.get("pilot") else []
    parts += [f"--{k} {req[k]}" for k in ("seeds", "steps") if req.get(k) is not None]
    parts += [f"--set {k}={json.dumps(v)}" for k, v in _flat(req.get("overrides") or {})]
    return " ".join(parts) or "no overrides"


def smoke_name(scale: str, req: dict, key: str) -> str:
    """A smoke run's result folder, named for what changed: tiny-steps20-seeds1-group_size4-<digest>."""
    import re
    parts = ["pilot"] if req.get("pilot") else []
    parts += [f"{k}{req[k]}" for k in ("steps", "seeds") if req.get(k) is not None]
    parts += [re.sub(r"[^A-Za-z0-9._]+", "", f"{k.rsplit('.', 1)[-1]}{v}") for k, v in _flat(req.get("overrides") or {})]
    return "-".join([scale, *(p[:24] for p in parts[:4]), key])


def count_line(rows: list[dict]) -> str:
    """'k of n replicated (k' after a Holm correction); j not replicated (j' after Holm); i inconclusive (i' after
    Holm)', claims and controls apart."""
    claims = [r for r in rows if not r.get("control_of")]
    controls = [r for r in rows if r.get("control_of")]

    def n(group, key, v):
        return sum(r.get(key, r["verdict"]) == v for r in group)
    line = (f"{n(claims, 'verdict', 'replicated')} of {len(claims)} claims replicated "
            f"({n(claims, 'verdict_holm', 'replicated')} after a Holm correction over this spec's claims, alpha 0.05); "
            f"{n(claims, 'verdict', 'not replicated')} not replicated ({n(claims, 'verdict_holm', 'not replicated')} "
            f"after Holm); {n(claims, 'verdict', 'inconclusive')} inconclusive "
            f"({n(claims, 'verdict_holm', 'inconclusive')} after Holm).")
    if controls:
        line += (f" Controls (a null judged by a claim's own rule; each must come out not replicated): "
                 f"{n(controls, 'verdict', 'not replicated')} of {len(controls)} not replicated "
                 f"({n(controls, 'verdict_holm', 'not replicated')} after Holm).")
    return line


def health_lines(health: dict) -> list[str]:
    """The run-health section: a stability row per arm, the flagged runs, and the claims without them."""
    lines = ["", "Run health (a run is flagged when it stops emitting EOS, its accuracy falls to 0, or its entropy "
             "rises above 1.5x its start: runners/rl/health.py):", "", "| arm | healthy seeds / seeds | flagged |",
             "|---|---|---|"]
    for arm, h in health.get("arms", {}).items():
        flagged = "; ".join(f"seed {s}: {why}" for s, why in h["flagged"].items()) or "-"
        lines.append(f"| {arm} | {h['healthy']} / {h['seeds']} | {flagged} |")
    sens = health.get("sensitivity")
    if health.get("sensitivity_error"):
        why = health["sensitivity_error"]
        lines += ["", f"Sensitivity: the claims could not be judged without the flagged runs ({why})."]
    if sens:
        lines += ["", "Sensitivity (claims stay judged over all runs, as pre-registered; here the same claims without "
                  "the flagged runs): " + "; ".join(f"{s['id']} {s['verdict']} ({_fmt(s['mean'])} "
                                                   f"[{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}], n={s['n']})"
                                                   for s in sens) + "."]
    return lines


def provenance_line(payload: dict) -> str:
    """What a result is and where it came from, in one markdown line."""
    prov, req = payload.get("provenance", {}), payload.get("requested", {})
    kind = payload.get("kind", "full")
    kind = ("Full result" if kind == "full" else
            "Pilot on the tuning seeds (for `power` and tuning choices): never judged" if kind == "pilot" else
            f"Smoke run ({overrides_text(req)}): not comparable with the full result")
    rows = sorted({r.get("rows") for r in prov.get("runs", [])} - {None})
    return (f"{kind}. Seeds {payload.get('seeds')}, metric rows per run {rows}; spec {prov.get('spec_file')} "
            f"(sha {prov.get('spec_digest')}); code fingerprint {prov.get('code_fingerprint')}, git "
            f"{str(prov.get('git_revision'))[:10]}; torch {prov.get('torch')}, transformers {prov.get('transformers')}; "
            f"CPU {prov.get('processor')}. A reference is bit-exact only on the CPU kind that made it: compare verdicts "
            "and intervals.")


def write_claims(out: Path, spec_id: str, scale: str, seeds: list[int], rows: list[dict], extra: dict):
    out.mkdir(parents=True, exist_ok=True)
    payload = finite({"spec": spec_id, "scale": scale, "seeds": seeds, "claims": rows, **extra})
    (out / "claims.json").write_text(json.dumps(payload, indent=2, default=str, allow_nan=False))
    md = claims_markdown(spec_id, scale, payload["claims"], payload.get("pooled"), payload.get("health"))
    head, _, rest = md.partition("\n\n")
    (out / "claims.md").write_text(f"{head}\n\n{provenance_line(payload)}\n\n{rest}")
