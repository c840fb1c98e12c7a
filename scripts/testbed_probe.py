"""Measure one testbed candidate: warm-up time, RL time, base/final accuracy, entropy, law fits.

Usage: PYTHONPATH=$PWD python scripts/testbed_probe.py NAME SEED 'JSON overrides' [--spec experiments/fig1.yaml]
Prints one JSON line (also appended to /tmp/tb-results.jsonl).
"""
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from replicate.analysis.fits import early_shares, eval_points, fit_exp_law  # noqa: E402
from replicate.specs import RunConfig, deep_merge, load_spec  # noqa: E402
from replicate.store import Run  # noqa: E402
from replicate.runners.rl.trainer import train  # noqa: E402
from replicate.runners.rl.warmup import base_policy  # noqa: E402


def level_report(config, root, seed):
    """Base policy: avg@k per level at the eval temperature, and token entropy of T=1 samples."""
    from replicate.algorithms.aggregation import masked_mean
    from replicate.runners.rl.rollout import avg_at_k, sample_batch
    from replicate.tasks import make_task
    task = make_task(config.task.name, **config.task.params)
    model, tok = base_policy(config, root, seed, log=lambda *a: None)
    probs = task.validation[:config.eval.n_prompts]
    g = torch.Generator().manual_seed(0)
    out = {}
    for lv in sorted({p.level for p in probs}):
        sub = [p for p in probs if p.level == lv]
        out[f"base_acc_L{lv}"] = round(avg_at_k(model, tok, task, sub, config.eval.k, config.eval.temperature,
                                                config.rollout.max_new_tokens, g), 3)
    b = sample_batch(model, tok, task, probs, 1, 1.0, config.rollout.max_new_tokens, g)
    with torch.no_grad():
        out["base_H_T1"] = round(masked_mean(b.logprobs(model, with_entropy=True)[1], b.response_mask).item(), 3)
    out["base_acc_T1"] = round(float(b.scores.float().mean()), 3)
    return out


def strategy_report(model, tok, config, prefix):
    """addition_mix: share of T=1 responses using each strategy (direct = starts with '>'), accuracy of each,
    and token entropy of each, on the validation prompts (1 sample each)."""
    from replicate.algorithms.aggregation import masked_mean
    from replicate.runners.rl.rollout import sample_batch
    from replicate.tasks import make_task
    task = make_task(config.task.name, **config.task.params)
    probs = task.validation[:config.eval.n_prompts]
    g = torch.Generator().manual_seed(1)
    out = {}
    for temp, tag in ((1.0, "T1"), (config.eval.temperature, "Teval")):
        b = sample_batch(model, tok, task, probs, 2, temp, config.rollout.max_new_tokens, g)
        texts = tok.batch_decode(b.responses, skip_special_tokens=True)
        direct = torch.tensor([t.startswith(">") for t in texts])
        sc = b.scores.float()
        out[f"{prefix}_direct_share_{tag}"] = round(float(direct.float().mean()), 3)
        out[f"{prefix}_acc_direct_{tag}"] = round(float(sc[direct].mean()), 3) if direct.any() else None
        out[f"{prefix}_acc_scratch_{tag}"] = round(float(sc[~direct].mean()), 3) if (~direct).any() else None
        if tag == "T1":
            with torch.no_grad():
                ent = b.logprobs(model, with_entropy=True)[1]
            m = b.response_mask
            out[f"{prefix}_H_direct"] = round(masked_mean(ent[direct], m[direct]).item(), 3) if direct.any() else None
            out[f"{prefix}_H_scratch"] = round(masked_mean(ent[~direct], m[~direct]).item(), 3) if (~direct).any() else None
    return out


def main():
    name, seed, over = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    spec_path = sys.argv[sys.argv.index("--spec") + 1] if "--spec" in sys.argv else "experiments/entropy-mechanism/fig1.yaml"
    base = load_spec(spec_path).resolve("tiny").model_dump()
    if "name" in over.get("task", {}):
        base["task"] = over["task"]
    
    config = RunConfig.model_validate(deep_merge(base, over))
    root = "/tmp/tb-store"
    t0 = time.time()
    base_policy(config, root, seed, log=lambda *a: None)
    t_warm = time.time() - t0
    if "--base-only" in sys.argv or "--levels" in sys.argv:
        base_levels = level_report(config, root, seed)
        if "--base-only" in sys.argv:
            if config.task.name == "addition_mix":
                base_levels.update(strategy_report(*base_policy(config, root, seed, log=lambda *a: None), config, "base"))
            out = {"name": name, "seed": seed, "warmup_s": round(t_warm, 1), **base_levels, "overrides": over}
            print(json.dumps(out))
            with open("/tmp/tb-results.jsonl", "a") as fh:
                fh.write(json.dumps(out) + "\n")
            return
    strat = {}
    if config.task.name == "addition_mix":
        strat = strategy_report(*base_policy(config, root, seed, log=lambda *a: None), config, "base")
    run = Run(f"/tmp/tb-out/{name}-s{seed}-{config.digest()}")
    t0 = time.time()
    metrics = train(run, config, seed, root, resume=False, log=lambda *a: None)
    t_rl = time.time() - t0
    if config.task.name == "addition_mix":
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
        fm = AutoModelForCausalLM.from_pretrained(run.path / "model")
        ftok = PreTrainedTokenizerFast.from_pretrained(run.path / "model")
        strat.update(strategy_report(fm, ftok, config, "final"))
    steps, h, r = eval_points(metrics)
    e = np.exp(h)
    r_eh = np.corrcoef(e, h)[0, 1]
    fit = fit_exp_law(h, r)
    lin = np.polyfit(h, r, 1)
    lin_r2 = 1 - np.sum((r - np.polyval(lin, h)) ** 2) / np.sum((r - r.mean()) ** 2)
    sh = early_shares(metrics)
    ent = [m["entropy"] for m in metrics]
    out = {"name": name, "seed": seed, "warmup_s": round(t_warm, 1), "rl_s": round(t_rl, 1),
           "base_acc": round(float(r[0]), 3), "final_acc": round(float(r[-1]), 3),
           "max_acc": round(float(r.max()), 3),
           "H0": round(float(h[0]), 4), "Hend": round(float(h[-1]), 4),
           "H_ratio": round(sh["entropy_final_over_initial"], 3),
           "one_minus_r2_expH_H": float(f"{1 - r_eh ** 2:.3g}"),
           "exp_r2": round(fit.r2, 3), "lin_r2": round(float(lin_r2), 3), "ceiling": round(fit.ceiling, 3),
           "drop_share_1/3": round(sh["entropy_drop_share_first_third"], 2),
           "gain_share_1/3": round(sh["acc_gain_share_first_third"], 2),
           "acc_curve": [round(float(x), 3) for x in r], "H_curve": [round(float(x), 3) for x in h],
           **strat, "overrides": over}
    line = json.dumps(out)
    print(line)
    with open("/tmp/tb-results.jsonl", "a") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
