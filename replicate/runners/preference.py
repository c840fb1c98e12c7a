"""The `preference` runner: DAST (Shen et al. 2025) and its offline baselines, end to end at tiny scale.

Per seed, from the seed's warm-up base policy (warmup.base_policy):
  1. sample N = rollout.group_size responses per training problem at rollout.temperature, capped at
     rollout.max_new_tokens tokens (cached in the run store: <store>/_dast_samples/<key>/, shared by every arm,
     spec and re-run with the same base policy and sampling settings), and evaluate the base policy greedily
     per difficulty level (the "before" rows, cached beside the samples);
  2. per arm (a `method` and its parameters, from runner_params merged with the variant's runner_params):
     dast              p, L_r, L_budget and the budget-aware reward per problem (replicate.algorithms.dast), dual-correct /
                       dual-incorrect pairs with the δ cut, SimPO (PREFERENCE_LOSSES["simpo"])
     simpo_shortest    SimPO on (shortest correct, longest correct) per problem
     sft_shortest      supervised fine-tuning on the shortest correct response per problem
     length_penalty    reward = correct - α·L/L_cap for every response (a uniform length penalty), pairs by that
                       reward with build_pairs (dual-correct: shorter wins; dual-incorrect: shorter wins too), SimPO
     base              no training (the original model)
  3. greedy evaluation on the task's held-out problems per level: accuracy and mean response tokens (EOS
     counted), before and after.
Rows (metrics.jsonl): phase "meta" (levels), "pairs" (pair statistics), "train" (per optimiser step), "before" /
"after" (one per level: acc, tokens, scratchpad share).
"""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import typing
from typing import Literal

import torch
from pydantic import Field, ValidationError

from replicate.algorithms.dast import PreferencePair, Response, build_pairs, score_problem
from replicate.algorithms.preference import PREFERENCE_LOSSES
from replicate.errors import UserError
from replicate.runners.rl.models import response_logprobs
from replicate.runners.rl.stops import cut_at_stops, ends, stop_token_ids
from replicate.paths import digest
from replicate.seeds import derive_seed
from replicate.runners import Params, Runner, one_process
from replicate.runners.pool import parallel_workers
from replicate.engines import ENGINES
from replicate.runners.rl.rollout import encode_prompts, make_generator, score_responses
from replicate.store import Run
from replicate.tasks import Problem, make_task
from replicate.runners.rl.warmup import base_policy, warmup_key

class PreferenceParams(Params):
    """DAST's and its baselines' settings; runner_params' `scales: {tiny: {...}}` overrides them per scale
    (Spec.at_scale), and a variant's own runner_params override both for that arm."""
    method: Literal["dast", "simpo_shortest", "sft_shortest", "length_penalty", "base"] = Field(
        "dast", description="the arm's method (see the module docstring)")
    n_train: int = Field(200, ge=1, description="training problems per seed")
    l_max: int | None = Field(None, description="L_max of the budget; null = the sampling cap rollout.max_new_tokens (the paper's)")
    l_max_from: Literal["cap", "longest"] = Field("cap", description="where L_max comes from (algorithms.dast.problem_stats)")
    delta: float = Field(0.15, ge=0, description="δ: the global cut of the smallest-gap pairs")
    max_pairs_per_problem: int = Field(2, ge=1, description="preference pairs kept per problem")
    dual_correct: bool = Field(True, description="build dual-correct pairs (shorter correct wins)")
    dual_incorrect: bool = Field(True, description="build dual-incorrect pairs")
    beta: float = Field(2.0, gt=0, description="SimPO β (not reported by DAST; SimPO's recommended range)")
    gamma: float = Field(1.0, ge=0, description="SimPO γ (absolute margin)")
    alpha: float = Field(0.5, ge=0, description="length_penalty: reward = correct - α·L/L_cap")
    batch_size: int = Field(16, ge=1, description="pairs (or SFT examples) per optimiser step")
    eval_max_new_tokens: int | None = Field(None, description="greedy evaluation cap; null = rollout.max_new_tokens")
    easy_levels: list[int] = Field([1, 2], description="levels averaged as easy")
    hard_levels: list[int] = Field([4, 5], description="levels averaged as hard")


DEFAULTS = {k: f.default for k, f in PreferenceParams.model_fields.items()}
METHODS = typing.get_args(PreferenceParams.model_fields["method"].annotation)


def arm_params(spec, variant: str, scale: str) -> dict:
    """runner_params at `scale` (Spec.at_scale) merged with the variant's runner_params."""
    base = dict(spec.at_scale(scale).runner_params)
    for v in spec.variants:
        if v.name == variant:
            base.update(v.runner_params)
    try:
        return PreferenceParams.model_validate(base).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"preference runner, arm {variant!r}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


# ---- sampling and evaluation ---------------------------------------------------------------------------------

def _gen_texts(model, tok, task, problems, n, temperature, max_new_tokens, gen, batch=512, engine="ours"):
    """[(text, length in tokens incl. EOS, finished, correct)] for n responses per problem (problem-major)."""
    rows = [p for p in problems for _ in range(n)]
    out, device = [], next(model.parameters()).device
    for s in range(0, len(rows), batch):
        chunk = rows[s:s + batch]
        ids, mask = encode_prompts(tok, [p.prompt for p in chunk], device)
        resp, rmask = ENGINES[engine](model, ids, mask, max_new_tokens, temperature, stop_token_ids(tok), tok.pad_token_id,
                                      gen)
        scores = score_responses(tok, task, resp, rmask, chunk)
        finished = ends(tok, resp).tolist()
        texts = cut_at_stops(tok, tok.batch_decode(resp, skip_special_tokens=True))
        lengths = rmask.sum(1).long().tolist()
        out += [(t, int(n_), bool(f), bool(c >= 1.0)) for t, n_, f, c in zip(texts, lengths, finished, scores)]
    return out


def evaluate_levels(model, tok, task, max_new_tokens) -> list[dict]:
    """Greedy accuracy, mean tokens and scratchpad share per level on the task's held-out problems."""
    model.eval()
    res = _gen_texts(model, tok, task, task.validation, 1, 0.0, max_new_tokens, None)
    rows = []
    for level in sorted({p.level for p in task.validation}):
        idx = [i for i, p in enumerate(task.validation) if p.level == level]
        pad = getattr(task, "has_scratchpad", None)
        row = {"level": level, "n": len(idx), "acc": sum(res[i][3] for i in idx) / len(idx),
               "tokens": sum(res[i][1] for i in idx) / len(idx)}
        if pad:
            row["scratchpad"] = sum(pad(res[i][0]) for i in idx) / len(idx)
        rows.append(row)
    return rows


def sample_cache(config, root: Path, seed: int, n_train: int, eval_cap: int, log=print):
    """(problems, samples per problem, base eval rows) for one seed, sampled once and cached in the store."""
    ro = config.rollout
    key = digest({"warmup": warmup_key(config, seed), "n": ro.group_size, "temperature": ro.temperature,
                  "cap": ro.max_new_tokens, "n_train": n_train, "eval_cap": eval_cap, "engine": ro.engine})
    cache = Path(root) / "_dast_samples" / f"s{seed}-{key}"
    if (cache / "DONE").exists():
        data = json.loads((cache / "samples.json").read_text())
        problems = [Problem(**p) for p in data["problems"]]
        return problems, [[tuple(s) for s in g] for g in data["samples"]], data["base_eval"]
    model, tok = base_policy(config, root, seed, log=log)
    task = make_task(config.task.name, **config.task.params)
    problems = task.sample(n_train, random.Random(derive_seed(seed, "dast-problems")))
    torch.manual_seed(derive_seed(seed, "dast-sampling"))
    flat = _gen_texts(model, tok, task, problems, ro.group_size, ro.temperature, ro.max_new_tokens,
                      make_generator(derive_seed(seed, "dast-sampling"), next(model.parameters()).device),
                      engine=ro.engine)
    samples = [flat[i * ro.group_size:(i + 1) * ro.group_size] for i in range(len(problems))]
    base_eval = evaluate_levels(model, tok, task, eval_cap)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "samples.json").write_text(json.dumps({"problems": [p.__dict__ for p in problems], "samples": samples,
                                                    "base_eval": base_eval}))
    (cache / "DONE").write_text("done\n")
    return problems, samples, base_eval


# ---- training data per method -----------------------------------------------------------------------------

def _responses(i, group, rewards=None):
    return [Response(i, text, length, ok, 0.0 if rewards is None else rewards[j])
            for j, (text, length, _, ok) in enumerate(group)]


def make_training_data(problems, samples, params: dict, cap: int):
    """(pairs, sft examples) for one arm from the shared samples. Pairs are dast.PreferencePair."""
    method, pairs, sft = params["method"], [], []
    if method == "dast":
        l_max = params["l_max"] or cap
        groups = {i: score_problem(i, [(t, n, ok) for t, n, _, ok in g], l_max, params["l_max_from"])
                  for i, g in enumerate(samples)}
        pairs = build_pairs(groups, params["delta"], params["max_pairs_per_problem"], params["dual_correct"],
                            params["dual_incorrect"])
    elif method == "length_penalty":
        groups = {i: _responses(i, g, [float(ok) - params["alpha"] * n / cap for _, n, _, ok in g])
                  for i, g in enumerate(samples)}
        pairs = build_pairs(groups, params["delta"], params["max_pairs_per_problem"])
    elif method in ("simpo_shortest", "sft_shortest"):
        for i, g in enumerate(samples):
            correct = sorted((r for r in _responses(i, g) if r.correct), key=lambda r: r.length)
            if method == "sft_shortest" and correct:
                sft.append((i, correct[0]))
            elif method == "simpo_shortest" and len(correct) >= 2 and correct[0].length < correct[-1].length:
                pairs.append(PreferencePair(i, correct[0], correct[-1], "shortest_vs_longest"))
    return pairs, sft


def pair_stats(pairs, sft, problems) -> dict:
    row = {"n_pairs": len(pairs), "n_sft": len(sft),
           "n_dual_correct": sum(p.kind == "dual_correct" for p in pairs),
           "n_dual_incorrect": sum(p.kind == "dual_incorrect" for p in pairs)}
    if pairs:
        row["chosen_minus_rejected_tokens"] = sum(p.chosen.length - p.rejected.length for p in pairs) / len(pairs)
    for level in sorted({p.level for p in problems}):
        lp = [p for p in pairs if problems[p.problem_id].level == level]
        row[f"n_pairs_L{level}"] = len(lp)
        row[f"pair_dlen_L{level}"] = (sum(p.chosen.length - p.rejected.length for p in lp) / len(lp)) if lp else 0.0
    return row


def _tokens(tok, text: str, finished: bool) -> list[int]:
    """A sampled answer as training tokens: its text, then EOS where it ended (rollout.stop is refused here)."""
    return tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if finished else [])


def _batch(tok, prompts, responses, device=None):
    ids, mask = encode_prompts(tok, prompts, device)
    width = max(map(len, responses))
    resp = torch.full((len(responses), width), tok.pad_token_id, device=device)
    rmask = torch.zeros(len(responses), width, device=device)
    for i, r in enumerate(responses):
        resp[i, :len(r)] = torch.tensor(r, device=device)
        rmask[i, :len(r)] = 1
    return ids, mask, resp, rmask


def train_arm(model, tok, problems, samples, pairs, sft, params, config, seed, log_row):
    """SimPO on the pairs (or SFT on the examples): train.ppo_epochs epochs, mini-batches of batch_size,
    AdamW at train.optimizer.lr, grad clip train.grad_clip. Log one row per optimiser step."""
    finished = {(i, t): f for i, g in enumerate(samples) for t, _, f, _ in g}
    items = pairs or sft
    if not items:
        return
    opt = torch.optim.AdamW(model.parameters(), lr=config.train.optimizer.lr,
                            weight_decay=config.train.optimizer.weight_decay)
    rng = random.Random(derive_seed(seed, "dast-order"))
    loss_fn, step, device = PREFERENCE_LOSSES["simpo"], 0, next(model.parameters()).device
    model.train()
    for epoch in range(config.train.ppo_epochs):
        order = list(range(len(items)))
        rng.shuffle(order)
        for s in range(0, len(order), params["batch_size"]):
            chunk = [items[j] for j in order[s:s + params["batch_size"]]]
            if pairs:
                prompts = [problems[p.problem_id].prompt for p in chunk]
                w = _batch(tok, prompts, [_tokens(tok, p.chosen.text, finished[p.problem_id, p.chosen.text]) for p in chunk], device)
                lo = _batch(tok, prompts, [_tokens(tok, p.rejected.text, finished[p.problem_id, p.rejected.text]) for p in chunk], device)
                lw, _ = response_logprobs(model, w[0], w[1], w[2], 1.0)
                ll, _ = response_logprobs(model, lo[0], lo[1], lo[2], 1.0)
                loss, m = loss_fn(lw, ll, w[3], lo[3], beta=params["beta"], gamma=params["gamma"])
            else:
                b = _batch(tok, [problems[i].prompt for i, _ in chunk],
                           [_tokens(tok, r.text, finished[i, r.text]) for i, r in chunk], device)
                lp, _ = response_logprobs(model, *b[:3], 1.0)
                loss = -(lp * b[3]).sum() / b[3].sum()
                m = {}
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            opt.step()
            log_row({"phase": "train", "epoch": epoch, "loss": loss.item(), **m})
            step += 1
    model.eval()


# ---- the runner -----------------------------------------------------------------------------------------------

def run_preference(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    """{variant: {seed: Run}}; a finished arm run with the same config, parameters and code is reused. Seeds
    train side by side in processes (tiny models on a CPU-only machine; one thread each, so the numbers do not
    depend on the worker count), a seed's arms in order, since they share its warm-up and samples."""
    one_process("preference")
    if any(c.rollout.stop for c in configs.values()):  # _tokens would teach EOS where the sampler stopped at a string
        raise UserError("rollout.stop: the preference runner trains each chosen answer to end with EOS; remove it")
    workers = parallel_workers([(v, c, s, None) for s in seeds for v, c in configs.items()])
    if workers == 1:
        by_seed = {seed: seed_runs(spec, scale, configs, seed, root, force, log) for seed in seeds}
    else:
        from replicate.runners.pool import Job, run_jobs
        log(f"training {spec.id} [{scale}]: {len(seeds)} seeds in {workers} processes")
        by_seed = {}
        jobs = [Job(seed_runs, (spec, scale, configs, seed, str(root), force), [f"{spec.id} seed {seed} ({', '.join(configs)})"])
                for seed in seeds]
        run_jobs(jobs, workers, lambda job, runs: by_seed.__setitem__(job.args[3], runs), log=log)
    return {v: {seed: by_seed[seed][v] for seed in seeds} for v in configs}


def seed_runs(spec, scale, configs, seed: int, root, force=False, log=print) -> dict:
    """One seed's arm runs, {variant: Run}, trained in order (reused when finished)."""
    root, out = Path(root), {}
    for variant, config in configs.items():
        params = arm_params(spec, variant, scale)
        run = Run.keyed(root, spec.id, scale, variant, seed,
                        {"config": config.model_dump(exclude={"seeds"}), "params": params})
        if run.done and not force:
            out[variant] = run
            continue
        cap = config.rollout.max_new_tokens
        eval_cap = params["eval_max_new_tokens"] or cap
        problems, samples, base_eval = sample_cache(config, root, seed, params["n_train"], eval_cap, log=log)
        run.path.mkdir(parents=True, exist_ok=True)
        run.reset()
        run.config_file.write_text(json.dumps({"seed": seed, "runner": "preference", "variant": variant,
                                               "params": params, "config": config.model_dump()}, indent=2))
        step = [0]

        def log_row(row):
            run.append_metrics({"step": step[0], **row})
            step[0] += 1
        log_row({"phase": "meta", "method": params["method"], "easy_levels": params["easy_levels"],
                 "hard_levels": params["hard_levels"], "n_train": len(problems), "n_samples": config.rollout.group_size,
                 "train_sample_acc": sum(ok for g in samples for *_, ok in g) / sum(map(len, samples))})
        for row in base_eval:
            log_row({"phase": "before", **row})
        pairs, sft = make_training_data(problems, samples, params, cap)
        log_row({"phase": "pairs", **pair_stats(pairs, sft, problems)})
        if params["method"] == "base":
            after = base_eval
        else:
            model, tok = base_policy(config, root, seed, log=log)
            model = copy.deepcopy(model)
            torch.manual_seed(derive_seed(seed, f"dast-train-{variant}"))
            train_arm(model, tok, problems, samples, pairs, sft, params, config, seed, log_row)
            after = evaluate_levels(model, tok, make_task(config.task.name, **config.task.params), eval_cap)
        for row in after:
            log_row({"phase": "after", **row})
        run.finish()
        log(f"{spec.id} {variant} seed {seed}: pairs {len(pairs)}, sft {len(sft)}; after "
            + ", ".join(f"L{r['level']} acc {r['acc']:.2f} tok {r['tokens']:.1f}" for r in after))
        out[variant] = run
    return out


RUNNER = Runner(run_preference, PreferenceParams, variant_params=True)
