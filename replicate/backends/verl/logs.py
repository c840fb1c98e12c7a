"""verl's file-logger lines back into the run store, as the same metrics rows our own trainer writes.

verl's FileLogger (verl/utils/tracking.py) writes one JSON line per log call, `{"step": global_step, "data":
{metric: value}}`, to $VERL_FILE_LOGGER_PATH, opening it with "wb": a relaunch TRUNCATES it. So every launch of
a run writes its own file (`verl_log-<attempt>.jsonl`) and the import merges them in order, a later attempt's
value winning for the same step (a resumed run repeats the steps after its last checkpoint).

Also a command, the import step after each scheduled launch (Slurm script, ray job):
    python -m replicate.backends.verl.logs RUN_DIR --rc EXIT_STATUS
imports the run's logs and marks it finished when verl exited 0 and logged its last step, else failed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from replicate.errors import UserError

# verl's key in its file logger's `data` -> our metrics.jsonl key (verl/trainer/ppo/metric_utils.py,
# core_algos.py, v1/trainer_base.py). val_acc comes from the val-core keys, see val_accs.
METRIC_MAP = {
    "actor/entropy": "entropy",
    "response_length/mean": "response_length",
    "actor/pg_clipfrac": "clipfrac",
    "actor/pg_clipfrac_lower": "clipfrac_lower",
    "actor/ppo_kl": "ppo_kl",
    "actor/grad_norm": "grad_norm",
    "actor/pg_loss": "pg_loss",
    "actor/lr": "lr",
    "critic/score/mean": "train_acc",  # mean sequence score: the accuracy under a 0/1 verifier
    "critic/vf_loss": "vf_loss",
    "timing_s/step": "wall_time",
}
BENCH = "val_acc@"  # row key prefix of one data source's validation accuracy: val_acc@math500
AFTER = "val_acc_after_last_step"


def val_accs(data: dict) -> dict[str, float]:
    """Per data source, `val-core/<source>/acc/mean@N` (else `.../reward/mean@N`), N the largest."""
    best: dict[str, tuple[bool, int, float]] = {}  # source -> (acc preferred, N, value)
    for key, value in data.items():
        parts = key.split("/")  # val-core/<data source, may contain "/">/<var>/<metric>
        if len(parts) < 4 or parts[0] != "val-core" or not parts[-1].startswith("mean@"):
            continue
        source, var, metric = "/".join(parts[1:-2]), parts[-2], parts[-1]
        if var not in ("acc", "reward"):
            continue
        rank = (var == "acc", int(metric.split("@")[1]), float(value))
        if source not in best or rank[:2] > best[source][:2]:
            best[source] = rank
    return {source: r[2] for source, r in best.items()}


def _val_acc(data: dict) -> float | None:
    """The unweighted mean over data sources of val_accs (one benchmark: its accuracy)."""
    accs = val_accs(data)
    return sum(accs.values()) / len(accs) if accs else None


def log_files(run_dir: Path) -> list[Path]:
    """A run's verl logs in launch order (verl_log-1.jsonl, verl_log-2.jsonl, ...; a bare verl_log.jsonl first)."""
    def attempt(p: Path) -> int:
        tail = p.stem.removeprefix("verl_log").lstrip("-")
        return int(tail) if tail.isdigit() else 0
    return sorted(Path(run_dir).glob("verl_log*.jsonl"), key=attempt)


def read_verl_log(*log_paths) -> dict[int, dict]:
    """verl's FileLogger lines of one or more files, merged per step (later files win)."""
    steps: dict[int, dict] = {}
    for log_path in log_paths:
        with open(log_path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    steps.setdefault(int(rec["step"]), {}).update(rec["data"])
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise UserError(f"{log_path}:{n}: not a verl file-logger line ({exc})") from None
    return steps


def verl_rows(steps: dict[int, dict]) -> list[dict]:
    """Our metrics rows from verl's per-step dicts.

    verl counts training steps from 1 and validates after the update (step 0: before training); our step s is
    verl's step s+1, and our val_acc at s is the policy before update s, i.e. verl's validation at step s.
    Each data source's accuracy goes beside it as `val_acc@<source>`. A validation after the last update has
    no training step of ours; it goes to the last row as `val_acc_after_last_step` (and `..._after_last_step@<source>`).
    """
    rows: dict[int, dict] = {}
    for vstep, data in sorted(steps.items()):
        train = {ours: float(data[theirs]) for theirs, ours in METRIC_MAP.items() if theirs in data}
        if train:
            rows.setdefault(vstep - 1, {}).update(train)
        accs = val_accs(data)
        if accs:
            row = rows.setdefault(vstep, {})
            row["val_acc"] = sum(accs.values()) / len(accs)
            row.update({BENCH + source: acc for source, acc in accs.items()})
    out = [{"step": s, **r} for s, r in sorted(rows.items()) if s >= 0]
    while out and "entropy" not in out[-1]:
        last = out.pop()
        if out and "val_acc" in last:
            out[-1].update({k.replace("val_acc", AFTER, 1): v for k, v in last.items() if k.startswith("val_acc")})
    return out


def import_verl_log(log_path, run) -> int:
    """Write verl's logged metrics (one log file, or a list merged in order) as `run`'s metrics.jsonl,
    replacing it; returns the number of rows."""
    paths = log_path if isinstance(log_path, (list, tuple)) else [log_path]
    rows = verl_rows(read_verl_log(*paths))
    run.path.mkdir(parents=True, exist_ok=True)
    run.metrics_file.unlink(missing_ok=True)
    for row in rows:
        run.append_metrics(row)
    return len(rows)


def final_accuracies(rows: list[dict]) -> dict[str, float]:
    """Per data source, the accuracy of the last validation in a run's rows (after the last step if logged)."""
    for prefix in (AFTER + "@", BENCH):
        for row in reversed(rows):
            found = {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}
            if found:
                return found
    return {}


def settle(run, rc: int, steps: int) -> str:
    """Import a launched run's logs and mark it: 'finished' (verl exited 0 and logged `steps` training steps;
    DONE written), else 'failed' (FAILED written with the reason). The reason is returned too."""
    files = log_files(run.path)
    n = import_verl_log(files, run) if files else 0
    rows = run.metrics()
    last = rows[-1]["step"] + 1 if rows else 0
    (run.path / "FAILED").unlink(missing_ok=True)
    if rc == 0 and last >= steps:
        run.finish()
        return "finished"
    why = f"verl exited with status {rc}" if rc else f"verl exited 0 after {last} of {steps} steps"
    (run.path / "FAILED").write_text(f"{why}; {n} rows imported from {', '.join(f.name for f in files) or 'no log'}\n")
    return "failed: " + why


def main(argv=None) -> int:
    """The import step of a scheduled launch (see the module docstring)."""
    from replicate.store import Run
    p = argparse.ArgumentParser(prog="python -m replicate.backends.verl.logs",
                                description="import a verl run's file-logger lines into its run directory")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--rc", type=int, required=True, help="verl's exit status")
    args = p.parse_args(argv)
    try:
        run = Run(args.run_dir)
        config = run.stored_config()
        if config is None:
            raise UserError(f"{args.run_dir} has no config.json; launch it with --backend verl first")
        state = settle(run, args.rc, int(config["train"]["steps"]))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.run_dir}: {state}")
    return 0 if state == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
