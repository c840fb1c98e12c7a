"""Runners by name: each turns a spec's resolved configs and seeds into run-store runs.

A runner returns {variant: {seed: Run}}, directories of the run store, so analysis, figures and claims read
metrics rows from the store and never know which runner produced a run. A spec names its runner (`runner: rl` by default).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .paths import code_fingerprint, digest
from .store import Run, check_resumable, finished_sibling, shared_run


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
    """Train (or reuse) one RL run per variant and seed; finished runs with the same config are reused.

    With --resume, a new run whose config differs from a finished run's only by more train.steps continues
    from that run's final state (its metrics and final.pt are copied; the shorter run stays as it was).
    """
    from .trainer import train  # torch/transformers load only when something trains

    todo = [(v, c, s, Run.for_config(root, spec.id, v, c, s, scale)) for v, c in configs.items() for s in seeds]
    for _, config, seed, run in todo:
        check_resumable(run, resume, force, config, seed)
    if not force:  # a finished run of another spec with the same seed, config and code is reused, not retrained
        shared = [None if run.started else shared_run(run, config, seed) for _, config, seed, run in todo]
        if any(shared):
            log(f"sharing {sum(map(bool, shared))} finished run(s) of other specs with the same config and code")
        todo = [(v, c, s, other or run) for (v, c, s, run), other in zip(todo, shared)]
    pending = [t for t in todo if not t[3].done]
    if len(todo) > len(pending):
        log(f"reusing {len(todo) - len(pending)} finished run(s) from {root / spec.id}")
    workers = parallel_workers(pending)
    if workers > 1:
        run_in_processes(spec, scale, pending, root, resume, workers, log)
        return {v: {s: run for vv, _, s, run in todo if vv == v} for v in configs}
    from .paths import is_main_process, world_size
    for i, (variant, config, seed, run) in enumerate(pending, 1):
        extending = resume and not run.started  # decided by every process before process 0 touches the store
        if extending and world_size() > 1:
            _barrier()
        if extending and is_main_process():
            extend(run, config, seed, log=tqdm.write)
        if extending and world_size() > 1:  # the others wait for process 0's copy
            _barrier()
        bar = _StepBar(f"{spec.id} [{scale}] {variant} s{seed} ({i}/{len(pending)})", config.train.steps)
        try:
            train(run, config, seed, root, resume=resume, progress=bar.update, log=tqdm.write, on_start=bar.open)
        finally:
            bar.close()
    return {v: {s: run for vv, _, s, run in todo if vv == v} for v in configs}


def _barrier():
    """Wait for every process of an `accelerate launch` (the trainer's own state, cpu as there)."""
    import torch
    from accelerate import PartialState
    PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def parallel_workers(pending) -> int:
    """How many processes train at once: $REPLICATE_WORKERS, else one per CPU core (at most one per seed) for
    tiny models on a CPU-only machine outside `accelerate launch`, else 1."""
    from .paths import world_size
    if world_size() > 1:  # under `accelerate launch` the processes share each run; no pool on top
        return 1
    if os.environ.get("REPLICATE_WORKERS"):
        return max(1, int(os.environ["REPLICATE_WORKERS"]))
    import torch
    if torch.cuda.is_available():
        return 1
    if not pending or any(c.model.kind != "tiny" for _, c, _, _ in pending):
        return 1
    return max(1, min(os.cpu_count() or 1, len({s for _, _, s, _ in pending})))


def run_in_processes(spec, scale, pending, root, resume, workers, log):
    """Train the pending runs in `workers` processes, one seed's runs per job in order (the arms of a seed share
    its warm-up, so no two processes ever build the same warm-up), or one run per job once that seed's
    warm-up is cached. Tiny runs use one thread each, in or out of
    a pool, so their numbers do not depend on the worker count."""
    from .pool import Job, run_jobs
    from .warmup import warmup_cached
    jobs: dict[object, Job] = {}
    for variant, config, seed, run in pending:  # a seed whose warm-up is cached: its arms may run side by side
        key = (seed, variant) if warmup_cached(config, root, seed) else seed
        job = jobs.setdefault(key, Job(_train_group, ([], str(root), resume)))
        job.args[0].append((variant, config.model_dump(), seed, str(run.path)))
        job.runs.append(run.path.name)
    total = sum(c.train.steps for _, c, _, _ in pending)
    log(f"training {len(pending)} run(s) of {spec.id} [{scale}] in {workers} processes ({total} steps in all)")
    run_jobs(list(jobs.values()), workers, lambda job, lines: [tqdm.write(line) for line in lines], steps=total,
             desc=f"{spec.id} [{scale}] steps", log=tqdm.write)


def _train_group(group, root, resume) -> list[str]:
    """A job's runs in order; on Ctrl-C, a line per run saying what it kept (the rest: not started)."""
    from .pool import kept, steps_done
    from .specs import RunConfig
    from .trainer import train
    lines = []
    for i, (variant, config, seed, path) in enumerate(group):
        run, config = Run(Path(path)), RunConfig.model_validate(config)
        try:
            if resume and not run.started:
                extend(run, config, seed, log=lambda *_: None)
            rows = train(run, config, seed, root, resume=resume, log=lambda *_: None,
                         progress=lambda *_: steps_done(), on_start=lambda start: steps_done(start))
        except KeyboardInterrupt:  # Interrupted from the trainer, or a Ctrl-C during the extension's copy
            lines.append(kept(run, config.train.steps))
            lines += [f"{Path(p).name}: not started (queued after it); nothing to keep" for *_, p in group[i + 1:]]
            return lines
        last = next((r for r in reversed(rows) if "val_acc" in r), {})
        lines.append(f"finished {run.path.name}: {len(rows)} steps, final entropy {rows[-1]['entropy']:.3f}, "
                     f"val acc {last.get('val_acc', float('nan')):.3f}")
    return lines


def one_process(runner: str):
    """Runners other than `rl` do not shard: under `accelerate launch` every process would write the same run."""
    from .errors import UserError
    from .paths import world_size
    if world_size() > 1:
        raise UserError(f"the {runner} runner runs in one process; run it without `accelerate launch`")


def extend(run: Run, config, seed: int, log=print) -> bool:
    """Seed a new run dir with a shorter finished sibling's metrics and final state (as its checkpoint)."""
    src = finished_sibling(run, config, seed)
    if src is None:
        return False
    run.path.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.final_file, run.checkpoint_file)
    shutil.copy2(src.metrics_file, run.metrics_file)
    log(f"extending {src.path.name} ({len(src.metrics())} steps) to {config.train.steps} steps in {run.path.name}")
    return True


class _StepBar:
    """A tqdm bar over one run's training steps, opened once the start step is known (after the warm-up)."""

    def __init__(self, desc: str, total: int):
        self.desc, self.total, self.bar = desc, total, None

    def open(self, start: int):
        from .paths import is_main_process
        if not is_main_process():  # one bar per run, not one per process
            return
        self.bar = tqdm(total=self.total, initial=start, desc=self.desc, unit="step", leave=False)

    def update(self, step: int, m: dict):
        if self.bar is None:
            return
        self.bar.update(1)
        if "val_acc" in m:
            self.bar.set_postfix_str(f"H={m['entropy']:.3f} acc={m['val_acc']:.3f}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _study(spec, scale, configs, seeds, root, force, log, points: Callable) -> dict:
    """{"main": {seed: Run}}; a finished study with the same parameters (and code) is reused."""
    one_process(spec.runner)
    params, out = spec.runner_params, {}
    config = configs["main"].model_dump() if configs else None
    for seed in seeds:
        key = digest({"params": params, "config": config, "code": code_fingerprint()})
        run = Run(root / spec.id / f"{scale}-{spec.runner}-s{seed}-{key}")
        if not run.done or force:
            run.path.mkdir(parents=True, exist_ok=True)
            run.reset()
            run.config_file.write_text(json.dumps({"seed": seed, "runner": spec.runner, "params": params,
                                                   "config": config}, indent=2))
            for i, row in enumerate(points(seed)):
                run.append_metrics({"step": i, **row})
            run.finish()
        out[seed] = run
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
