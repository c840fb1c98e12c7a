"""Runners by name: each turns a spec's resolved configs and seeds into run-store runs.

A runner returns {variant: {seed: metrics rows}}, read back from the run store, so analysis, figures and claims
never know which runner produced a run. A spec names its runner (`runner: rl` by default).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from .paths import digest
from .store import Run, check_resumable


@dataclass(frozen=True)
class Runner:
    fn: Callable
    trains: bool = True  # needs the spec's training config (body + scale preset)


RUNNERS: dict[str, Runner] = {}


def register_runner(name: str, trains: bool = True):
    def deco(fn):
        RUNNERS[name] = Runner(fn, trains)
        return fn
    return deco


@register_runner("rl")
def run_rl(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    """Train (or reuse) one RL run per variant and seed; finished runs with the same config are reused."""
    from .trainer import train  # torch/transformers load only when something trains

    todo = [(v, c, s, Run.for_config(root, spec.id, v, c, s, scale)) for v, c in configs.items() for s in seeds]
    for _, _, _, run in todo:
        check_resumable(run, resume, force)
    pending = [t for t in todo if not t[3].done]
    if len(todo) > len(pending):
        log(f"reusing {len(todo) - len(pending)} finished run(s) from {root / spec.id}")
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


def _study(spec, scale, configs, seeds, root, force, log, points: Callable) -> dict:
    """{"main": {seed: points}}; a finished study with the same parameters is reused."""
    params, out = spec.runner_params, {}
    config = configs["main"].model_dump() if configs else None
    for seed in seeds:
        run = Run(root / spec.id / f"{scale}-{spec.runner}-s{seed}-{digest({'params': params, 'config': config})}")
        if not run.done or force:
            run.path.mkdir(parents=True, exist_ok=True)
            run.reset()
            run.config_file.write_text(json.dumps({"seed": seed, "runner": spec.runner, "params": params,
                                                   "config": config}, indent=2))
            for i, row in enumerate(points(seed)):
                run.append_metrics({"step": i, **row})
            run.finish()
        out[seed] = run.metrics()
    return {"main": out}


@register_runner("lemma_exact", trains=False)
def run_lemma_exact(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    from .studies import lemma_exact_points
    return _study(spec, scale, configs, seeds, root, force, log,
                  lambda seed: lemma_exact_points(spec.runner_params, seed))


@register_runner("lemma_lm")
def run_lemma_lm(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    from .studies import logit_step_probe
    return _study(spec, scale, configs, seeds, root, force, log,
                  lambda seed: logit_step_probe(configs["main"], seed, root, log=log, **spec.runner_params))


from . import preference  # noqa: E402,F401  (registers RUNNERS["preference"]: DAST and its baselines)
