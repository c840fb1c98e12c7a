"""Reproduce one spec: train (or reuse) every run, then analyse, draw and judge the claims."""
from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from replicate.analysis import ANALYSES
from replicate.errors import UserError
from replicate.paths import (REPO, digest, ensure_writable, home, is_main_process, reference_dir, results_root,
                             store_root)
from replicate.report.claims import judge_claims, smoke_name, write_claims
from replicate.report.figures import render
from replicate.report.results import remember
from replicate.runners import RUNNERS
from replicate.specs import RunConfig, Spec, apply_overrides
from replicate.store import provenance


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


def seeds_warning(spec: Spec, seeds: list, log=print) -> None:
    """Fewer than 3 seeds: say, before anything trains, what that does to the claims over the seeds' mean."""
    if len(seeds) >= 3 or not any(c.over == "mean" for c in spec.claims):
        return
    if len(seeds) == 1:
        log("warning: 1 seed: a claim over the seeds' mean has no interval and comes out inconclusive; "
            "use --seeds 3 or more")
        return
    from scipy import stats
    log(f"warning: {len(seeds)} seeds: a mean claim's 95% interval is ±{stats.t.ppf(0.975, len(seeds) - 1):.1f} "
        f"standard errors (t, {len(seeds) - 1} degree of freedom), so most come out inconclusive; use --seeds 3 or "
        f"more (3 seeds: ±{stats.t.ppf(0.975, 2):.1f})")


def reproduce(spec: Spec, scale: str | None = None, seeds: int | None = None, steps: int | None = None,
              out: Path | None = None, store: Path | None = None, force=False, resume=False,
              update_reference=False, overrides: dict | None = None, log=print, runner=None, pilot=False) -> dict:
    """Run (or reuse) every run of the spec, analyse, draw and judge its claims.

    A run with the spec's defaults (seeds, steps, no overrides) is a full result, written to
    results/<id>/<scale>/; anything else is a smoke run, written to results/<id>/<scale>-<what was asked>-<digest>/,
    so it never replaces a full result, and --update-reference refuses it. `runner` replaces the spec's runner (the verl
    backend's launcher: its runs then go through the same analysis). `pilot` runs the spec's tuning_seeds instead
    of its judged seeds (for `power` and for tuning choices), into results/<id>/<scale>-pilot/: never a reference.
    """
    scale = scale or spec.default_scale
    spec.check_scale(scale)  # before --out is made: `lemma --scale huge` wrote a result under a scale it lacks
    if not spec.panels:  # the figure needs one; known before anything trains
        raise UserError(f"{spec.path}: panels: none given; add at least one, e.g. `panels: [{{kind: curves}}]`")
    requested = {"seeds": seeds, "steps": steps, "overrides": overrides or {}}
    if pilot:
        check_pilot(spec, seeds)
        requested["pilot"] = True
    full = not any(requested.values())
    if update_reference and not full:
        raise UserError("--update-reference takes a full run only (the spec's seeds and steps, no --set, no "
                        "--pilot); drop --seeds/--steps/--set/--pilot")
    what = "--out" if out else "results to"
    out = Path(out or results_root() / spec.id / result_name(scale, requested, full, pilot))
    refuse_shared_out(out, spec.id, what)
    root = store_root(store)
    with output_dir(out, what), output_dir(root, "--store" if store else "the run store"):
        t0 = time.time()
        runner = runner or RUNNERS[spec.runner]
        spec = spec.at_scale(scale)  # runner_params as the runner reads them here (their `scales:` entry merged)
        configs, chosen = runs_planned(spec, runner, scale, seeds, steps, overrides)
        chosen = list(spec.tuning_seeds) if pilot else chosen
        seeds_warning(spec, chosen, log)
        store_runs = runner.fn(spec, scale, configs, chosen, root, force=force, resume=resume, log=log)
        if not is_main_process():  # under `accelerate launch`: process 0 alone analyses and writes the result
            return {"out": out, "claims": [], "analysis": None, "runs": None}
        runs = {v: {s: run.metrics() for s, run in by_seed.items()} for v, by_seed in store_runs.items()}
        analysis = analyse(spec, runs, warmup_units(configs, runs))
        rows = judge_claims(spec.claims, analysis["per_seed"])
        health = health_section(spec, configs, runs) if configs and spec.runner == "rl" else None
        analysis["health"] = (health or {}).get("arms", {})
        paths = render(spec, runs, analysis, out, scale)
        extra = {"health": health, "kind": "full" if full else "pilot" if pilot else "smoke", "requested": requested,
                 "provenance": result_provenance(spec, configs, store_runs), "pooled": analysis["pooled"],
                 "per_seed": analysis["per_seed"], "wall_time_s": time.time() - t0}
        write_claims(out, spec.id, scale, chosen, rows, extra)
        if analysis.get("table"):
            write_table(out, analysis["table"], len(chosen), table_model(configs))
        remember(spec.id, out)
        if update_reference:
            tables = [out / "table.csv", out / "table.md"] if analysis.get("table") else []
            copy_to_reference(spec, scale, [*paths, out / "claims.json", out / "claims.md", *tables], log)
        return {"out": out, "claims": rows, "analysis": analysis, "runs": runs}


def result_name(scale: str, requested: dict, full: bool, pilot: bool) -> str:
    """The result's folder under results/<id>/: the scale for a full run, <scale>-pilot for a pilot of the spec's
    steps, else <scale>-<what was asked>-<digest> (a smoke run: never confused with a full result)."""
    if full:
        return scale
    if pilot and not (requested["steps"] or requested["overrides"]):
        return f"{scale}-pilot"
    return smoke_name(scale, requested, digest(requested, n=8))


def runs_planned(spec: Spec, runner, scale: str, seeds, steps, overrides) -> tuple[dict, list[int]]:
    """The training configs and the seeds to run: plan() for a runner that trains; none for one that does not (its
    seeds from runner_params), where --set is refused."""
    if runner.trains:
        return plan(spec, scale, seeds, steps, overrides)
    if overrides:
        raise UserError(f"{spec.id} trains nothing (runner {spec.runner}); --set applies to training configs only")
    return {}, choose_seeds(spec.runner_params.get("seeds", [0, 1, 2]), seeds)


def copy_to_reference(spec: Spec, scale: str, files: list[Path], log=print) -> None:
    """--update-reference: the result's figures, claims and table into figures/<id>/ (figures/<id>/<scale>/ for a
    scale other than the spec's default)."""
    ref = reference_dir() / spec.id / ("" if scale == spec.default_scale else scale)
    ref.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, ref / f.name)
    log(f"reference result updated in {ref}")


def check_pilot(spec: Spec, seeds: int | None) -> None:
    """A pilot runs the tuning seeds the spec declares; it refuses --seeds and a spec that declares none."""
    if seeds is not None:
        raise UserError("--pilot runs the spec's tuning_seeds; drop --seeds")
    if not spec.tuning_seeds:
        raise UserError(f"{spec.path}: --pilot needs tuning_seeds: (seeds kept for tuning, never judged); "
                        "add e.g. `tuning_seeds: [100, 101, 102]` to the spec")


STAND_IN_MODEL = "tiny"  # the model column of a tiny-tier table.csv (a stand-in model of the reported tables)


def table_model(configs: dict) -> str:
    """The model column of table.csv: the stand-in `tiny` for a tiny model, else the model's name (the last
    part of its hub id: Qwen/Qwen2.5-7B -> Qwen2.5-7B, as the reported tables name it)."""
    model = next(iter(configs.values())).model if configs else None
    if model is None or model.kind == "tiny" or not model.path:
        return STAND_IN_MODEL
    return Path(str(model.path)).name


def write_table(out: Path, table: list[dict], n_seeds: int, model: str = STAND_IN_MODEL):
    """table.csv (model,method,<level or benchmark>...,average: mean over seeds, percent), the form `python -m
    replicate check` reads, and table.md with each cell's 95% t half-interval over the seeds. For a real model
    table.csv leaves `average` out: the paper's Avg. is not the unweighted mean of its columns, so check
    averages the benchmarks itself (and says so) rather than compare two different averages."""
    import csv
    cols = [k for k in table[0] if k != "arm" and not k.endswith("_ci")]
    csv_cols = [c for c in cols if c != "average" or model == STAND_IN_MODEL]
    with open(out / "table.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["model", "method", *csv_cols])
        for row in table:
            w.writerow([model, row["arm"], *("" if row[c] is None else row[c] for c in csv_cols)])
    cell = lambda r, c: "—" if r[c] is None else f"{r[c]:.1f} ± {r[c + '_ci']:.1f}" if r[c + "_ci"] is not None else f"{r[c]:.1f}"
    lines = [f"Accuracy (%) of the final policies, mean ± 95% t half-interval over {n_seeds} seeds", "",
             "| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {r['arm']} | " + " | ".join(cell(r, c) for c in cols) + " |" for r in table]
    (out / "table.md").write_text("\n".join(lines) + "\n")


def health_section(spec: Spec, configs: dict, runs: dict) -> dict:
    """Per arm, which runs broke (runners/rl/health.py); when any did, the claims judged again without them (a
    sensitivity line: the pre-registered verdicts stay those over all runs). A paired claim whose partner run
    was dropped loses that seed (its NaN is left out here, never in the verdict)."""
    from replicate.analysis.stats import _measured, mean_ci
    from replicate.report.claims import verdict
    from replicate.runners.rl.health import run_health
    arms = run_health(runs, {v: c.rollout.max_new_tokens for v, c in configs.items()})
    out = {"arms": arms, "sensitivity": []}
    if not any(h["flagged"] for h in arms.values()):
        return out
    kept = {v: {s: r for s, r in seeds.items() if s not in arms[v]["flagged"]} for v, seeds in runs.items()}
    try:
        kept = {v: k for v, k in kept.items() if k}
        again = judge_claims(spec.claims, analyse(spec, kept, warmup_units(configs, kept))["per_seed"])
    except Exception as exc:  # an analysis that needs the dropped runs: say so rather than guess
        out["sensitivity_error"] = f"{type(exc).__name__}: {exc}"
        return out
    for r in again:
        v = _measured(r["values"])
        m, lo, hi = mean_ci(v)
        out["sensitivity"].append({"id": r["id"], "n": len(v), "mean": m, "ci95": [lo, hi],
                                   "verdict": verdict(v, r["op"], r["threshold"], r["over"]) if v else "not measured"})
    return out


def warmup_units(configs: dict, runs: dict) -> dict | None:
    """{variant: {seed: warm-up key}}: runs with one key share their warm-up (the same base policy), so they are
    not independent (the predictability specs' "unit" and "seed" pseudo-arms)."""
    if not configs:
        return None
    from replicate.runners.rl.warmup import warmup_key
    return {v: {s: warmup_key(configs[v], s) for s in seeds} for v, seeds in runs.items() if v in configs}


def analyse(spec: Spec, runs: dict, units: dict | None = None) -> dict:
    analysis = {"per_seed": {}, "pooled": {}}
    for name in spec.analyses:
        res = ANALYSES[name](runs, units)
        if any(len(row) > 3 for row in res.get("table", [])):  # a table with columns beyond the average
            analysis["table"] = res["table"]
        analysis["per_seed"].update(res["per_seed"])
        for variant, vals in res["pooled"].items():
            analysis["pooled"].setdefault(variant, {}).update(vals)
    return analysis


def refuse_shared_out(out: Path, spec_id: str, what: str) -> None:
    """Refuse, in one line, an output folder that would mix results: results/ or the references' folder (or one
    above them), or a folder holding another spec's result, which this one would overwrite."""
    resolved = out.resolve()
    for root in (results_root(), reference_dir()):
        if resolved == root.resolve() or resolved in root.resolve().parents:
            raise UserError(f"{what} {out} holds every spec's results ({root}); give {spec_id} a folder of its own, "
                            f"e.g. --out {out / spec_id}")
    try:
        other = json.loads((out / "claims.json").read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return
    if other and other != spec_id:
        raise UserError(f"{what} {out} holds {other}'s result, which {spec_id}'s would overwrite; choose another "
                        "folder (or remove that one)")


@contextmanager
def output_dir(out: Path, what: str):
    """The output directory, created (or refused in one line) before anything trains; if what follows fails,
    the empty directories it created are removed again."""
    created = ensure_writable(out, what)
    try:
        yield out
    except BaseException:
        for d in created:  # deepest first
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise


def result_provenance(spec: Spec, configs: dict, store_runs: dict) -> dict:
    """Where a result came from: the spec file and its hash, every run directory with its config hash, the
    code fingerprint and the library versions."""
    text = Path(spec.path).read_text() if spec.path and Path(spec.path).exists() else ""
    spec_file = _relative(Path(spec.path)) if spec.path else None
    runs = [{"variant": v, "seed": s, "dir": _relative(run.path), "rows": len(run.metrics()),
             **({"config_digest": configs[v].digest()} if v in configs else {})}
            for v, by_seed in store_runs.items() for s, run in by_seed.items()]
    return {**provenance({}), "spec_file": spec_file, "spec_digest": digest(text), "runs": runs}


def _relative(path: Path) -> str:
    """A path relative to the checkout or the home when it lies inside one (references stay portable)."""
    for base in (REPO, home()):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)
