"""A markdown page of every figure and claims table: the newest result of each spec, else its reference."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .paths import reference_dir, results_root
from .specs import all_specs, load_spec


def write_report(out: Path | None = None) -> Path:
    out = Path(out or results_root() / "REPORT.md")
    lines = ["# replicate: results", ""]
    for path in sorted(set(all_specs().values())):
        spec = load_spec(path)
        found = sorted((results_root() / spec.id).glob("*/claims.json"), key=lambda p: p.stat().st_mtime)
        found = found or sorted((reference_dir() / spec.id).glob("claims.json"))
        lines += [f"## {spec.id}: {spec.reproduces}", ""]
        if not found:
            lines += [f"Not run yet: `python -m replicate {spec.id}`.", ""]
            continue
        res = found[-1].parent
        data = json.loads(found[-1].read_text())
        png = res / f"{spec.id}.png"
        if png.exists():
            lines += [f"![{spec.id}]({os.path.relpath(png, out.parent)})", ""]
        lines += [(res / "claims.md").read_text().split("\n", 2)[2].split("\n```json")[0], ""]
        lines += [f"Scale {data['scale']}, seeds {data['seeds']}.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    return out
