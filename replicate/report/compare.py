"""`python -m replicate compare A B`: two results of a spec side by side, claim by claim, and a regression gate.

A and B are result folders (results/<id>/<scale>/, a smoke folder, figures/<id>/) or a spec id, which names its
committed reference (figures/<id>/). Per claim: each side's per-seed values, mean and 95% interval, the difference
of the means with its Welch 95% interval, and both verdicts, a change marked. `--gate` (A fresh, B the reference):
exit 1 when a verdict differs or A's mean leaves B's 95% interval (with one seed in B, when A's mean differs from
B's by more than 1e-6 relative), naming the claim; the overlay figure draws A's and B's per-seed values of each
shared claim, and, where both sides' runs are in the run store, their entropy and accuracy curves.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

from replicate.report.claims import _fmt, number
from replicate.errors import UserError


def _did_you_mean(where: str) -> str:
    """'did you mean fig1? ' for a near-miss of a committed reference's spec id, else ''."""
    import difflib
    from replicate.paths import reference_dir
    if "/" in where or not reference_dir().is_dir():
        return ""
    ids = [p.name for p in reference_dir().iterdir() if (p / "claims.json").is_file()]
    close = difflib.get_close_matches(where, ids, n=3)
    return f"did you mean {' or '.join(close)}? " if close else ""


def load_result(where: str | Path) -> tuple[Path, dict]:
    """(folder, claims.json payload) of a result folder or a spec id's committed reference."""
    path = Path(where)
    if not path.exists() and "/" not in str(where):
        from replicate.paths import reference_dir
        path = reference_dir() / str(where)
    if not (path / "claims.json").is_file():
        raise UserError(f"{where} has no claims.json; {_did_you_mean(str(where))}pass a result folder "
                        "(results/<id>/<scale>/, figures/<id>/) or a spec id with a committed reference")
    try:
        return path, json.loads((path / "claims.json").read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path / 'claims.json'}:{exc.lineno}: not JSON; rerun the result that wrote it") from None


def diff_interval(a: list, b: list, level: float = 0.95) -> tuple[float, float, float]:
    """Difference of means (a - b) and its Welch t-interval; NaN bounds when a side has fewer than 2 values."""
    a = np.asarray([x for x in a if x is not None and math.isfinite(x)], dtype=float)
    b = np.asarray([x for x in b if x is not None and math.isfinite(x)], dtype=float)
    if not len(a) or not len(b):
        return math.nan, math.nan, math.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return d, d - half, d + half


def gate_problem(a: dict, b: dict) -> str | None:
    """Why claim a (fresh) fails the gate against b (reference), or None."""
    if a["verdict"] != b["verdict"]:
        return f"verdict {b['verdict']} -> {a['verdict']}"
    mean_a, mean_b = number(a["mean"]), number(b["mean"])
    lo, hi = (number(x) for x in b["ci95"])
    if math.isnan(mean_a) != math.isnan(mean_b):
        return f"mean {_fmt(mean_b)} -> {_fmt(mean_a)}"
    if math.isnan(mean_a):
        return None
    if math.isnan(lo):  # one seed in the reference: no interval, so the mean itself
        ok = abs(mean_a - mean_b) <= 1e-6 * max(1.0, abs(mean_b))
        return None if ok else f"mean {mean_a:.4g} differs from the reference's single-seed {mean_b:.4g}"
    return None if lo - 1e-12 <= mean_a <= hi + 1e-12 else \
        f"mean {mean_a:.4g} outside the reference's 95% interval [{lo:.4g}, {hi:.4g}]"


def compare_claims(a: dict, b: dict) -> list[dict]:
    """One row per claim id in both (A's order), then the claims only one side has."""
    by_b = {c["id"]: c for c in b["claims"]}
    rows = []
    for ca in a["claims"]:
        cb = by_b.get(ca["id"])
        if cb is None:
            rows.append({"id": ca["id"], "statement": ca["statement"], "only": "A", "a": ca, "b": None})
            continue
        d, lo, hi = diff_interval(ca["values"], cb["values"])
        rows.append({"id": ca["id"], "statement": ca["statement"], "a": ca, "b": cb, "diff": d, "diff_ci95": [lo, hi],
                     "changed": ca["verdict"] != cb["verdict"], "gate": gate_problem(ca, cb)})
    ids = {c["id"] for c in a["claims"]}
    rows += [{"id": c["id"], "statement": c["statement"], "only": "B", "a": None, "b": c}
             for c in b["claims"] if c["id"] not in ids]
    return rows


def _side(c: dict | None) -> str:
    if c is None:
        return "absent"
    per = ", ".join(_fmt(v) for v in c["values"])
    return f"{_fmt(c['mean'])} [{_fmt(c['ci95'][0])}, {_fmt(c['ci95'][1])}] ({per})"


def render_md(a_path: Path, b_path: Path, a: dict, b: dict, rows: list[dict]) -> str:
    lines = [f"# compare {a.get('spec')} [{a.get('scale')}]: A = `{a_path}` vs B = `{b_path}`", "",
             f"A: {a.get('kind', 'full')} result, seeds {a.get('seeds')}, git {str(a.get('provenance', {}).get('git_revision'))[:10]}; "
             f"B: {b.get('kind', 'full')} result, seeds {b.get('seeds')}, git {str(b.get('provenance', {}).get('git_revision'))[:10]}", "",
             "| claim | A: mean [95%] (per seed) | B: mean [95%] (per seed) | A - B [95%] | verdict A | verdict B |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        va, vb = (r[k]["verdict"] if r[k] else "-" for k in ("a", "b"))
        diff = "-" if "diff" not in r else f"{_fmt(r['diff'])} [{_fmt(r['diff_ci95'][0])}, {_fmt(r['diff_ci95'][1])}]"
        mark = "**" if r.get("changed") else ""
        lines.append(f"| {mark}{r['id']}{mark}{' (changed)' if r.get('changed') else ''} | {_side(r['a'])} | "
                     f"{_side(r['b'])} | {diff} | {mark}{va}{mark} | {mark}{vb}{mark} |")
    return "\n".join(lines) + "\n"


def run_compare(a_where, b_where, out: Path | None = None, gate: bool = False, log=print) -> int:
    """Write compare.md/.json and the overlay figure; print the table; with gate, 1 when the gate fails."""
    a_path, a = load_result(a_where)
    b_path, b = load_result(b_where)
    if a.get("spec") != b.get("spec"):
        raise UserError(f"A is a result of {a.get('spec')!r}, B of {b.get('spec')!r}; compare two results of one spec")
    rows = compare_claims(a, b)
    from replicate.paths import results_root
    out = Path(out or results_root() / "compare" / f"{a['spec']}-{a_path.name}-vs-{b_path.parent.name}-{b_path.name}")
    out.mkdir(parents=True, exist_ok=True)
    md = render_md(a_path, b_path, a, b, rows)
    from replicate.report.claims import finite
    (out / "compare.json").write_text(json.dumps(finite({"a": str(a_path), "b": str(b_path), "rows": rows}),
                                                 indent=1, default=str))
    from replicate.report.compare_plot import overlay
    overlay(a, b, rows, out / "compare.png")
    problems = [f"gate: {r['id']}: {r['gate']}" for r in rows if r.get("gate")]
    problems += [f"gate: {r['id']}: only in {r['only']}" for r in rows if r.get("only")]
    verdict = ("GATE FAIL: " + "; ".join(p.removeprefix("gate: ") for p in problems) if problems else
               "GATE PASS: every verdict as the reference's, every mean inside its 95% interval") if gate else ""
    (out / "compare.md").write_text(md + ("\n" + verdict + "\n" if gate else ""))
    log(md)
    if gate:
        log(verdict)
    log(f"wrote {out}/compare.md, compare.json, compare.png")
    return 1 if gate and problems else 0
