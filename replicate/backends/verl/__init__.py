"""verl as the paper-scale engine (written against verl 0.9.1).

- data.py: `python -m replicate data SPEC`, the parquet files verl reads, with a manifest;
- reward.py: the `custom_reward_function` verl calls, evaluators.math (or, `--reward verl-rule`, verl's math_dapo);
- overrides.py: a RunConfig as verl's Hydra overrides;
- launch.py: every arm x seed, resumable: local launches, Slurm scripts, `ray job submit` commands;
- logs.py: verl's file-logger lines back into the run store (and the import step of a scheduled run).

`run_verl` ties them to `python -m replicate <spec> --backend verl`: once every run has finished, the runs go
through the same analysis, figures, claims and table.csv as our own trainer's (experiment.reproduce).
"""
from __future__ import annotations

import sys

from replicate.errors import UserError
from .data import data_files, parquet_path, write_data
from .launch import Options, RunsFailed, RunsPending, dry_run_header, launch_all, launch_command
from .logs import METRIC_MAP, import_verl_log, read_verl_log, verl_rows
from .overrides import VERL_VERSION, check_expressible, verl_overrides

__all__ = ["METRIC_MAP", "VERL_VERSION", "Options", "check_expressible", "data_files", "import_verl_log",
           "launch_command", "parquet_path", "read_verl_log", "run_verl", "verl_overrides", "verl_rows",
           "write_data"]


def _log(*args):
    print(*args, file=sys.stderr)


def run_verl(spec, scale: str | None, opts: Options, *, seeds: int | None = None, steps: int | None = None,
             out=None, store=None, force: bool = False, log=_log) -> int:
    """`--backend verl`: launch / schedule / print every arm x seed, then (all finished) analyse like our own
    runs. Exit status: 0 done or scheduled, 1 some runs failed (named on stderr)."""
    from replicate.experiment import plan, reproduce
    from replicate.paths import store_root
    from replicate.runners import Runner
    scale = scale or spec.default_scale
    if spec.runner != "rl":
        raise UserError(f"{spec.id} uses the {spec.runner} runner; --backend verl runs RL specs only")
    configs, chosen = plan(spec, scale, seeds, steps)
    if opts.dry_run:
        dry_run_header(spec, scale, configs, chosen, opts, log)

    def runner(spec_, scale_, configs_, seeds_, root, force=False, resume=False, log=log):
        return launch_all(spec_, scale_, configs_, seeds_, root, opts, force=force, log=log)
    try:
        if opts.dry_run:
            launch_all(spec, scale, configs, chosen, store_root(store), opts, force=force, log=log)
            return 0
        res = reproduce(spec, scale=scale, seeds=seeds, steps=steps, out=out, store=store, force=force,
                        runner=Runner(runner), log=log)
    except RunsFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RunsPending as exc:
        if exc.args and exc.args[0] and not opts.dry_run:
            log(f"{len(exc.args[0])} run(s) scheduled or running; rerun this command once they finish to "
                "import them and write the figures, claims and table")
        return 0
    print((res["out"] / "claims.md").read_text())
    print(f"wrote {res['out']}/{spec.id}.png, .pdf, claims.json, claims.md"
          + (", table.csv, table.md" if (res["out"] / "table.csv").exists() else ""))
    return 0

