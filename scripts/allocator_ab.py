"""Where a small step's memory comes from, A/B: whole `fig1 --scale small --steps 4` commands of the code here under
each malloc setting, arms alternating, alone or two side by side (as two seeds train); clean seconds a step (as
`bench small-step --against` reads them) and each command's peak resident memory. docs/testbed/small.md has the run.

    python scripts/allocator_ab.py --reps 3               # one command at a time
    python scripts/allocator_ab.py --reps 2 --pair        # two at once, the references' load on 2 cores
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from replicate.allocator import TUNABLES
from replicate.bench.revisions import REPO, clean_steps, command_env, fig1_command

ARMS = {"glibc": {"GLIBC_TUNABLES": ""},  # set but empty: glibc's defaults, and the command line leaves them
        "thp": {"GLIBC_TUNABLES": "", "THP_MEM_ALLOC_ENABLE": "1"},  # torch's 2 MB pages for buffers >= 2 MB
        "kept": {"GLIBC_TUNABLES": TUNABLES}}  # what replicate.allocator sets


def start(arm: str) -> tuple[Path, subprocess.Popen]:
    work = Path(tempfile.mkdtemp(prefix=f"ab-{arm}-"))
    env = {k: v for k, v in command_env(REPO, 1).items() if k != "THP_MEM_ALLOC_ENABLE"} | ARMS[arm]
    proc = subprocess.Popen(fig1_command(REPO, "fig1", "small", work), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return work, proc


def finish(work: Path, proc: subprocess.Popen) -> tuple[list[float], float]:
    """The command's clean step seconds and its peak resident memory in GB."""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"a command failed (status {status}); rerun it by hand: {' '.join(proc.args)}")
    metrics = next((work / "store").rglob("metrics.jsonl"))
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    shutil.rmtree(work, ignore_errors=True)
    return [s["step_s"] for s in clean_steps(rows)], usage.ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pair", action="store_true", help="two commands of an arm at once")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"of {', '.join(ARMS)}")
    args = ap.parse_args()
    arms = args.arms.split(",")
    steps = {a: [] for a in arms}
    peaks = {a: [] for a in arms}
    for rep in range(args.reps):
        for arm in arms if rep % 2 == 0 else arms[::-1]:
            running = [start(arm) for _ in range(2 if args.pair else 1)]
            for work, proc in running:
                seconds, peak = finish(work, proc)
                steps[arm] += seconds
                peaks[arm].append(peak)
                print(f"{arm} rep {rep}: {[round(s, 2) for s in seconds]} s, peak {peak:.2f} GB", flush=True)
    for arm in arms:
        print(f"{arm}: {len(steps[arm])} steps, mean {statistics.mean(steps[arm]):.3f} s/step, "
              f"peak {min(peaks[arm]):.2f}-{max(peaks[arm]):.2f} GB")


if __name__ == "__main__":
    main()
