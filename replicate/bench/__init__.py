"""Benchmarks that print speed ratios measured side by side in one run (`python -m replicate bench NAME`).

Each arm lives in its own module and is registered here by name, loaded only when it runs (`module:function`)."""
from __future__ import annotations

import importlib
import time

from replicate.registry import Registry

BENCHES = Registry("bench", {
    "evaluators": "replicate.bench.evaluators:bench_evaluators",
    "rollout": "replicate.bench.core:bench_rollout",
    "update": "replicate.bench.core:bench_update",
    "entropy": "replicate.bench.core:bench_entropy",
    "rl-step": "replicate.bench.rl:bench_rl_step",
    "rl-rows": "replicate.bench.rl:bench_rl_rows",
    "small-step": "replicate.bench.small:bench_small_step",
    "all": "replicate.bench:bench_all",
})


def load(name: str):
    """The arm registered as `name`: its `module:function` target, imported now."""
    module, _, fn = BENCHES[name].partition(":")
    return getattr(importlib.import_module(module), fn)


def run(name: str, args):
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)
    return load(name)(args)


def bench_all(args):
    """The training-core arms one after the other (not `evaluators`, which times processes, not kernels); an arm
    whose extra is missing (rl-step without TRL) is skipped with its reason and the others still run."""
    t0 = time.perf_counter()
    for name in ("rollout", "update", "entropy", "rl-step"):
        if reason := missing_extra(name):
            print(f"bench {name}: skipped: {reason}\n")
            continue
        load(name)(args)
        print()
    print(f"bench all: {time.perf_counter() - t0:.0f} s")


def missing_extra(name: str) -> str | None:
    """Why arm `name` cannot run here (a missing optional extra), or None."""
    if name != "rl-step":
        return None
    from replicate.bench.rl import need_trl
    from replicate.errors import UserError
    try:
        need_trl()
    except UserError as exc:
        return str(exc)
    return None
