"""Measure one teach-testbed candidate on one seed: the base policy (greedy, pass@8, the misconception's share of
its wrong greedy answers), then fig1's RL body with the sharpening null (docs/testbed/teach.md).

Usage: PYTHONPATH=$PWD python scripts/teach_probe.py NAME SEED 'JSON overrides' [--spec PATH]
Prints one JSON line (also appended to /tmp/teach-results.jsonl).
"""
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

from replicate.analysis.fits import early_prediction, early_shares, eval_points, fit_exp_law  # noqa: E402
from replicate.analysis.sharpening import sharpening_values  # noqa: E402
from replicate.runners.rl.rollout import make_generator, sample_batch  # noqa: E402
from replicate.specs import RunConfig, deep_merge, load_spec  # noqa: E402
from replicate.store import Run  # noqa: E402
from replicate.tasks import make_task  # noqa: E402
from replicate.tasks.short_answer import MISCONCEPTIONS  # noqa: E402
from replicate.runners.rl.trainer import train  # noqa: E402
from replicate.runners.rl.warmup import base_policy  # noqa: E402

TEMPS = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]


def base_report(config, root, seed):
    """pass@8 at T = 1 and greedy accuracy of the base; share of wrong greedy answers equal to the rule's."""
    task = make_task(config.task.name, **config.task.params)
    model, tok = base_policy(config, root, seed, log=lambda *a: None)
    probs = task.validation[:config.eval.n_prompts]
    b = sample_batch(model, tok, task, probs, 8, 1.0, config.rollout.max_new_tokens, make_generator(7, "cpu"))
    pass8 = b.scores.view(len(probs), 8).max(1).values.float().mean().item()
    g = sample_batch(model, tok, task, probs, 1, 0.0, config.rollout.max_new_tokens, make_generator(7, "cpu"))
    texts = tok.batch_decode(g.responses, skip_special_tokens=True)
    rule = MISCONCEPTIONS[config.task.params.get("misconception", "none")]
    wrong = [(t, p) for t, p, s in zip(texts, probs, g.scores.tolist()) if not s]
    return {"base_pass8": round(pass8, 3), "base_greedy": round(g.scores.float().mean().item(), 3),
            "wrong_greedy_is_rule": round(sum(t == rule(p) for t, p in wrong) / max(1, len(wrong)), 3),
            "rule_agrees_with_answer": round(sum(rule(p) == p.answer for p in probs) / len(probs), 3)}


def main():
    name, seed, over = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    spec = sys.argv[sys.argv.index("--spec") + 1] if "--spec" in sys.argv else "experiments/entropy-mechanism/fig1.yaml"
    base = load_spec(spec).resolve("tiny").model_dump()
    config = RunConfig.model_validate(deep_merge(deep_merge(base, {"eval": {"base_temperatures": TEMPS}}), over))
    root = "/tmp/teach-store"
    t0 = time.time()
    out = {"name": name, "seed": seed, **base_report(config, root, seed)}
    out["warmup_s"] = round(time.time() - t0, 1)
    run = Run(f"/tmp/teach-out/{name}-s{seed}-{config.digest()}")
    t0 = time.time()
    metrics = train(run, config, seed, root, resume=False, log=lambda *a: None)
    out["rl_s"] = round(time.time() - t0, 1)
    sh, sv = early_shares(metrics), sharpening_values(metrics)
    _, h, r = eval_points(metrics)
    ep = early_prediction(metrics)
    out.update({k: round(v, 3) for k, v in sv.items()})
    out.update({"acc_final": round(sh["acc_final"], 3), "H0": round(sh["entropy_initial"], 3),
                "H_ratio": round(sh["entropy_final_over_initial"], 3), "fit_r2": round(fit_exp_law(h, r).r2, 3),
                "law_minus_no_change": round(ep["early_fit_rmse_rest"] - ep["no_change_rmse_rest"], 4),
                "len_final": round(metrics[-1]["response_length"], 2),
                "base_curve": {k: round(v, 3) for k, v in metrics[0].items() if k.startswith("base_")},
                "acc_curve": [round(float(x), 3) for x in r], "overrides": over})
    line = json.dumps(out)
    print(line)
    with open("/tmp/teach-results.jsonl", "a") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
