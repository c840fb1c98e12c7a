"""`python -m replicate bench rl-step`: our whole RL step (replicate.runners.rl.trainer.train) vs TRL's GRPOTrainer, on the
same tiny model shape, task, verifier, batch shape and number of updates, interleaved run by run.

Both sides start from a random-init copy of the fig1 tiny testbed's model (2-layer Qwen2, d=64, our character
tokenizer) on fig1's task (last digit of a 2-digit product), 32 prompts x 8 responses per step, at most 4 new
tokens at temperature 1, one AdamW step per RL step (lr 7e-4, grad clip 1), clip 0.2, token-mean loss, no KL,
and are scored by the task's own verifier (a response is right when it ends with EOS and is the answer).
Per-step time is the median gap between consecutive step ends (the first step of TRL, which warms up, and our
first and last steps, which also validate, are left out), in wall seconds and in the process's CPU seconds (both
sides run one thread: on a quiet machine the two agree; on a loaded one the CPU seconds are the steadier).
"""
from __future__ import annotations

import itertools
import os
import random
import tempfile
import time
import warnings
from pathlib import Path

import torch

from replicate.bench.core import machine, med, table, write_json

PROMPTS, GROUP, NEW_TOKENS, LR = 32, 8, 4, 7e-4


def _fig1_config(steps: int, prompts: int, group: int):
    from replicate.specs import apply_overrides, find_spec
    cfg = find_spec("fig1").resolve("tiny")
    return apply_overrides(cfg, {"warmup": {"steps": 0}, "train": {"steps": steps, "checkpoint_every": 10_000},
                                 "rollout": {"prompts_per_step": prompts, "group_size": group},
                                 "eval": {"every": 10_000, "n_prompts": 4, "k": 1}}, what="bench rl-step")


def run_ours(cfg, seed: int) -> dict:
    from replicate.store import Run
    from replicate.runners.rl.trainer import train
    ends = []
    with tempfile.TemporaryDirectory() as tmp:
        rows = train(Run(Path(tmp) / "run"), cfg, seed, Path(tmp) / "store", log=lambda *_: None,
                     progress=lambda step, m: ends.append((time.perf_counter(), time.process_time())))
    return {**_step_times(ends[:-1]), "response_length": sum(r["response_length"] for r in rows) / len(rows)}


def _step_times(ends: list[tuple[float, float]]) -> dict:
    """Median wall and CPU seconds between consecutive (wall, cpu) step ends."""
    gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(ends)]
    return {"step_s": med([w for w, _ in gaps]), "step_cpu_s": med([c for _, c in gaps]), "steps_timed": len(gaps)}


def run_trl(cfg, seed: int) -> dict:
    """TRL's GRPOTrainer offline on a config-built model with our char tokenizer and a reward calling our verifier."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from replicate.runners.rl.models import char_tokenizer, tiny_model
    from replicate.tasks import Problem, make_task
    task = make_task(cfg.task.name, **cfg.task.params)
    tok = char_tokenizer(task.alphabet)
    torch.manual_seed(seed)
    model = tiny_model(cfg.model.config, tok)
    ro, steps = cfg.rollout, cfg.train.steps
    problems = task.sample(ro.prompts_per_step * steps, random.Random(seed))
    data = Dataset.from_dict({"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]})

    def reward(prompts, completions, answer, completion_ids=None, **_):
        finished = [tok.eos_token_id in ids for ids in completion_ids] if completion_ids else [True] * len(answer)
        return [task.reward(c, Problem(p, a, 0), f) for p, c, a, f in zip(prompts, completions, answer, finished)]

    class Ends(TrainerCallback):
        def __init__(self):
            self.t = []

        def on_step_end(self, *args, **kwargs):
            self.t.append((time.perf_counter(), time.process_time()))
    ends = Ends()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = GRPOConfig(output_dir=tmp, per_device_train_batch_size=ro.prompts_per_step * ro.group_size,
                          num_generations=ro.group_size, max_completion_length=ro.max_new_tokens,
                          temperature=ro.temperature, learning_rate=cfg.train.optimizer.lr, lr_scheduler_type="constant",
                          optim="adamw_torch", max_grad_norm=cfg.train.grad_clip, epsilon=0.2, beta=0.0,
                          loss_type="dapo", max_steps=steps, use_cpu=not torch.cuda.is_available(), bf16=False,
                          logging_steps=1, save_strategy="no", report_to="none", disable_dropout=True, seed=seed)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok,
                              callbacks=[ends])
        from transformers.trainer_callback import PrinterCallback, ProgressCallback
        trainer.remove_callback(PrinterCallback)  # no per-step log dicts on stdout
        trainer.remove_callback(ProgressCallback)
        trainer.train()
    lengths = [r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r]
    return {**_step_times(ends.t), "response_length": sum(lengths) / len(lengths)}  # steps 1 .. (0 warms up)


def _row(name, r, speedup, speedup_cpu) -> list:
    return [name, round(r["step_s"], 3), round(r["step_cpu_s"], 3), round(r["samples_s"]), round(r["response_tok_s"]),
            round(r["response_length"], 2), round(speedup, 2), round(speedup_cpu, 2)]


def need_trl():
    """TRL (and its datasets) or a one-line error naming the extra that installs them."""
    try:
        import datasets  # noqa: F401
        import trl  # noqa: F401
    except ModuleNotFoundError as exc:
        from replicate.errors import UserError
        raise UserError(f"`bench rl-step` times our step against TRL's GRPOTrainer and needs TRL ({exc.name} is not "
                        "installed): pip install 'replicate-rl[bench]'") from None


def bench_rl_step(args) -> dict:
    need_trl()
    quick = getattr(args, "quick", False)
    steps = 4 if quick else 6
    prompts, group = (8, 4) if quick else (PROMPTS, GROUP)
    reps = max(1, getattr(args, "reps", None) or (1 if quick else 3))
    cfg = _fig1_config(steps, prompts, group)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)  # what our trainer sets for tiny models on CPU; TRL gets the same
    try:
        runs = {"ours": [], "trl": []}
        for r in range(reps):
            for name in (["ours", "trl"] if r % 2 == 0 else ["trl", "ours"]):
                runs[name].append((run_ours if name == "ours" else run_trl)(cfg, seed=r))
        info = machine(device)
    finally:
        torch.set_num_threads(threads)
    rows = prompts * group
    res = {}
    for name, rs in runs.items():
        step_s = med([x["step_s"] for x in rs])
        length = sum(x["response_length"] for x in rs) / len(rs)
        res[name] = {"step_s": step_s, "step_cpu_s": med([x["step_cpu_s"] for x in rs]), "response_length": length,
                     "samples_s": rows / step_s,
                     "response_tok_s": rows * length / step_s, "runs": rs}
    payload = {"config": {"prompts_per_step": prompts, "group_size": group, "max_new_tokens": NEW_TOKENS,
                          "steps_per_run": steps, "runs_per_arm": reps, "model": cfg.model.config,
                          "task": {"name": cfg.task.name, **cfg.task.params}},
               "ours": res["ours"], "trl": res["trl"], "ours_over_trl": res["trl"]["step_s"] / res["ours"]["step_s"],
               "ours_over_trl_cpu": res["trl"]["step_cpu_s"] / res["ours"]["step_cpu_s"],
               "note": "per-step time = median gap between step ends; tokens/s counts response tokens "
                       "(rows x mean response length); both sides random-init, so lengths are near the cap"}
    path = write_json("rl-step", device, {**payload, "machine": info}, getattr(args, "out", None))
    import trl
    load = os.getloadavg()[0]
    print(table(f"rl-step on {device} ({info['torch_threads']} thread(s), load {load:.1f} on {os.cpu_count()} CPUs): "
                f"fig1 tiny testbed, {prompts} prompts x {group}, <= {NEW_TOKENS} new tokens, 1 update/step, "
                f"{steps} steps x {reps} runs per arm",
                ["trainer", "s/step", "CPU s/step", "samples/s", "resp tokens/s", "mean resp len", "ours speedup",
                 "(CPU s)"],
                [_row("ours (replicate.runners.rl.trainer)", res["ours"], payload["ours_over_trl"],
                      payload["ours_over_trl_cpu"]),
                 _row(f"TRL {trl.__version__} GRPOTrainer", res["trl"], 1.0, 1.0)])
          + f"\n  -> {path}")
    return payload


def bench_rl_rows(args) -> dict:
    """What stacking N seeds into one batched model could gain at most: our tiny step at 32 x 8 rows against N times
    the rows (the work N stacked seeds would do per step), interleaved. Rows per second over the 1x arm is the
    ceiling of seeds per second from batching seeds (their weights would differ, so it is an upper bound)."""
    quick = getattr(args, "quick", False)
    steps, group = (4, 4) if quick else (10, GROUP)
    factors = (1, 2) if quick else (1, 4, 8)
    prompts = 8 if quick else PROMPTS
    reps = max(1, getattr(args, "reps", None) or (1 if quick else 3))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = {n: [] for n in factors}
        for r in range(reps):
            for n in factors:
                times[n].append(run_ours(_fig1_config(steps, prompts * n, group), seed=r)["step_s"])
        info = machine("cpu")
    finally:
        torch.set_num_threads(threads)
    base = med(times[1])
    arms = {n: {"step_s": med(t), "time_ratio": med(t) / base, "rows_per_s_ratio": n / (med(t) / base), "runs": t}
            for n, t in times.items()}
    payload = {"config": {"prompts_per_step": prompts, "group_size": group, "steps_per_run": steps,
                          "runs_per_arm": reps, "factors": list(factors)},
               "arms": {str(n): a for n, a in arms.items()}, "machine": info}
    path = write_json("rl-rows", "cpu", payload, getattr(args, "out", None))
    print(table(f"rl-rows on cpu (1 thread, load {os.getloadavg()[0]:.1f}): our tiny step at N x the rows "
                f"({prompts} prompts x {group} at N = 1), {steps} steps x {reps} runs per arm",
                ["rows", "s/step", "time ratio", "rows/s ratio (ceiling of N stacked seeds)"],
                [[f"{n}x ({prompts * n * group})", round(a["step_s"], 4), round(a["time_ratio"], 2),
                  round(a["rows_per_s_ratio"], 2)] for n, a in arms.items()])
          + f"\n  -> {path}")
    return payload
