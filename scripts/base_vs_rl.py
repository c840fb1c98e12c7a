"""Per-run base-versus-RL table of finished runs, in markdown (docs/testbed/small.md's per-seed tables).

    python scripts/base_vs_rl.py STORE/fig1/small-main-s2*-* [...]

Base greedy and base best (over the validated temperatures) are step 0's sharpening evaluation; RL final is the
mean of the last 3 evaluations; entropy is step 0's rollout entropy, then the mean of the last 5 steps'; EOS share
is the last step's; wall is config.json's write to DONE's. Arm and seed come from the directory's name.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

HEADER = ("| arm | seed | base greedy | base best | RL final | entropy start -> end | EOS share, last step | wall s |\n"
          "|---|---|---|---|---|---|---|---|")
RUN_NAME = re.compile(r"^[^-]+-(?P<arm>.+)-s(?P<seed>\d+)-[0-9a-f]+$")  # SCALE-ARM-sSEED-HASH


def run_row(run: Path) -> dict:
    """The table's numbers for one finished run directory."""
    name = RUN_NAME.match(run.name)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    base = rows[0]
    accs = {k: v for k, v in base.items() if k.startswith("base_acc_")}
    evals = [r["val_acc"] for r in rows if "val_acc" in r]
    return {"arm": name["arm"], "seed": int(name["seed"]), "base_greedy": base["base_acc_greedy"],
            "base_best": max(accs.values()), "rl_final": float(np.mean(evals[-3:])),
            "entropy_start": base["entropy"], "entropy_end": float(np.mean([r["entropy"] for r in rows[-5:]])),
            "eos_last": rows[-1]["eos_share"],
            "wall_s": (run / "DONE").stat().st_mtime - (run / "config.json").stat().st_mtime}


def table(runs: list[Path]) -> str:
    lines = [HEADER]
    for r in sorted((run_row(p) for p in runs), key=lambda r: (r["arm"], r["seed"])):
        lines.append(f"| {r['arm']} | {r['seed']} | {r['base_greedy']:.3f} | {r['base_best']:.3f} | "
                     f"{r['rl_final']:.3f} | {r['entropy_start']:.2f} -> {r['entropy_end']:.3f} | "
                     f"{r['eos_last']:.2f} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    runs = [Path(a) for a in argv]
    unfinished = [str(p) for p in runs if not (p / "DONE").is_file() or not RUN_NAME.match(p.name)]
    if not runs or unfinished:
        print(f"error: {'not a finished run: ' + unfinished[0] if unfinished else 'no run directories given'}; pass "
              "finished run directories (STORE/SPEC/SCALE-ARM-sSEED-HASH, with a DONE file)", file=sys.stderr)
        return 2
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
