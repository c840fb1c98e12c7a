"""Reproduce one spec: train (or reuse) every run, then analyse, draw and judge the claims."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from .analysis import ANALYSES
from .claims import evaluate_claims, write_claims
from .figures import render
from .specs import RunConfig, Spec, deep_merge
from .store import Run, check_resumable, store_root

REPO = Path(__file__).resolve().parent.parent


def choose_seeds(spec_seeds: list[int], n: int | None) -> list[int]:
    """--seeds N: the spec's first N seeds, or 0..N-1 when N exceeds the spec's list."""
    if n is None:
        return spec_seeds
    return spec_seeds[:n] if n <= len(spec_seeds) else list(range(n))


def plan(spec: Spec, scale: str, seeds: int | None, steps: int | None) -> tuple[dict[str, RunConfig], list[int]]:
    configs = spec.variant_configs(scale)
    if steps is not None:
        configs = {k: RunConfig.model_validate(deep_merge(c.model_dump(), {"train": {"steps": steps}}))
                   for k, c in configs.items()}
    return configs, choose_seeds(next(iter(configs.values())).seeds, seeds)


def run_all(spec: Spec, scale: str, configs: dict, seeds: list[int], root: Path, force=False, resume=False,
            log=print) -> dict:
    """{variant: {seed: metrics}}; finished runs with the same config are reused, not retrained."""
    from .trainer import train  # torch/transformers load only when something trains

    todo = [(v, c, s, Run.for_config(root, spec.id, v, c, s, scale)) for v, c in configs.items() for s in seeds]
    for _, _, _, run in todo:
        check_resumable(run, resume, force)
    pending = [t for t in todo if not t[3].done]
    reused = len(todo) - len(pending)
    if reused:
        log(f"reusing {reused} finished run(s) from {root / spec.id}")
    total = sum(c.train.steps for _, c, _, _ in pending)
    with tqdm(total=total, desc=f"{spec.id} [{scale}]", unit="step", disable=not pending, leave=False) as bar:
        for variant, config, seed, run in pending:
            bar.set_postfix_str(f"{variant} seed {seed}")

            def progress(step, m, bar=bar):
                bar.update(1)
                if "val_acc" in m:
                    bar.set_postfix_str(f"H={m['entropy']:.3f} acc={m['val_acc']:.3f}")
            train(run, config, seed, root, resume=resume, progress=progress, log=tqdm.write)
    return {v: {s: run.metrics() for vv, _, s, run in todo if vv == v} for v in configs}


def reproduce(spec: Spec, scale: str | None = None, seeds: int | None = None, steps: int | None = None,
              out: Path | None = None, store: Path | None = None, force=False, resume=False,
              update_reference=False, log=print) -> dict:
    scale = scale or spec.default_scale
    root = store_root(store)
    t0 = time.time()
    if spec.study == "lemma_exact":
        from .studies import run_study
        chosen = choose_seeds(spec.study_params.get("seeds", [0, 1, 2]), seeds)
        runs = run_study(spec, scale, {}, chosen, root, force=force, log=log)
    else:
        configs, chosen = plan(spec, scale, seeds, steps)
        if spec.study == "lemma_lm":
            from .studies import run_study
            runs = run_study(spec, scale, configs, chosen, root, force=force, log=log)
        else:
            runs = run_all(spec, scale, configs, chosen, root, force=force, resume=resume, log=log)
    analysis = {"per_seed": {}, "pooled": {}}
    for name in spec.analyses:
        res = ANALYSES[name](runs)
        analysis["per_seed"].update(res["per_seed"])
        for variant, vals in res["pooled"].items():
            analysis["pooled"].setdefault(variant, {}).update(vals)
    out = Path(out or REPO / "results" / spec.id / scale)
    paths = render(spec, runs, analysis, out, scale)
    rows = evaluate_claims(spec.claims, analysis["per_seed"])
    extra = {"pooled": analysis["pooled"], "per_seed": analysis["per_seed"], "wall_time_s": time.time() - t0,
             "spec_file": spec.path}
    write_claims(out, spec.id, scale, chosen, rows, extra)
    if update_reference:
        ref = REPO / "figures" / spec.id
        ref.mkdir(parents=True, exist_ok=True)
        for f in [*paths, out / "claims.json", out / "claims.md"]:
            shutil.copy2(f, ref / f.name)
        log(f"reference result updated in {ref}")
    return {"out": out, "claims": rows, "analysis": analysis, "runs": runs}


def last_result(spec_id: str) -> str:
    """'k/n replicated' from the newest claims.json of a spec (results/ first, then the reference)."""
    for base in (REPO / "results" / spec_id, REPO / "figures" / spec_id):
        files = sorted(base.glob("**/claims.json"), key=lambda p: p.stat().st_mtime)
        if files:
            data = json.loads(files[-1].read_text())
            n_ok = sum(c["verdict"] == "replicated" for c in data["claims"])
            origin = "reference" if base.parent.name == "figures" else data["scale"]
            return f"{n_ok}/{len(data['claims'])} replicated ({origin})"
    return "not run"
