"""The `rl` runner: one RL training run (replicate.runners.rl.trainer) per variant and seed, reused when finished,
extended with --resume, and trained side by side in worker processes for tiny models."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm import tqdm

from replicate.runners import Params, Runner
from replicate.runners.pool import parallel_workers
from replicate.store import Run, check_resumable, finished_sibling, shared_run


def run_rl(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    """Train (or reuse) one RL run per variant and seed; finished runs with the same config are reused.

    With --resume, a new run whose config differs from a finished run's only by more train.steps continues
    from that run's final state (its metrics and final.pt are copied; the shorter run stays as it was).
    """
    from replicate.runners.rl.trainer import train  # torch/transformers load only when something trains

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
    from replicate.paths import is_main_process, world_size
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


def run_in_processes(spec, scale, pending, root, resume, workers, log):
    """Train the pending runs in `workers` processes, one seed's runs per job in order (the arms of a seed share
    its warm-up, so no two processes ever build the same warm-up), or one run per job once that seed's
    warm-up is cached. Tiny runs use one thread each, in or out of
    a pool, so their numbers do not depend on the worker count; other runs share the cores out evenly."""
    from replicate.runners.pool import Job, run_jobs
    from replicate.runners.rl.warmup import warmup_cached
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs: dict[object, Job] = {}
    for variant, config, seed, run in pending:  # a seed whose warm-up is cached: its arms may run side by side
        key = (seed, variant) if warmup_cached(config, root, seed) else seed
        job = jobs.setdefault(key, Job(_train_group, ([], str(root), resume, threads)))
        job.args[0].append((variant, config.model_dump(), seed, str(run.path)))
        job.runs.append(run.path.name)
    total = sum(c.train.steps for _, c, _, _ in pending)
    log(f"training {len(pending)} run(s) of {spec.id} [{scale}] in {workers} processes ({total} steps in all)")
    run_jobs(list(jobs.values()), workers, lambda job, lines: [tqdm.write(line) for line in lines], steps=total,
             desc=f"{spec.id} [{scale}] steps", log=tqdm.write)


def _train_group(group, root, resume, threads: int = 1) -> list[str]:
    """A job's runs in order; on Ctrl-C, a line per run saying what it kept (the rest: not started)."""
    import torch
    from replicate.config import RunConfig
    from replicate.runners.pool import kept, steps_done
    from replicate.runners.rl.trainer import train
    torch.set_num_threads(threads)  # the trainer sets 1 for tiny models itself
    lines = []
    for i, (variant, config, seed, path) in enumerate(group):
        run, config = Run(Path(path)), RunConfig.model_validate(config)
        try:
            if resume and not run.started:
                extend(run, config, seed, log=lines.append)  # said with the job's other lines
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
        from replicate.paths import is_main_process
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


RUNNER = Runner(run_rl, Params)
