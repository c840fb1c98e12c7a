"""How far does one AdamW step move a small-scale policy? (issue 22: choosing Gemma 3 270M's step size)

One rollout of 4 tuning prompts x 8 at the arm's temperature, GRPO advantages, then for each lr one AdamW step of
the whole batch (the vanilla clipped loss, grad clip 1.0) from the same start, and the mean KL(old || new) over
the batch's response tokens, plus the stop share and accuracy of 16 held-out prompts x 2 after the step.
Prints one JSON line per lr.

Usage: PYTHONPATH=$PWD python scripts/step_kl.py --arm gemma3_270m --autocast off --lr 1e-7 3e-7 1e-6
       (--arm smollm2_135m: fig1's small preset; --seed: a tuning seed, 100 by default)
"""
import argparse
import copy
import json
import random

import torch

from replicate.algorithms import ADVANTAGES, POLICY_LOSSES, token_rewards
from replicate.runners.rl.models import ChatPrompts, autocast_forward
from replicate.runners.rl.optim import make_optimizer
from replicate.runners.rl.rollout import make_generator, sample_batch
from replicate.runners.rl.stops import ends
from replicate.runners.rl.warmup import base_policy
from replicate.specs import find_spec
from replicate.tasks import make_task


def setup(arm: str, autocast: str | None, seed: int):
    cfg = find_spec("fig3").variant_configs("small")[arm]
    model, tok = base_policy(cfg, "/tmp/step_kl", seed)
    model.set_attn_implementation(cfg.model.attention)
    model = autocast_forward(model, autocast or cfg.model.autocast, "cpu")
    task = make_task(cfg.task.name, **cfg.task.params)
    task = ChatPrompts(task, tok, cfg.model.system) if cfg.model.chat else task
    return cfg, model.eval(), tok, task


def one_step_kl(cfg, model, tok, task, batch, old, adv, start, lr: float) -> dict:
    """KL(old || new) on `batch` (log-probs `old`, advantages `adv`) after one AdamW step at `lr` from the state
    dict `start`."""
    model.load_state_dict(start)
    model.zero_grad(set_to_none=True)
    mask = batch.response_mask
    optimizer = make_optimizer(cfg.train.optimizer.model_copy(update={"lr": lr}), model.parameters())
    model.train()
    log_prob, _ = batch.logprobs(model)
    loss, _ = POLICY_LOSSES["vanilla"](old, log_prob, adv, mask, loss_agg_mode="token-mean", clip_ratio=0.2)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    model.eval()
    with torch.no_grad():
        new, _ = batch.logprobs(model)
    held = sample_batch(model, tok, task, task.validation[:16], 2, cfg.rollout.temperature, cfg.rollout.max_new_tokens,
                        make_generator(1, "cpu"))
    return {"lr": lr, "kl": (((old - new) * mask).sum() / mask.sum()).item(),
            "held_out_stop_share": ends(tok, held.responses).float().mean().item(),
            "held_out_acc": held.scores.mean().item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="gemma3_270m")
    ap.add_argument("--autocast", choices=["off", "bf16"], default=None, help="default: the arm's")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-5])
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, model, tok, task = setup(args.arm, args.autocast, args.seed)
    ro = cfg.rollout
    batch = sample_batch(model, tok, task, task.sample(4, random.Random(args.seed)), ro.group_size, ro.temperature,
                         ro.max_new_tokens, make_generator(args.seed, "cpu"))
    with torch.no_grad():
        old, _ = batch.logprobs(model)
    adv, _ = ADVANTAGES["grpo"](token_rewards(batch.scores, batch.response_mask), batch.response_mask, batch.index)
    start = copy.deepcopy(model.state_dict())
    for lr in args.lr:
        print(json.dumps({"arm": args.arm, "autocast": args.autocast or cfg.model.autocast, "seed": args.seed,
                          **one_step_kl(cfg, model, tok, task, batch, old, adv, start, lr)}), flush=True)


if __name__ == "__main__":
    main()
