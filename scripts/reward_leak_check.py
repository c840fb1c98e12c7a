"""Did a trained policy earn its reward with the answer, or through a leak in the reward?

A reward-hacking audit (docs/reward-leaks.md) found that word_arithmetic's reward, Math-Verify,
evaluates what it extracts: "The answer is 4 + 5." earns 1.0 without the sum. This decodes each finished run's
final policy on its task's held-out problems (greedy, and k samples at the spec's eval temperature, as validation
does) and counts the rewarded responses that do not write the gold number as such, and those whose answer as
written (word_arithmetic's final_number, the rule its reward reads) is not the gold: the question echoed ("8 - 4 is 8 - 4 = ", paid through Math-Verify's
last-number fallback) counts there. A count above 0 means the run's accuracy is inflated by a leak. It also counts
the other way: responses that answer the gold as written and are not rewarded ("5 + 5 is 10, but": a trailing
comma defeats the fallback).

    python scripts/reward_leak_check.py STORE_DIR/fig1/small-main-s0-* ... [--base] [--out leak.json]

One thread; about a minute a run for SmolLM2-135M on 2 cores. Responses are decoded with transformers'
generate(), not the project's sampler: what is counted is the form of what the policy writes.
"""
from __future__ import annotations

import argparse
import json
import re
from decimal import Decimal
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluators.math import score_batch
from replicate.runners.rl.models import load_pretrained
from replicate.tasks import make_task
from replicate.tasks.word_arithmetic import final_number as answer_as_written


def writes_gold(response: str, gold: str) -> bool:
    """Whether the gold number appears as a number of its own in the response ("4 + 5 = 9." for 9, not "19"); an
    echoed operand counts too ("8 - 4 is" for 4), so this misses echoes: answer_as_written catches them."""
    return re.search(r"(?<![\d.])" + re.escape(gold) + r"(?!\d|\.\d)", response) is not None


def chat_prompts(tok, problems, system: str | None = None) -> list[str]:
    """Each problem as one user turn in the model's chat template (with a system turn if given), as training does."""
    head = [] if system is None else [{"role": "system", "content": system}]
    return [tok.apply_chat_template([*head, {"role": "user", "content": p.prompt}], tokenize=False,
                                    add_generation_prompt=True) for p in problems]


def decode(model, tok, prompts, max_new_tokens, **sampling) -> list[str]:
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **sampling)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def check(model, tok, config: dict, k: int | None = None, temperature: float | None = None) -> dict:
    """Accuracy, and the rewarded responses without the gold number, greedy and sampled (k samples at
    `temperature`: the spec's eval protocol unless given)."""
    task = make_task(config["task"]["name"], **config["task"]["params"])
    prompts = chat_prompts(tok, task.validation, config["model"].get("system"))
    k, temperature, out = k or config["eval"]["k"], temperature or config["eval"]["temperature"], {}
    sampled = {"do_sample": True, "temperature": temperature, "num_return_sequences": k}
    for mode, k, sampling in (("greedy", 1, {"do_sample": False}), ("sampled", k, sampled)):
        responses = decode(model, tok, prompts, config["rollout"]["max_new_tokens"], **sampling)
        golds = [p.answer for p in task.validation for _ in range(k)]
        scores = score_batch(responses, golds)
        leaks = [(r, g) for r, g, s in zip(responses, golds, scores) if s and not writes_gold(r, g)]
        written = [answer_as_written(r) == Decimal(g) for r, g in zip(responses, golds)]
        other = [(r, g) for r, g, s, w in zip(responses, golds, scores, written) if s and not w]
        missed = [(r, g) for r, g, s, w in zip(responses, golds, scores, written) if w and not s]
        out[mode] = {"accuracy": sum(scores) / len(scores), "n": len(scores), "rewarded_without_gold": len(leaks),
                     "rewarded_not_answering_gold": len(other), "answering_gold_unrewarded": len(missed),
                     "examples": (leaks + other)[:5], "missed_examples": missed[:5]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run directories (each with config.json and model/)")
    ap.add_argument("--base", action="store_true", help="also the base model of the first run's spec")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--k", type=int, help="samples per problem (default: the spec's eval.k)")
    ap.add_argument("--temperature", type=float, help="sampling temperature (default: the spec's eval.temperature)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for i, run in enumerate(args.runs):
        config = json.loads((run / "config.json").read_text())
        if args.base and i == 0:
            model, tok = load_pretrained(config["model"]["path"], config["model"].get("gguf_file"))
            base = check(model.eval(), tok, config, args.k, args.temperature)
            rows.append({"run": "base: " + config["model"]["path"], **base})
            print(json.dumps(rows[-1]), flush=True)
        model = AutoModelForCausalLM.from_pretrained(run / "model", torch_dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(run / "model")
        rows.append({"run": f"{run.parent.name}/{run.name}", **check(model, tok, config, args.k, args.temperature)})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
