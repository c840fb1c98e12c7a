"""The finished results on disk, found and ranked: results/<id>/, the committed references, and results written
elsewhere (--out); what `list` and the report show for each spec."""
from __future__ import annotations

import json
from pathlib import Path

from replicate.paths import code_fingerprint, reference_dir, results_root
from replicate.report.claims import overrides_text


def remember(spec_id: str, out: Path):
    """A result written outside results/ (--out) is listed in results/<id>/elsewhere.txt, so list and report
    find it."""
    home = results_root() / spec_id
    if home.resolve() in out.resolve().parents:
        return
    index = home / "elsewhere.txt"
    known = index.read_text().split("\n") if index.exists() else []
    if str(out.resolve()) not in known:
        home.mkdir(parents=True, exist_ok=True)
        with index.open("a") as fh:
            fh.write(f"{out.resolve()}\n")


def results_of(spec_id: str) -> list[dict]:
    """Every result of a spec on disk: its claims.json payload plus `dir` and `origin` (result or reference)."""
    index = results_root() / spec_id / "elsewhere.txt"
    elsewhere = [Path(p) for p in index.read_text().splitlines() if p] if index.exists() else []
    found = []
    for origin, base in (("result", results_root() / spec_id), ("reference", reference_dir() / spec_id),
                         *(("result", p) for p in elsewhere)):
        for f in base.glob("**/claims.json"):
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("spec", spec_id) == spec_id:  # --out may hold others' results
                found.append({**data, "dir": f.parent, "origin": origin, "mtime": f.stat().st_mtime})
    return found


def best_result(spec_id: str, scale: str | None = None) -> dict | None:
    """The result to show (of `scale` when given): the newest full result of the current code, else the newest
    full one, else the reference, else the newest smoke run (never a smoke run over a full one)."""
    found = [r for r in results_of(spec_id) if scale is None or r.get("scale") == scale]
    current = code_fingerprint()

    def rank(r):
        full, ref = r.get("kind", "full") == "full", r["origin"] == "reference"
        fresh = r.get("provenance", {}).get("code_fingerprint") == current
        return (full and not ref and fresh, full and not ref, ref, r["mtime"])
    return max(found, key=rank) if found else None


def describe(result: dict) -> str:
    """One line: 'k/n replicated (full result | reference | smoke run: ...), stale code' for list and report."""
    claims = [c for c in result["claims"] if not c.get("control_of")]
    n_ok = sum(c["verdict"] == "replicated" for c in claims)
    n_holm = sum(c.get("verdict_holm", c["verdict"]) == "replicated" for c in claims)
    if result["origin"] == "reference":
        label = "reference"
    elif result.get("kind", "full") == "full":
        label = f"full result in {result['dir']}"
    else:
        req = result.get("requested", {})
        label = f"smoke run ({overrides_text(req)}) in {result['dir']}"
    stale = result.get("provenance", {}).get("code_fingerprint") not in (None, code_fingerprint())
    verdicts = f"{n_ok}/{len(claims)} replicated, {n_holm} after Holm" if claims else "no claims (a figure only)"
    return f"{verdicts} ({label}){', made by other code' if stale else ''}"


def last_result(spec_id: str, scale: str | None = None) -> str:
    result = best_result(spec_id, scale)
    return describe(result) if result else "not run"
