"""Policy-gradient losses, registered by name.

Signature: loss_fn(old_log_prob, log_prob, advantages, response_mask, *, loss_agg_mode="token-mean",
**hparams) -> (loss, metrics). Tensors are [batch, T]; metrics are floats (clip fraction, approx KL,
and for the Cov modes the fraction of valid tokens acted on).
"""
from __future__ import annotations

from typing import Callable

import torch

from replicate.registry import Registry

from .aggregation import agg_loss, masked_mean
from .covariance import token_covariance

POLICY_LOSSES: dict[str, Callable] = Registry("policy loss")

# What the trainer passes every loss; its other keyword parameters are hyperparameters a spec may set.
LOSS_INPUTS = ("old_log_prob", "log_prob", "advantages", "response_mask", "loss_agg_mode", "generator", "selected")


def register_policy_loss(name: str, selector: Callable | None = None):
    """Register a loss by name. A loss that picks tokens by a statistic of the batch it sees (Clip-Cov, KL-Cov)
    registers its selector, so the trainer can select over a whole mini-batch in a no-grad pass and hand the
    selection to each micro-batch (`selected=`): the algorithm's cov_scope."""
    def deco(fn):
        fn.select = selector
        POLICY_LOSSES[name] = fn
        return fn
    return deco


@register_policy_loss("vanilla")
def vanilla(old_log_prob, log_prob, advantages, response_mask, *, loss_agg_mode="token-mean",
            clip_ratio: float = 0.2, clip_ratio_low: float | None = None, clip_ratio_high: float | None = None,
            clip_ratio_c: float = 3.0):
    """PPO clipped surrogate with clip-higher and dual-clip.

    ρ = exp(clamp(log π - log π_old, ±20));  L1 = -A·ρ;  L2 = -A·clip(ρ, 1-ε_low, 1+ε_high);  L = max(L1, L2)
    For A < 0 the dual clip bounds the loss: L = min(L, -A·c).  ε_low, ε_high default to clip_ratio.
    metrics: clipfrac = mean[L2 > L1], clipfrac_lower = mean[A<0 and L > -A·c], ppo_kl = mean(log π_old - log π).
    """
    low = clip_ratio if clip_ratio_low is None else clip_ratio_low
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    if clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 for the dual clip, got {clip_ratio_c}")
    neg_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(neg_kl)
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    clipped = torch.maximum(losses1, losses2)
    losses3 = -advantages * clip_ratio_c
    dual = torch.minimum(losses3, clipped)
    pg_losses = torch.where(advantages < 0, dual, clipped)
    loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
    metrics = {
        "clipfrac": masked_mean((losses2 > losses1).float(), response_mask).item(),
        "clipfrac_lower": masked_mean(((clipped > losses3) & (advantages < 0)).float(), response_mask).item(),
        "ppo_kl": masked_mean(-neg_kl, response_mask).item(),
    }
    return loss, metrics


def _share(selected, response_mask) -> float:
    """The exact share of valid tokens that are selected."""
    valid = response_mask > 0
    return int((selected & valid).sum()) / max(int(valid.sum()), 1)


def clip_cov_tokens(old_log_prob, log_prob, advantages, response_mask, *, clip_ratio: float = 0.2,
                    clip_ratio_low: float | None = None, clip_ratio_high: float | None = None,
                    clip_cov_ratio: float = 2e-4, clip_cov_lb: float = 1.0, clip_cov_ub: float = 5.0,
                    generator: torch.Generator | None = None, **_loss_only) -> torch.Tensor:
    """Clip-Cov's selection: k = max(1, ⌊r·N_valid⌋) tokens drawn uniformly (generator) from {i valid, not
    clipped by PPO, lb < Cov_i < ub} (all of them if fewer qualify), Cov_i over the tokens given. Bool [B, T]."""
    low = clip_ratio if clip_ratio_low is None else clip_ratio_low
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    ratio = torch.exp(log_prob.detach() - old_log_prob)
    valid = response_mask > 0
    clipped_by_ppo = (-advantages * torch.clamp(ratio, 1 - low, 1 + high) > -advantages * ratio) & valid
    cov = token_covariance(log_prob, advantages, response_mask)
    candidates = torch.nonzero(valid & ~clipped_by_ppo & (cov > clip_cov_lb) & (cov < clip_cov_ub))
    k = max(1, int(clip_cov_ratio * response_mask.sum().item()))
    if len(candidates) > k:
        candidates = candidates[torch.randperm(len(candidates), generator=generator)[:k]]
    selected = torch.zeros_like(valid)
    selected[candidates[:, 0], candidates[:, 1]] = True
    return selected


def kl_cov_tokens(old_log_prob, log_prob, advantages, response_mask, *, kl_cov_ratio: float = 2e-4,
                  **_loss_only) -> torch.Tensor:
    """KL-Cov's selection: the top k = max(1, ⌊k_ratio·N_valid⌋) valid tokens by Cov_i. Bool [B, T]."""
    selected = torch.zeros_like(response_mask, dtype=torch.bool)
    valid_idx = torch.nonzero(response_mask.reshape(-1) > 0, as_tuple=True)[0]
    if len(valid_idx) == 0 or kl_cov_ratio <= 0:
        return selected
    cov = token_covariance(log_prob, advantages, response_mask).reshape(-1)[valid_idx]
    top = valid_idx[torch.topk(cov, max(1, int(len(valid_idx) * kl_cov_ratio)), largest=True).indices]
    selected.view(-1)[top] = True
    return selected


@register_policy_loss("clip_cov", selector=clip_cov_tokens)
def clip_cov(old_log_prob, log_prob, advantages, response_mask, *, loss_agg_mode="token-mean",
             clip_ratio: float = 0.2, clip_ratio_low: float | None = None, clip_ratio_high: float | None = None,
             clip_cov_ratio: float = 2e-4, clip_cov_lb: float = 1.0, clip_cov_ub: float = 5.0,
             generator: torch.Generator | None = None, selected: torch.Tensor | None = None):
    """Clip-Cov: detach a few random high-covariance tokens from the PPO loss.

    L = max(-A·ρ, -A·clip(ρ, 1-ε_low, 1+ε_high)) · c_i, with c_i = 0 on the tokens clip_cov_tokens selects
    (or `selected`, chosen by the caller over a larger batch), else 1. No dual clip.
    metrics: clipfrac = share of valid tokens detached (as verl reports it), cov_frac (same), ppo_kl.
    """
    low = clip_ratio if clip_ratio_low is None else clip_ratio_low
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    if selected is None:
        selected = clip_cov_tokens(old_log_prob, log_prob, advantages, response_mask, clip_ratio=clip_ratio,
                                   clip_ratio_low=clip_ratio_low, clip_ratio_high=clip_ratio_high,
                                   clip_cov_ratio=clip_cov_ratio, clip_cov_lb=clip_cov_lb, clip_cov_ub=clip_cov_ub,
                                   generator=generator)
    neg_kl = log_prob - old_log_prob
    ratio = torch.exp(neg_kl)
    losses1 = -advantages * ratio
    losses2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    pg_losses = torch.maximum(losses1, losses2) * (~selected).to(advantages.dtype)
    loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
    frac = _share(selected, response_mask)
    return loss, {"clipfrac": frac, "cov_frac": frac, "ppo_kl": masked_mean(-neg_kl, response_mask).item()}


@register_policy_loss("kl_cov", selector=kl_cov_tokens)
def kl_cov(old_log_prob, log_prob, advantages, response_mask, *, loss_agg_mode="token-mean",
           kl_cov_ratio: float = 2e-4, ppo_kl_coef: float = 1.0, selected: torch.Tensor | None = None):
    """KL-Cov: an |Δlog π| penalty on the few tokens of largest covariance; no PPO clipping.

    L_i = -A_i·ρ_i + β·|log π_i - log π_old,i|  on the tokens kl_cov_tokens selects (or `selected`),
    L_i = -A_i·ρ_i                               otherwise.  ρ = exp(log π - log π_old), β = ppo_kl_coef.
    metrics: ppo_kl = mean |log π - log π_old| (as verl reports it), cov_frac = share selected, clipfrac = 0.
    """
    if selected is None:
        selected = kl_cov_tokens(old_log_prob, log_prob, advantages, response_mask, kl_cov_ratio=kl_cov_ratio)
    neg_kl = log_prob - old_log_prob
    pg_losses = -advantages * torch.exp(neg_kl) + ppo_kl_coef * neg_kl.abs() * selected.to(advantages.dtype)
    loss = agg_loss(pg_losses, response_mask, loss_agg_mode)
    return loss, {"clipfrac": 0.0, "cov_frac": _share(selected, response_mask),
                  "ppo_kl": masked_mean(neg_kl.abs(), response_mask).item()}
