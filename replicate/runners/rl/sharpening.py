"""The sharpening null's data: the base policy (before any RL update) sampled at several temperatures.

Lowering the temperature sharpens a policy with no reward at all; a claim that RL teaches must beat the base
policy at its best temperature. At step 0 the trainer calls `base_temperature_metrics` once (when the spec lists
`eval.base_temperatures`): for each temperature T, the avg@k accuracy of the base on the validation prompts at T
and the token entropy of its tempered distribution π^(1/T) on those samples (T = 0: greedy, k = 1, entropy 0).
"""
from __future__ import annotations

import torch

from replicate.runners.rl.rollout import make_generator, sample_batch
from replicate.seeds import derive_seed


def temperature_key(temperature: float) -> str:
    """'1', '0.6', 'greedy': the suffix of a temperature's metric names."""
    return "greedy" if temperature == 0 else f"{temperature:g}"


@torch.no_grad()
def base_temperature_metrics(policy, tok, task, problems, k: int, temperatures, max_new_tokens: int, seed: int,
                             device, rollout_temperature: float, eval_temperature: float,
                             batch_size: int = 256) -> dict:
    """{base_acc_<T>, base_entropy_<T>} for each T: accuracy = mean score over k samples per problem; entropy =
    mean over response tokens of H(π^(1/T)) at the sampled prefixes (what the trainer logs as `entropy` at T);
    and the run's rollout and eval temperatures, which place the base on the run's own axes (analysis/sharpening)."""
    out = {"base_rollout_temperature": rollout_temperature, "base_eval_temperature": eval_temperature}
    for i, temp in enumerate(temperatures):
        gen = make_generator(derive_seed(seed, "base-temperature", i), device)
        n = 1 if temp == 0 else k
        scores, ent_sum, tokens = [], 0.0, 0.0
        for start in range(0, len(problems), batch_size):
            batch = sample_batch(policy, tok, task, problems[start:start + batch_size], n, temp, max_new_tokens, gen)
            scores += batch.scores.tolist()
            if temp > 0:
                ent = batch.logprobs(policy, with_entropy=True)[1]
                ent_sum += float((ent * batch.response_mask).sum())
                tokens += float(batch.response_mask.sum())
        key = temperature_key(temp)
        out[f"base_acc_{key}"] = sum(scores) / len(scores)
        out[f"base_entropy_{key}"] = ent_sum / tokens if tokens else 0.0
    return out
