"""Tune the DAST tiny tier on a seed outside the specs' evaluation seeds (docs/testbed/dast.md).

Usage: PYTHONPATH=$PWD python scripts/dast_tune.py SEED 'BODY JSON' 'ARMS JSON' [--store DIR]
BODY: overrides of dast-table1's tiny config (model / task / warmup / rollout / train);
ARMS: a list of {"name", "lr", "epochs", and runner params such as method, beta, gamma, delta}.
Prints one JSON line per arm (easy / hard compression and accuracy change) and the warm-up / sampling times.
"""
import copy
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

from replicate.analysis.dast import seed_values  # noqa: E402
from replicate.runners.preference import (DEFAULTS, evaluate_levels, make_training_data, pair_stats,  # noqa: E402
                                  sample_cache, train_arm)
from replicate.seeds import derive_seed  # noqa: E402
from replicate.specs import apply_overrides, find_spec  # noqa: E402
from replicate.tasks import make_task  # noqa: E402
from replicate.runners.rl.warmup import base_policy  # noqa: E402


def arm_config(config, arm):
    """The body config with the arm's learning rate and epochs."""
    return apply_overrides(config, {"train": {"optimizer": {"lr": arm["lr"]}, "ppo_epochs": arm["epochs"]}})


def run_arm(config, root, seed, problems, samples, base_eval, arm, runner):
    """Train one arm from the seed's base policy; its summary values (analysis.dast.seed_values)."""
    params = {**DEFAULTS, **runner, **{k: v for k, v in arm.items() if k in DEFAULTS}}
    cfg = arm_config(config, arm)
    cap = cfg.rollout.max_new_tokens
    pairs, sft = make_training_data(problems, samples, params, cap)
    rows = [{"phase": "meta", "easy_levels": params["easy_levels"], "hard_levels": params["hard_levels"]}]
    rows += [{"phase": "before", **r} for r in base_eval]
    rows.append({"phase": "pairs", **pair_stats(pairs, sft, problems)})
    model, tok = base_policy(cfg, root, seed, log=lambda *a: None)
    model = copy.deepcopy(model)
    torch.manual_seed(derive_seed(seed, f"dast-train-{arm['name']}"))
    train_arm(model, tok, problems, samples, pairs, sft, params, cfg, seed, lambda r: None)
    after = evaluate_levels(model, tok, make_task(cfg.task.name, **cfg.task.params), cap)
    rows += [{"phase": "after", **r} for r in after]
    v = seed_values(rows)
    keys = ("compression_easy", "compression_hard", "compression_easy_minus_hard", "acc_change_hard",
            "acc_change_easy", "compression", "n_pairs", "share_dual_incorrect")
    return {k: round(v[k], 3) for k in keys} | {f"tok_L{r['level']}": round(r["tokens"], 1) for r in after} \
        | {f"acc_L{r['level']}": r["acc"] for r in after}


def main():
    seed, body, arms = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    root = sys.argv[sys.argv.index("--store") + 1] if "--store" in sys.argv else "/tmp/dast-tune-store"
    spec = find_spec("dast-table1")
    extra = body.pop("_runner", {})
    config = apply_overrides(spec.resolve("tiny"), body)
    runner = {k: v for k, v in spec.runner_params.items() if k != "scales"} | extra
    t0 = time.time()
    base_policy(config, root, seed, log=lambda *a: None)
    t1 = time.time()
    problems, samples, base_eval = sample_cache(config, root, seed, runner["n_train"],
                                                config.rollout.max_new_tokens, log=lambda *a: None)
    t2 = time.time()
    acc = sum(ok for g in samples for *_, ok in g) / sum(map(len, samples))
    print(json.dumps({"warmup_s": round(t1 - t0, 1), "sample_s": round(t2 - t1, 1), "train_sample_acc": round(acc, 3),
                      "base": [{k: (round(x, 2) if isinstance(x, float) else x) for k, x in r.items()}
                               for r in base_eval]}), flush=True)
    for arm in arms:
        t = time.time()
        res = run_arm(config, root, seed, problems, samples, base_eval, arm, runner)
        print(json.dumps({"arm": arm, "s": round(time.time() - t, 1), **res}), flush=True)


if __name__ == "__main__":
    main()
