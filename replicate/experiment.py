"""Reproduce one spec: train (or reuse) every run, then analyse, draw and judge the claims."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .analysis import ANALYSES
from .claims import judge_claims, write_claims
from .errors import UserError
from .figures import render
from .paths import reference_dir, results_root, store_root
from .runners import RUNNERS
from .specs import RunConfig, Spec, apply_overrides


def choose_seeds(spec_seeds: list[int], n: int | None) -> list[int]:
    """--seeds N: the spec's first N seeds, or 0..N-1 when N exceeds the spec's list."""
    if n is None:
        return spec_seeds
    return spec_seeds[:n] if n <= len(spec_seeds) else list(range(n))


def plan(spec: Spec, scale: str, seeds: int | None, steps: int | None,
         overrides: dict | None = None) -> tuple[dict[str, RunConfig], list[int]]:
    """Every arm's config (scale preset, variant, then --set overrides and --steps) and the seeds to run."""
    configs = {k: apply_overrides(c, overrides or {}) for k, c in spec.variant_configs(scale).items()}
    if steps is not None:
        configs = {k: apply_overrides(c, {"train": {"steps": steps}}, "--steps:") for k, c in configs.items()}
    return configs, choose_seeds(next(iter(configs.values())).seeds, seeds)


def reproduce(spec: Spec, scale: str | None = None, seeds: int | None = None, steps: int | None = None,
              out: Path | None = None, store: Path | None = None, force=False, resume=False,
              update_reference=False, log=print, overrides: dict | None = None) -> dict:
    scale = scale or spec.default_scale
    root = store_root(store)
    t0 = time.time()
    runner = RUNNERS[spec.runner]
    if runner.trains:
        configs, chosen = plan(spec, scale, seeds, steps, overrides)
    else:
        if overrides:
            raise UserError(f"{spec.id} trains nothing (runner {spec.runner}); --set applies to training configs only")
        configs, chosen = {}, choose_seeds(spec.runner_params.get("seeds", [0, 1, 2]), seeds)
    runs = runner.fn(spec, scale, configs, chosen, root, force=force, resume=resume, log=log)
    analysis = {"per_seed": {}, "pooled": {}}
    for name in spec.analyses:
        res = ANALYSES[name](runs)
        analysis["per_seed"].update(res["per_seed"])
        for variant, vals in res["pooled"].items():
            analysis["pooled"].setdefault(variant, {}).update(vals)
    out = Path(out or results_root() / spec.id / scale)
    paths = render(spec, runs, analysis, out, scale)
    rows = judge_claims(spec.claims, analysis["per_seed"])
    extra = {"pooled": analysis["pooled"], "per_seed": analysis["per_seed"], "wall_time_s": time.time() - t0,
             "spec_file": spec.path}
    write_claims(out, spec.id, scale, chosen, rows, extra)
    if update_reference:
        ref = reference_dir() / spec.id
        ref.mkdir(parents=True, exist_ok=True)
        for f in [*paths, out / "claims.json", out / "claims.md"]:
            shutil.copy2(f, ref / f.name)
        log(f"reference result updated in {ref}")
    return {"out": out, "claims": rows, "analysis": analysis, "runs": runs}


def last_result(spec_id: str) -> str:
    """'k/n replicated' from the newest claims.json of a spec (results/ first, then the reference)."""
    for base in (results_root() / spec_id, reference_dir() / spec_id):
        files = sorted(base.glob("**/claims.json"), key=lambda p: p.stat().st_mtime)
        if files:
            data = json.loads(files[-1].read_text())
            n_ok = sum(c["verdict"] == "replicated" for c in data["claims"])
            origin = "reference" if base.parent.name == "figures" else data["scale"]
            return f"{n_ok}/{len(data['claims'])} replicated ({origin})"
    return "not run"
