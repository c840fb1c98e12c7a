"""`python -m replicate report`: one page of every spec's figure and claims table, showing for each spec the result
`list` shows (the newest full result of the current code, else a full one, else the reference, else a labelled
smoke run)."""
from __future__ import annotations

import os
from pathlib import Path

from replicate.report.results import best_result, describe
from replicate.paths import results_root
from replicate.specs import all_specs, load_spec


def write_report(out: Path | None = None) -> Path:
    """REPORT.md, and index.html beside it (report/index_html.py). Specs in `list` order."""
    from replicate.report.index_html import spec_order, write_index
    out = Path(out or results_root() / "REPORT.md")
    lines = ["# replicate: results", ""]
    loaded = sorted((load_spec(path) for path in set(all_specs().values())), key=spec_order)
    specs = {spec.id: spec for spec in loaded}
    others = sorted(p.name for p in results_root().glob("*") if p.is_dir() and p.name not in specs
                    and any(p.glob("**/claims.json")))  # results of spec files outside experiments/
    for spec_id in [*specs, *others]:
        spec = specs.get(spec_id)
        lines += [f"## {spec_id}: {spec.reproduces if spec else '(a spec outside experiments/)'}", ""]
        result = best_result(spec_id, spec.default_scale if spec else None)
        if result is None:
            lines += [f"Not run yet: `python -m replicate {spec_id}`.", ""]
            continue
        lines += _section(spec_id, result, out)
        for scale in (spec.scales if spec else []):
            other = best_result(spec_id, scale) if scale != spec.default_scale else None
            if other is not None:
                lines += [f"### {spec_id} at scale {scale}", ""] + _section(spec_id, other, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    write_index(loaded, out.parent / "index.html")
    return out


def _section(spec_id: str, result: dict, out: Path) -> list[str]:
    """The figure, the line saying which result it is, and the claims table of one result."""
    res, lines = Path(result["dir"]), []
    png = res / f"{spec_id}.png"
    if png.exists():
        lines += [f"![{spec_id}]({os.path.relpath(png, out.parent)})", ""]
    lines += [f"Showing: {describe(result)}.", ""]
    return lines + [(res / "claims.md").read_text().split("\n", 2)[2].split("\n```json")[0], ""]
