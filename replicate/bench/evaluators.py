"""Bench `evaluators`: the math verifier pool and the code sandbox against their plain rivals, side by side."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from replicate.paths import REPO


def _rate(fn, make, seconds):
    """Items per second of fn over batches make(0), make(1), ..., timing fn alone, for at least `seconds`."""
    done, spent, i = 0, 0.0, 0
    while spent < seconds:
        items = make(i)
        t0 = time.perf_counter()
        fn(items)
        spent += time.perf_counter() - t0
        done, i = done + len(items), i + 1
    return done / spent


def _math_workload(batch=0, n_golds=64, per_gold=8):
    """An RL-like batch: 8 responses per problem, half right, fresh problems and wrong answers per batch
    (MATH-500 answers if ../shared is there, else synthetic fractions)."""
    from evaluators.math import gold_answer
    shared = REPO.parent / "shared" / "data" / "math" / "math500.jsonl"
    if shared.exists():
        pool = [gold_answer(json.loads(line)) for line in shared.open()]
    else:
        pool = [f"\\frac{{{i}}}{{{i + 7}}}" for i in range(1, 501)]
    start = (batch * n_golds) % len(pool)
    golds = (pool[start:] + pool)[:n_golds]
    rng = random.Random(batch)
    responses, refs = [], []
    for g in golds:
        for j in range(per_gold):
            ans = g if j % 2 == 0 else f"{g}+{rng.randint(1, 9)}"
            responses.append(f"Let us compute step by step. We find {rng.randint(2, 99)} first, then the rest. "
                             f"So the answer is $\\boxed{{{ans}}}$.")
            refs.append(g)
    return responses, refs


def math_rates(secs: float) -> dict:
    """Verifications per second: Math-Verify in this process against evaluators.math's pool, and their agreement."""
    import logging
    from math_verify import parse, verify
    from evaluators.math import VerifierPool
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def make(i):
        responses, golds = _math_workload(i)
        return list(zip(responses, golds))
    pairs = make(0)

    def single(items):  # Math-Verify as usually called: parse both, verify, in this process
        return [float(verify(parse(f"${g}$"), parse(r))) for r, g in items]

    pool = VerifierPool()
    try:
        def pooled(items):
            return pool.score([r for r, _ in items], [g for _, g in items])
        agree = sum(a == b for a, b in zip(single(pairs), pooled(pairs))) / len(pairs)
        return {"pairs": len(pairs), "single": _rate(single, make, secs), "pool": _rate(pooled, make, secs),
                "agree": agree}
    finally:
        pool.close()


def code_rates(secs: float) -> dict:
    """Runs per second of 20 small programs with asserts: a plain subprocess, the sandbox (warm jails), and the
    sandbox with a new jail per run."""
    from evaluators.code import close_warm_jails, evaluate_code
    programs = [f"def add(a, b):\n    return a + b + {i % 2}\n" for i in range(20)]
    asserts = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"

    def plain(items):  # the unsandboxed baseline: program + asserts in one file, verdict = exit status
        with tempfile.TemporaryDirectory() as tmp:
            for i, prog in enumerate(items):
                f = Path(tmp) / f"p{i}.py"
                f.write_text(prog + "\n" + asserts)
                subprocess.run([sys.executable, "-I", str(f)], capture_output=True, timeout=10)

    def sandboxed(items):
        for prog in items:
            evaluate_code(prog, {"asserts": asserts}, timeout_s=10)

    def cold(items):  # a new jail for every run (the warm pool emptied after each)
        for prog in items:
            evaluate_code(prog, {"asserts": asserts}, timeout_s=10)
            close_warm_jails()
    return {"programs": len(programs), "plain": _rate(plain, lambda i: programs, secs),
            "sandbox": _rate(sandboxed, lambda i: programs, secs), "cold": _rate(cold, lambda i: programs, secs)}


def bench_evaluators(args):
    """Both comparisons, printed and written to <out>/evaluators-cpu.json."""
    from replicate.bench.core import write_json
    m, c = math_rates(args.seconds), code_rates(args.seconds)
    print(f"math: {m['pairs']} (response, gold) pairs, 8 per problem, on {os.cpu_count()} cores")
    print(f"  single-process Math-Verify  {m['single']:8.1f} verifications/s")
    print(f"  evaluators.math pool        {m['pool']:8.1f} verifications/s   ratio {m['pool'] / m['single']:.2f}x "
          f"(goal >= 2x); verdicts agree on {m['agree']:.1%}")
    print("  (the pool: 2 worker processes, each caching parsed gold answers, which 8 responses share, and")
    print("   skipping the parser when the extracted answer is the gold string; fresh problems every batch)")
    print(f"code: {c['programs']} programs with asserts, one at a time")
    print(f"  plain subprocess, no isolation  {c['plain']:7.1f} runs/s")
    print(f"  evaluators.code sandbox         {c['sandbox']:7.1f} runs/s   ratio {c['sandbox'] / c['plain']:.2f}x "
          "(goal >= 1x)")
    print(f"  sandbox, a new jail per run     {c['cold']:7.1f} runs/s   ratio {c['cold'] / c['plain']:.2f}x")
    print("  (every sandboxed run is a fresh process and dir forked in a jail; the first arm reuses warm jails)")
    payload = {"math": {**m, "pool_over_single": m["pool"] / m["single"]},
               "code": {**c, "sandbox_over_plain": c["sandbox"] / c["plain"], "cold_over_plain": c["cold"] / c["plain"]}}
    path = write_json("evaluators", "cpu", payload, getattr(args, "out", None))
    print(f"  -> {path}")
    return payload
