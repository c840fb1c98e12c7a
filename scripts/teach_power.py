"""Seeds needed per fig1 claim, from a pilot on the tuning seeds (docs/testbed/teach.md).

Usage: PYTHONPATH=$PWD python scripts/teach_power.py RUN_DIR [RUN_DIR ...]   (teach_probe.py's run directories)
For a mean claim: n = the smallest n >= 2 with t_{0.975,n-1}·sd/√n < |mean - threshold| (the pilot's mean and
SD, assumed to stay put); an 'every' claim prints each seed's value (one failing run refutes it).
"""
import json
import math
import sys

import numpy as np
from scipy import stats

from replicate.analysis import ANALYSES
from replicate.specs import load_spec


def seeds_needed(values, threshold, n_max=200):
    v = np.asarray(values, dtype=float)
    gap, sd = abs(v.mean() - threshold), v.std(ddof=1)
    for n in range(2, n_max + 1):
        if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < gap:
            return n
    return None


def main():
    spec = load_spec("experiments/entropy-mechanism/fig1.yaml")
    runs = {"main": {i: [json.loads(l) for l in open(f"{d}/metrics.jsonl")] for i, d in enumerate(sys.argv[1:])}}
    per_seed = {}
    for name in spec.analyses:
        per_seed.update(ANALYSES[name](runs)["per_seed"])
    for c in spec.claims:
        vals = per_seed[c.metric]["main"]
        if c.over == "every":
            print(f"{c.id}: every run; values {np.round(vals, 3).tolist()} (threshold {c.op} {c.threshold})")
            continue
        print(f"{c.id}: mean {np.mean(vals):.4g} sd {np.std(vals, ddof=1):.3g} threshold {c.threshold} "
              f"-> seeds needed {seeds_needed(vals, c.threshold)}")


if __name__ == "__main__":
    main()
