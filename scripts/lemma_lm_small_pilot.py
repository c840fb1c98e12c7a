"""The lemma-lm step size on the small tier, chosen on the tuning seeds (docs/testbed/small.md, "lemma-lm").

For each candidate SGD lr and tuning seed: logit_step_probe on SmolLM2-135M in float32, then the lemma_lm analysis.
Prints one row per (lr, seed) and the lr the pre-written rule picks.
    PYTHONPATH=$PWD python scripts/lemma_lm_small_pilot.py [--lrs 1e-3,1e-2,1e-1] [--seeds 100,101,102] [--batches 2]
"""
import argparse
import json
import tempfile
import time

from replicate.analysis.dynamics import lemma_lm
from replicate.runners.studies import logit_step_probe
from replicate.specs import find_spec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lrs", default="1e-3,1e-2,1e-1")
    ap.add_argument("--seeds", default="100,101,102")
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    config = find_spec("lemma-lm").resolve("small")  # the spec's small scale: float32, 8 prompts x 8
    rows = []
    with tempfile.TemporaryDirectory() as store:
        for lr in [float(x) for x in args.lrs.split(",")]:
            for seed in [int(x) for x in args.seeds.split(",")]:
                t0 = time.time()
                points = logit_step_probe(config, seed, store, lr=lr, n_batches=args.batches, log=lambda *_: None)
                res = lemma_lm({"main": {seed: points}})["per_seed"]
                row = {"lr": lr, "seed": seed, "seconds": round(time.time() - t0, 1),
                       **{k: round(v["main"][0], 4) for k, v in res.items()}}
                rows.append(row)
                print(json.dumps(row), flush=True)
    ok = [lr for lr in sorted({r["lr"] for r in rows})
          if all(r["lm_corr"] >= 0.9 and 0.8 <= r["lm_slope"] <= 1.2 for r in rows if r["lr"] == lr)]
    print("rule picks lr", max(ok) if ok else f"none holds; the smallest, {min(r['lr'] for r in rows)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
