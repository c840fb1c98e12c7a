"""Advantage estimators, registered by name.

Every estimator takes token_level_rewards and response_mask of shape [batch, T] and `index`, a sequence
of group ids (one per row: rows with the same id answer the same prompt), and returns (advantages,
returns), both [batch, T] and zero on masked positions.
"""
from __future__ import annotations

import inspect

from typing import Callable, Hashable, Sequence

import torch

from replicate.registry import Registry

from .aggregation import masked_whiten

ADVANTAGES: dict[str, Callable] = Registry("advantage estimator")

# Every estimator is called with these; any other parameter without a default is an extra tensor it needs (GAE's
# `values`, PRIME's `rm_log_prob` and `ref_log_prob`), which the trainer provides by name.
ADVANTAGE_INPUTS = ("token_level_rewards", "response_mask", "index")


def register_advantage(name: str):
    return ADVANTAGES.register(name)


def extra_inputs(name: str) -> tuple[str, ...]:
    """The tensors estimator `name` needs beyond ADVANTAGE_INPUTS: its other parameters without a default."""
    sig = inspect.signature(ADVANTAGES[name]).parameters
    return tuple(p for p, v in sig.items() if p not in ADVANTAGE_INPUTS and v.default is inspect.Parameter.empty)


def token_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Outcome rewards as token-level rewards: each sequence's score on its last valid token, 0 elsewhere."""
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(scores)), (mask.sum(-1).long() - 1).clamp(min=0)] = scores
    return rewards


def group_ids(index: Sequence[Hashable], device=None) -> tuple[torch.Tensor, int]:
    """Each row's group as an integer 0..n_groups-1 (in order of first appearance), and n_groups."""
    ids: dict[Hashable, int] = {}
    return torch.tensor([ids.setdefault(g, len(ids)) for g in index], device=device), len(ids)


def group_sum(values: torch.Tensor, gid: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Σ over each group's rows of `values` ([rows, ...] -> [n_groups, ...])."""
    return values.new_zeros((n_groups, *values.shape[1:])).index_add_(0, gid, values)


def group_size_and_mean(values: torch.Tensor, gid: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's group size n_g and group mean of `values` ([rows] -> [rows], [rows]); gid, n from group_ids."""
    size = group_sum(torch.ones_like(values), gid, n)
    return size[gid], (group_sum(values, gid, n) / size)[gid]


@register_advantage("grpo")
def grpo(token_level_rewards, response_mask, index, epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool = True):
    """GRPO outcome advantage, broadcast over the response.

    s_i = Σ_t r_it;  A_i = (s_i - mean_g s) / (std_g s + ε)   (std unbiased; a group of one has mean 0, std 1)
    With norm_adv_by_std_in_grpo=False: A_i = s_i - mean_g s  (Dr. GRPO).
    """
    scores = token_level_rewards.sum(dim=-1)
    gid, n = group_ids(index, scores.device)
    size, mean = group_size_and_mean(scores, gid, n)
    var = group_sum((scores - mean) ** 2, gid, n)[gid] / (size - 1).clamp(min=1)
    alone = size == 1
    mean = torch.where(alone, torch.zeros_like(mean), mean)
    std = torch.where(alone, torch.ones_like(var), var.sqrt())
    adv = (scores - mean) / (std + epsilon) if norm_adv_by_std_in_grpo else scores - mean
    adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


@register_advantage("rloo")
def rloo(token_level_rewards, response_mask, index):
    """REINFORCE leave-one-out: A_i = s_i - mean_{j≠i} s_j = n/(n-1)·(s_i - mean_g s); a group of one: A_i = s_i."""
    scores = token_level_rewards.sum(dim=-1)
    n, mean = group_size_and_mean(scores, *group_ids(index, scores.device))
    adv = torch.where(n > 1, (scores - mean) * n / (n - 1).clamp(min=1), scores)
    adv = adv.unsqueeze(-1) * response_mask
    return adv, adv


def _discounted_returns(token_level_rewards, response_mask, gamma):
    """G_t = r_t + γ·G_{t+1}, with the running return cut at masked positions."""
    returns = torch.zeros_like(token_level_rewards)
    running = torch.zeros_like(token_level_rewards[:, 0])
    for t in reversed(range(token_level_rewards.shape[1])):
        running = token_level_rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * response_mask[:, t]
    return returns


@register_advantage("reinforce_plus_plus")
def reinforce_plus_plus(token_level_rewards, response_mask, index, gamma: float = 1.0):
    """REINFORCE++: G_t = r_t + γ·G_{t+1}; A = whiten(G) over all valid tokens of the batch (no groups)."""
    returns = _discounted_returns(token_level_rewards, response_mask, gamma)
    adv = masked_whiten(returns, response_mask) * response_mask
    return adv, returns


@register_advantage("reinforce_plus_plus_baseline")
def reinforce_plus_plus_baseline(token_level_rewards, response_mask, index):
    """REINFORCE++ with a group baseline: A = whiten_batch(s_i - mean_g s) broadcast over valid tokens."""
    scores = token_level_rewards.sum(dim=-1)
    n, mean = group_size_and_mean(scores, *group_ids(index, scores.device))
    centred = torch.where(n > 1, scores - mean, scores)
    tiled = centred.unsqueeze(-1).expand_as(token_level_rewards) * response_mask
    adv = masked_whiten(tiled, response_mask) * response_mask
    return adv, adv


@register_advantage("gae")
def gae(token_level_rewards, response_mask, index, values, gamma: float = 1.0, lam: float = 1.0):
    """Generalised advantage estimation (PPO with a critic V).

    δ_t = r_t + γ·V_{t+1} - V_t;  A_t = δ_t + γλ·A_{t+1};  returns = A + V;  A whitened over valid tokens.
    Masked positions are skipped: V_{t+1} and A_{t+1} carry over from the next valid position.
    """
    next_value = torch.zeros_like(values[:, 0])
    last = torch.zeros_like(values[:, 0])
    adv = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        m = response_mask[:, t]
        delta = token_level_rewards[:, t] + gamma * next_value - values[:, t]
        new = delta + gamma * lam * last
        next_value = values[:, t] * m + (1 - m) * next_value
        last = new * m + (1 - m) * last
        adv[:, t] = last
    returns = adv + values
    adv = masked_whiten(adv, response_mask) * response_mask
    return adv, returns


@register_advantage("prime")
def prime(token_level_rewards, response_mask, index, rm_log_prob, ref_log_prob, beta: float = 0.05,
          gamma: float = 1.0):
    """PRIME: implicit process reward plus outcome reward, each with a leave-one-out baseline.

    Process reward r^p_t = β·(log π_rm(y_t) - log π_ref(y_t)). For each reward stream x (process and
    outcome), with per-row means x̄_i over valid tokens and group size n:
        x_it ← x_it·n/(n-1) - Σ_{j∈g} x̄_j/(n-1)   on valid tokens (unchanged for a group of one)
    G_t = Σ_{t'≥t} γ^{t'-t} (x^p + x^o)_{t'};  A = whiten(G) over valid tokens.
    """
    mask = response_mask.bool()
    streams = [beta * (rm_log_prob - ref_log_prob), token_level_rewards]
    total, groups = torch.zeros_like(token_level_rewards), group_ids(index, token_level_rewards.device)
    for x in streams:
        x = torch.where(mask, x, torch.zeros_like(x))
        size, mean_of_row_means = group_size_and_mean(x.sum(-1) / response_mask.sum(-1).clamp(min=1), *groups)
        n = size.unsqueeze(-1)
        baseline = (mean_of_row_means * size / (size - 1).clamp(min=1)).unsqueeze(-1)
        total = total + torch.where(mask & (n > 1), x * n / (n - 1).clamp(min=1) - baseline, x)
    returns = _discounted_returns(total, response_mask, gamma)
    adv = masked_whiten(returns, response_mask) * response_mask
    return adv, returns
