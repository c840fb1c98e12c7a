"""The lemma probes: experiments that are not RL runs. Their points go to the run store like metrics do."""
from __future__ import annotations

import json
import random
from typing import Callable

import numpy as np
import torch
from pydantic import Field

from replicate.algorithms import (ADVANTAGES, POLICY_LOSSES, entropy_from_logits, logprobs_from_logits, masked_mean,
                         predicted_entropy_change, token_covariance, token_rewards)
from replicate.algorithms.lemma import lemma_points
from replicate.runners import Params, Runner, one_process
from replicate.runners.rl.models import response_logits
from replicate.store import Run
from replicate.seeds import derive_seed


def lemma_exact_points(params: dict, seed: int) -> list[dict]:
    """The softmax lemma on random states, exactly (float64), over a log grid of step sizes."""
    etas = np.logspace(np.log10(params.get("eta_min", 1e-4)), np.log10(params.get("eta_max", 1e-1)),
                       params.get("n_etas", 7))
    return lemma_points(seed, params.get("vocab_sizes", [4, 16, 256, 4096, 50000]),
                        params.get("states_per_vocab", 16), etas, params.get("logit_scale", 2.0))


def logit_step_probe(config, seed: int, store_root, lr: float, n_batches: int = 1, log=print) -> list[dict]:
    """One plain SGD step from the base policy on each of n_batches rollout batches, measured two ways.

    Rows kind="position", at every valid response position: the measured ΔH; the theorem's prediction from the
    batch's log-probs and advantages alone, -Cov_π(log π, Δz) with the policy-gradient step of a softmax policy
    Δz = A·(onehot(y) - π) (up to the step size); and the Taylor check, -Cov_π(log π, Δz) with the measured logit
    change. Rows kind="batch": the batch's covariance term and mean ΔH. Every batch is stepped twice from the base
    policy: along the gradient, and (direction="random") along a random parameter direction of the same norm, a
    null that the theorem's claim must fail.
    """
    from replicate.runners.rl.rollout import make_generator, rollout
    from replicate.tasks import make_task
    from replicate.runners.rl.warmup import base_policy
    torch.manual_seed(seed)
    policy, tok = base_policy(config, store_root, seed, log=log)
    task = make_task(config.task.name, **config.task.params)
    base = {k: v.clone() for k, v in policy.state_dict().items()}
    py_rng, gen = random.Random(seed), make_generator(seed, next(policy.parameters()).device)
    noise = torch.Generator().manual_seed(derive_seed(seed, "random-step"))
    rows = []
    for b in range(n_batches):
        policy.load_state_dict(base)
        policy.eval()
        batch = rollout(policy, tok, task, config.rollout, slice(None), py_rng, gen)
        for direction in ("gradient", "random"):
            policy.load_state_dict(base)
            rows += [{**r, "direction": direction}
                     for r in _one_step(policy, batch, config.algorithm, lr, direction, noise, b)]
    return rows


def _one_step(policy, batch, alg, lr, direction, noise, b) -> list[dict]:
    """Take one step on `batch` and measure the entropy change on its states (see logit_step_probe)."""
    mask = batch.response_mask
    advantages, _ = ADVANTAGES[alg.advantage](token_rewards(batch.scores, mask), mask, batch.index,
                                              **alg.advantage_params)

    def logits_of():
        return response_logits(policy, batch.prompt_ids, batch.prompt_mask, batch.responses, batch.temperature).double()

    z_before = logits_of()
    logp = logprobs_from_logits(z_before.float(), batch.responses)
    loss, _ = POLICY_LOSSES["vanilla"](logp.detach(), logp, advantages, mask, loss_agg_mode=alg.loss_agg_mode)
    policy.zero_grad()
    loss.backward()
    with torch.no_grad():
        grads = [p.grad for p in policy.parameters() if p.grad is not None]
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        if direction == "random":
            grads = [torch.randn(g.shape, generator=noise).to(g.device) for g in grads]  # drawn on the CPU: same on any device
            scale = norm / torch.sqrt(sum((g ** 2).sum() for g in grads))
            grads = [g * scale for g in grads]
        for p, g in zip([p for p in policy.parameters() if p.grad is not None], grads):
            p -= lr * g
        z_after = logits_of()
        z_before = z_before.detach()
        exact = entropy_from_logits(z_after) - entropy_from_logits(z_before)
        cov = masked_mean(token_covariance(logp.detach(), advantages, mask), mask).item()
        pred = predicted_entropy_change(z_before, z_after - z_before)
        theorem = predicted_entropy_change(z_before, tabular_pg_step(z_before, batch.responses, advantages))
    valid = mask.bool()
    rows = [{"kind": "batch", "batch": b, "cov": cov, "delta_entropy": masked_mean(exact.float(), mask).item(),
             "step_norm": float(norm) * lr}]
    return rows + [{"kind": "position", "batch": b, "exact": e, "predicted": p, "theorem": t, "advantage": a}
                   for e, p, t, a in zip(exact[valid].tolist(), pred[valid].tolist(), theorem[valid].tolist(),
                                         advantages[valid].tolist())]


def tabular_pg_step(logits, actions, advantages):
    """The logit step of vanilla policy gradient on a softmax policy whose parameters are its logits, one state
    per position (the lemma's setting): Δz = A·(onehot(y) - π), up to the step size."""
    probs = torch.softmax(logits, dim=-1)
    onehot = torch.nn.functional.one_hot(actions, logits.shape[-1]).to(probs.dtype)
    return advantages.to(probs.dtype).unsqueeze(-1) * (onehot - probs)


# ---- the two study runners: one row list per seed, keyed by their parameters and the code

def _study(spec, scale, configs, seeds, root, force, log, points: Callable) -> dict:
    """{"main": {seed: Run}}; a finished study with the same parameters (and code) is reused."""
    one_process(spec.runner)
    params, out = spec.runner_params, {}
    config = configs["main"].model_dump() if configs else None
    for seed in seeds:
        run = Run.keyed(root, spec.id, scale, spec.runner, seed, {"params": params, "config": config})
        if not run.done or force:
            run.path.mkdir(parents=True, exist_ok=True)
            run.reset()
            run.config_file.write_text(json.dumps({"seed": seed, "runner": spec.runner, "params": params,
                                                   "config": config}, indent=2))
            for i, row in enumerate(points(seed)):
                run.append_metrics({"step": i, **row})
            run.finish()
        out[seed] = run
    return {"main": out}


def run_lemma_exact(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    return _study(spec, scale, configs, seeds, root, force, log,
                  lambda seed: lemma_exact_points(spec.runner_params, seed))


def run_lemma_lm(spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> dict:
    return _study(spec, scale, configs, seeds, root, force, log,
                  lambda seed: logit_step_probe(configs["main"], seed, root, log=log, **spec.runner_params))


class LemmaExactParams(Params):
    vocab_sizes: list[int] = Field([4, 16, 256, 4096, 50000], description="vocabulary sizes of the random softmax states")
    states_per_vocab: int = Field(16, ge=1, description="random states per vocabulary size")
    eta_min: float = Field(1e-4, gt=0, description="smallest step size η of the log grid")
    eta_max: float = Field(1e-1, gt=0, description="largest step size η of the log grid")
    n_etas: int = Field(7, ge=1, description="step sizes on the log grid")
    logit_scale: float = Field(2.0, gt=0, description="scale of the random logits")
    seeds: list[int] = Field([0, 1, 2], description="the seeds when --seeds is not given (this runner trains nothing)")


class LemmaLMParams(Params):
    lr: float = Field(gt=0, description="the plain SGD step size of the probed step")
    n_batches: int = Field(1, ge=1, description="rollout batches probed per seed (each stepped along the gradient and "
                                                "along a random direction)")


LEMMA_EXACT = Runner(run_lemma_exact, LemmaExactParams, trains=False)
LEMMA_LM = Runner(run_lemma_lm, LemmaLMParams)
