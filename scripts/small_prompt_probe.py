"""Base accuracy of SmolLM2-135M-Instruct on fig1's small task, per chat prompt (docs/testbed/small.md).

Usage: PYTHONPATH=$PWD python scripts/small_prompt_probe.py [--autocast bf16] [--n 64]
For the template's default system turn and an empty one: prompt tokens, greedy accuracy, and T = 0.6 (k = 2)
accuracy and share of samples ending with EOS, on the task's first n held-out problems, 12 new tokens.
Prints one JSON line per prompt.
"""
import argparse
import json
import time

import torch

from replicate.runners.rl.models import ChatPrompts, autocast_forward, load_pretrained
from replicate.runners.rl.rollout import make_generator, sample_batch
from replicate.specs import find_spec


def measure(model, tok, task, system, n, new_tokens):
    chat = ChatPrompts(task, tok, system)
    problems = chat.validation[:n]
    lengths = [len(tok(p.prompt, add_special_tokens=False)["input_ids"]) for p in problems]
    t0 = time.time()
    greedy = sample_batch(model, tok, chat, problems, 1, 0.0, new_tokens, make_generator(0, "cpu"))
    warm = sample_batch(model, tok, chat, problems, 2, 0.6, new_tokens, make_generator(1, "cpu"))
    eos = (warm.responses == tok.eos_token_id).any(dim=1).float().mean().item()
    return {"system": system, "prompt_tokens": sum(lengths) / len(lengths), "n": len(problems),
            "greedy": greedy.train_acc, "t0.6_k2": warm.train_acc, "t0.6_eos": eos,
            "t0.6_len": warm.response_mask.sum(-1).mean().item(), "seconds": round(time.time() - t0, 1),
            "example": tok.decode(warm.responses[0], skip_special_tokens=True)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--autocast", default="off", choices=["off", "bf16"])
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    cfg = find_spec("fig1").resolve("small")
    from replicate.tasks import make_task
    task = make_task(cfg.task.name, **cfg.task.params)
    model, tok = load_pretrained(cfg.model.path, cfg.model.gguf_file)
    model = autocast_forward(model.eval(), args.autocast, "cpu")
    for system in (None, ""):
        print(json.dumps({"autocast": args.autocast, **measure(model, tok, task, system, args.n,
                                                                cfg.rollout.max_new_tokens)}), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
