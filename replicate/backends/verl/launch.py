"""Every arm x seed of a spec on verl, resumable: launch (local), or write sbatch scripts (slurm), or print
`ray job submit` commands (ray); then the same analysis, figures, claims and table as our own runs.

A verl run lives in the run store like ours (`<store>/<spec>/<scale>-<arm>-s<seed>-<key>/`), its key hashing
the config, the verl version and the reward (not our code fingerprint: editing our code must not relaunch
2,500 GPU steps). State of a run: DONE (finished: skipped), FAILED (relaunched; verl resumes from the newest
checkpoint in the run's `checkpoints/`), `launch.json` from slurm/ray without DONE or FAILED (submitted:
waited for), else new. Each launch logs to its own `verl_log-<attempt>.jsonl` (logs.py says why).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from replicate.allocator import environment_as_given
from replicate.errors import UserError
from replicate.paths import digest
from replicate.store import Run, shared_run
from .data import data_files, manifest_entries
from .logs import log_files, settle
from .overrides import VERL_VERSION, check_expressible, verl_overrides

ENTRY = ["python3", "-m", "verl.trainer.main_ppo"]
ENTRY_ENV = "REPLICATE_VERL_ENTRY"  # a command line replacing ENTRY (tests: a stand-in that replays logs)


@dataclass
class Options:
    launcher: str = "local"  # local | slurm | ray
    dry_run: bool = False
    reward: str = "ours"
    data_dir: str | None = None
    n_gpus_per_node: int = 8
    nnodes: int = 1
    slurm_args: tuple = ()  # extra `#SBATCH` lines, e.g. ("--partition=gpu", "--time=72:00:00")
    ray_address: str = "$RAY_ADDRESS"


class RunsFailed(Exception):
    """Some runs failed; the others finished (or were skipped). The message names each failure."""


def entry() -> list[str]:
    return shlex.split(os.environ[ENTRY_ENV]) if os.environ.get(ENTRY_ENV) else list(ENTRY)


def verl_run(root: Path, spec_id: str, variant: str, config, seed: int, scale: str, reward: str) -> Run:
    key = digest({"config": config.digest(), "engine": f"verl {VERL_VERSION}", "reward": reward})
    return Run(Path(root) / spec_id / f"{scale}-{variant}-s{seed}-{key}")


def launch_command(spec, scale: str | None = None, *, variant: str = "main", seed: int | None = None,
                   log_path: str | Path = "verl_log.jsonl", data_dir=None, n_gpus_per_node: int = 8,
                   nnodes: int = 1, reward: str = "ours", checkpoint_dir: str | None = None) -> list[str]:
    """`env VERL_FILE_LOGGER_PATH=<log> python3 -m verl.trainer.main_ppo <overrides>` for one arm and seed."""
    scale = scale or spec.default_scale
    configs = spec.variant_configs(scale)
    if variant not in configs:
        raise UserError(f"{spec.id} has no variant {variant!r}; it has {', '.join(configs)}")
    config = configs[variant]
    seed = config.seeds[0] if seed is None else seed
    check_expressible(config)
    train, val = data_files(config, data_dir)
    overrides = verl_overrides(config, train_files=train, val_files=val, seed=seed, n_gpus_per_node=n_gpus_per_node,
                               nnodes=nnodes, project=f"replicate-{spec.id}", experiment=f"{scale}-{variant}-s{seed}",
                               reward=reward, checkpoint_dir=checkpoint_dir)
    return ["env", f"VERL_FILE_LOGGER_PATH={log_path}", *entry(), *overrides]


def _command(spec, scale, variant, seed, run: Run, opts: Options) -> list[str]:
    attempt = len(log_files(run.path)) + 1
    return launch_command(spec, scale, variant=variant, seed=seed, log_path=run.path / f"verl_log-{attempt}.jsonl",
                          data_dir=opts.data_dir, n_gpus_per_node=opts.n_gpus_per_node, nnodes=opts.nnodes,
                          reward=opts.reward, checkpoint_dir=str(run.path / "checkpoints"))


def _state(run: Run) -> str:
    if run.done:
        return "finished"
    if (run.path / "FAILED").exists():
        return "failed"
    if (run.path / "launch.json").exists():
        return "submitted"
    return "new"


def _begin(run: Run, config, seed: int, cmd: list[str], opts: Options, data: dict):
    """config.json and provenance (the command, the launcher, the reward, the data manifest entries)."""
    run.begin(config, seed, {"backend": "verl", "verl_version": VERL_VERSION, "launcher": opts.launcher,
                             "reward": opts.reward, "command": shlex.join(cmd), "data": data})


def _import_step(run: Run) -> str:
    return f"{shlex.quote(sys.executable)} -m replicate.backends.verl.logs {shlex.quote(str(run.path))} --rc $rc"


def sbatch_script(run: Run, cmd: list[str], opts: Options, name: str) -> str:
    """One run as a Slurm batch script: verl on `nnodes` nodes (a ray cluster across them when > 1), then the
    import step, which marks the run finished or failed. Never run on a cluster here."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --nodes={opts.nnodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={opts.n_gpus_per_node}",
             "#SBATCH --exclusive", f"#SBATCH --output={run.path}/slurm-%j.out",
             *(f"#SBATCH {a}" for a in opts.slurm_args), "set -u", f"cd {shlex.quote(os.getcwd())}"]
    if opts.nnodes > 1:  # verl's driver joins a ray cluster spanning the job's nodes
        lines += ['nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))', 'head=${nodes[0]}',
                  'srun --nodes=1 --ntasks=1 -w "$head" ray start --head --port=6379 --block &', "sleep 10",
                  'srun --nodes=$((SLURM_NNODES - 1)) --ntasks=$((SLURM_NNODES - 1)) -x "$head" '
                  'ray start --address="$head:6379" --block &', "sleep 10", 'export RAY_ADDRESS="$head:6379"']
    lines += [shlex.join(cmd), "rc=$?", _import_step(run), "exit $rc", ""]
    return "\n".join(lines)


def ray_command(run: Run, cmd: list[str], opts: Options) -> str:
    """`ray job submit` of one run: verl, then the import step, in one shell entrypoint on the cluster."""
    inner = f"{shlex.join(cmd)}; rc=$?; {_import_step(run)}"
    return f"ray job submit --address {opts.ray_address} --no-wait -- bash -c {shlex.quote(inner)}"


def plan_runs(spec, scale, configs, seeds, root, opts: Options, force: bool = False) -> list[tuple]:
    """(variant, config, seed, run) for every arm x seed, a finished run of another spec (fig11 / table2)
    standing in for its own (never under --force, which restarts this spec's runs only)."""
    todo = []
    for variant, config in configs.items():
        check_expressible(config)
        for seed in seeds:
            run = verl_run(root, spec.id, variant, config, seed, scale, opts.reward)
            other = None if run.path.exists() or force else shared_run(run, config, seed)
            todo.append((variant, config, seed, other or run))
    return todo


def launch_all(spec, scale, configs, seeds, root, opts: Options, force=False, log=print) -> dict:
    """Launch (or submit, or print) every pending run; returns {variant: {seed: Run}} when all have finished.
    Raises RunsFailed naming the failures (the rest still ran), or RunsPending while scheduled ones run."""
    todo = plan_runs(spec, scale, configs, seeds, root, opts, force)
    if not opts.dry_run and opts.launcher == "local":
        data = {v: manifest_entries(c, opts.data_dir) for v, c in configs.items()}  # missing files: before any launch
    else:
        data = {v: _maybe_manifest(c, opts.data_dir) for v, c in configs.items()}
    failed, pending = [], []
    for i, (variant, config, seed, run) in enumerate(todo, 1):
        state = "new" if force else _state(run)
        name = f"{spec.id} {variant} s{seed}"
        if state == "finished":
            log(f"[{i}/{len(todo)}] {name}: finished, skipped ({run.path})")
            continue
        if state == "submitted" and opts.launcher != "local":
            log(f"[{i}/{len(todo)}] {name}: submitted earlier, waiting ({run.path / 'launch.json'})")
            pending.append(name)
            continue
        if force:
            _clear(run)
        cmd = _command(spec, scale, variant, seed, run, opts)
        if opts.dry_run and opts.launcher == "local":
            print(shlex.join(cmd))
            continue
        _begin(run, config, seed, cmd, opts, data[variant])
        if opts.launcher == "local":
            outcome = _launch_local(run, cmd, config.train.steps)
            log(f"[{i}/{len(todo)}] {name}: {outcome} ({run.path})")
            if outcome != "finished":
                failed.append(f"{name}: {outcome.removeprefix('failed: ')} (log {run.path / 'verl.out'})")
        else:
            _schedule(run, cmd, opts, name, log)
            pending.append(name)
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(todo)} run(s) failed; the others are in the store. Rerun the "
                         "same command to relaunch them (verl resumes from their checkpoints):\n  " + "\n  ".join(failed))
    if pending or opts.dry_run:
        raise RunsPending(pending)
    return {v: {s: run for vv, _, s, run in todo if vv == v} for v in configs}


class RunsPending(Exception):
    """Runs were scheduled (or only printed): nothing to analyse yet."""


def _maybe_manifest(config, data_dir) -> dict:
    try:
        return manifest_entries(config, data_dir)
    except UserError as exc:
        return {"missing": str(exc)}


def _clear(run: Run):
    """--force: a fresh start (metrics, logs, verl's checkpoints, markers)."""
    import shutil
    run.reset()
    for f in [*log_files(run.path), run.path / "FAILED", run.path / "launch.json"]:
        f.unlink(missing_ok=True)
    shutil.rmtree(run.path / "checkpoints", ignore_errors=True)


def _launch_local(run: Run, cmd: list[str], steps: int) -> str:
    """Run verl here (stdout and stderr to verl.out), then import its logs; 'finished' or 'failed: why'."""
    with open(run.path / "verl.out", "ab") as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=environment_as_given()).returncode
        except OSError as exc:  # the entry point is missing: a failed run, not a crash of the whole launch
            out.write(f"could not start {cmd[2]}: {exc}\n".encode())
            rc = 127
    return settle(run, rc, steps)


def _schedule(run: Run, cmd: list[str], opts: Options, name: str, log):
    """slurm: write the script (and sbatch it unless --dry-run; a submitted run is waited for, not resubmitted);
    ray: print the submit command (never submitted from here)."""
    if opts.launcher == "slurm":
        script = run.path / "launch.sbatch"
        script.write_text(sbatch_script(run, cmd, opts, name.replace(" ", "-")))
        if opts.dry_run:
            log(f"{name}: wrote {script}  (submit: sbatch {script})")
            return
        res = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True,
                             env=environment_as_given())  # Slurm exports the environment to the job
        if res.returncode:
            raise UserError(f"sbatch {script} failed: {res.stderr.strip()[:200]}")
        job = res.stdout.strip()
        log(f"{name}: submitted Slurm job {job} ({script})")
        (run.path / "launch.json").write_text(json.dumps({"launcher": "slurm", "job": job}))
    else:  # ray: printed only; the job's import step marks the run finished or failed
        print(ray_command(run, cmd, opts))


def dry_run_header(spec, scale, configs, seeds, opts: Options, log=print):
    n = len(configs) * len(seeds)
    log(f"# {spec.id} [{scale}] on verl {VERL_VERSION}: {len(configs)} arm(s) x {len(seeds)} seed(s) = {n} run(s), "
        f"reward {opts.reward}, {opts.nnodes} node(s) x {opts.n_gpus_per_node} GPU(s), launcher {opts.launcher}")
