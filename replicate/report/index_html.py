"""results/index.html: a static page to browse every result (no server, no script): a scoreboard of every
spec x scale at the top (replicated / not replicated / inconclusive counts, which result, its provenance), then
per spec its figure inline, its claims table and links to claims.md and the spec file."""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

from replicate.report.claims import _fmt as fmt, measured_cell, threshold_cell
from replicate.report.results import best_result
from replicate.paths import code_fingerprint, results_root

VERDICTS = ("replicated", "not replicated", "inconclusive")
OTHER_CODE = ("<b>made by other code</b>: the result's code fingerprint (a hash of the code that decides the "
              "numbers: runners, algorithms, tasks, evaluators) differs from this checkout's {now}. Its verdicts are "
              "those of the code that made it (git revision and fingerprint in its row); rerunning the spec with this "
              "checkout may move its numbers. A committed reference is usually made by an earlier revision.")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;
vertical-align:top}th{background:#f3f3f3}.replicated{background:#dff5df}.not{background:#f9dcdc}
.inconclusive{background:#fff4d0}img{max-width:100%;border:1px solid #ddd}.prov{color:#666;font-size:12px}"""


def spec_order(spec) -> tuple:
    """Sort key: paper, then figures before tables before the rest, by number (fig2 before fig10)."""
    m = re.search(r"(fig|table)(\d+)", spec.id)
    return (spec.paper, 2 if m is None else ("fig", "table").index(m.group(1)), int(m.group(2)) if m else 0, spec.id)


def _e(x) -> str:
    return html.escape(str(x))


def _counts(result: dict) -> dict:
    return {v: sum(c["verdict"] == v for c in result["claims"]) for v in VERDICTS}


def _which(result: dict) -> str:
    if result["origin"] == "reference":
        return "committed reference"
    return "full result" if result.get("kind", "full") == "full" else "smoke run"


def _stale(result: dict) -> bool:
    return result.get("provenance", {}).get("code_fingerprint") not in (None, code_fingerprint())


def _prov(result: dict) -> str:
    p = result.get("provenance", {})
    return (f"git {_e(str(p.get('git_revision'))[:10])}, code {_e(p.get('code_fingerprint'))}, "
            f"torch {_e(p.get('torch'))}, CPU {_e(p.get('processor'))}, seeds {_e(result.get('seeds'))}")


def _rel(path: Path, out: Path) -> str:
    return html.escape(os.path.relpath(path, out.parent))


def scoreboard(entries: list[tuple], out: Path) -> list[str]:
    rows = ["<table><tr><th>paper</th><th>spec</th><th>scale</th><th>replicated</th><th>not replicated</th><th>inconclusive</th>"
            "<th>claims</th><th>result</th><th>provenance</th></tr>"]
    for spec, scale, result in entries:
        paper = f"<td>{_e(spec.paper)}</td>"
        if result is None:
            rows.append(f"<tr>{paper}<td><a href='#{_e(spec.id)}'>{_e(spec.id)}</a></td><td>{_e(scale)}</td>"
                        f"<td colspan=6>not run: <code>python -m replicate {_e(spec.id)}</code></td></tr>")
            continue
        n = _counts(result)
        stale = " <a href='#other-code'>made by other code</a>" if _stale(result) else ""
        rows.append(f"<tr>{paper}<td><a href='#{_e(spec.id)}'>{_e(spec.id)}</a></td><td>{_e(scale)}</td>"
                    f"<td class=replicated>{n['replicated']}</td><td class=not>{n['not replicated']}</td>"
                    f"<td class=inconclusive>{n['inconclusive']}</td><td>{len(result['claims'])}</td>"
                    f"<td>{_which(result)}{stale}</td><td class=prov>{_prov(result)}</td></tr>")
    return rows + ["</table>"]


def _verdict_cell(verdict: str) -> str:
    cls = {"replicated": "replicated", "not replicated": "not"}.get(verdict, "inconclusive")
    return f"<td class={cls}>{_e(verdict)}</td>"


def claims_table(result: dict) -> list[str]:
    """The claims as claims.md has them: the same measured and threshold cells, the verdict and after Holm."""
    rows = ["<table><tr><th>claim</th><th>paper</th><th>measured: mean [95%], or the worst run</th><th>per seed</th>"
            "<th>threshold</th><th>null it beats</th><th>verdict</th><th>after Holm</th></tr>"]
    for c in result["claims"]:
        control = f" (control of {_e(c['control_of'])}: must not replicate)" if c.get("control_of") else ""
        rows.append(f"<tr><td><b>{_e(c['id'])}</b>{control}: {_e(c['statement'])}</td>"
                    f"<td>{_e(fmt(c.get('paper_value')))}</td><td>{_e(measured_cell(c))}</td>"
                    f"<td>{', '.join(fmt(v) for v in c['values'])}</td><td>{_e(threshold_cell(c))}</td>"
                    f"<td>{_e(c.get('beats') or '-')}</td>{_verdict_cell(c['verdict'])}"
                    f"{_verdict_cell(c.get('verdict_holm', c['verdict']))}</tr>")
    return rows + ["</table>"]


def section(spec, scale: str, result: dict | None, out: Path, first: bool) -> list[str]:
    head = [f"<h2 id='{_e(spec.id)}'>{_e(spec.id)}</h2><p>{_e(spec.reproduces)}</p>"] if first else []
    head.append(f"<h3>{_e(spec.id)} at scale {_e(scale)}</h3>")
    if result is None:
        return head + [f"<p>Not run yet: <code>python -m replicate {_e(spec.id)} --scale {_e(scale)}</code></p>"]
    res = Path(result["dir"])
    png = res / f"{spec.id}.png"
    links = [f"<a href='{_rel(res / 'claims.md', out)}'>claims.md</a>", f"<a href='{_rel(Path(spec.path), out)}'>spec</a>"]
    body = [f"<p class=prov>{_which(result)} in <code>{_e(res)}</code>; {_prov(result)}"
            f"{' (made by other code)' if _stale(result) else ''}. {' · '.join(links)}</p>"]
    if png.exists():
        body.append(f"<img src='{_rel(png, out)}' alt='{_e(spec.id)} figure'>")
    return head + body + claims_table(result)


def write_index(specs: list, out: Path | None = None) -> Path:
    """Write the page; specs in list order (spec_order). Returns its path."""
    out = Path(out or results_root() / "index.html")
    entries = []
    for spec in sorted(specs, key=spec_order):
        scales = [spec.default_scale] + [s for s in spec.scales if s != spec.default_scale]
        for scale in scales:
            result = best_result(spec.id, scale)
            if result is not None or scale == spec.default_scale:
                entries.append((spec, scale, result))
    total = {v: sum(_counts(r)[v] for _, _, r in entries if r) for v in VERDICTS}
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>replicate: results</title>",
            f"<style>{STYLE}</style></head><body><h1>replicate: results</h1>",
            f"<p>{len(entries)} spec x scale results: {total['replicated']} claims replicated, "
            f"{total['not replicated']} not replicated, {total['inconclusive']} inconclusive. A claim is replicated "
            "when the 95% t-interval of its seeds' mean lies wholly on its side of the threshold (a claim over "
            "every run: when its worst run does); the counts are before a multiple-comparison correction, and "
            "each claim's verdict after a Holm correction over its spec's claims is beside it.</p>",
            *scoreboard(entries, out),
            f"<p id='other-code' class=prov>{OTHER_CODE.format(now=_e(code_fingerprint()))}</p>"]
    for i, (spec, scale, result) in enumerate(entries):
        page += section(spec, scale, result, out, first=i == 0 or entries[i - 1][0].id != spec.id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(page + ["</body></html>"]))
    return out
