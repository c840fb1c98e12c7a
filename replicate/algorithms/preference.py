"""Offline preference losses over (chosen, rejected) response pairs, registered by name.

Signature: loss_fn(chosen_logps, rejected_logps, chosen_mask, rejected_mask, *, **hparams) -> (loss, metrics).
chosen_logps / rejected_logps are per-token log-probs log π(y_t | x, y_<t) of the policy, [B, T_w] and [B, T_l]
(row i of each is one pair); the masks are 1 on response tokens and 0 on padding. metrics are floats.
"""
from __future__ import annotations

from typing import Callable

import torch

from replicate.registry import Registry
import torch.nn.functional as F

PREFERENCE_LOSSES: dict[str, Callable] = Registry("preference loss")


def register_preference_loss(name: str):
    def deco(fn):
        PREFERENCE_LOSSES[name] = fn
        return fn
    return deco


def sequence_avg_logp(logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1/|y|) · log π(y|x) = Σ_t m_t·log π(y_t) / Σ_t m_t per row, [B, T] -> [B].

    A row without a valid token has no average (it would read as log-prob 0, the best possible): ValueError.
    Padding positions are zeroed with torch.where, so a -inf or NaN log-prob under the mask cannot leak in.
    """
    valid = mask > 0
    n = valid.sum(-1)
    if bool((n == 0).any()):
        raise ValueError("a response has no valid token: its length-normalised log-likelihood is undefined")
    return torch.where(valid, logps, torch.zeros_like(logps)).sum(-1) / n.to(logps.dtype)


@register_preference_loss("simpo")
def simpo(chosen_logps, rejected_logps, chosen_mask, rejected_mask, *, beta: float, gamma: float):
    """SimPO (Meng et al. 2024, Eq. 6), the objective DAST trains with (Shen et al. 2025;
    dast.md M5): no reference model.

    r_w = β/|y_w| · log π(y_w|x),  r_l = β/|y_l| · log π(y_l|x)   (length-normalised, sequence_avg_logp)
    L = mean over pairs of -log σ(r_w - r_l - γ)
    γ is the absolute target margin, as TRL's CPOTrainer(loss_type="simpo", simpo_gamma=γ, cpo_alpha=0) uses it
    (TRL writes β·(Δavg - γ/β), the same number).
    metrics: chosen_reward / rejected_reward (means of r_w, r_l), reward_margin = mean(r_w - r_l) (without γ, as
    TRL logs rewards/margins), reward_accuracy = share of pairs with r_w > r_l.
    β and γ have no default: DAST does not report them (the SimPO authors suggest β 2.0-2.5, γ/β ≈ 0.5).
    """
    if beta <= 0:
        raise ValueError(f"SimPO needs beta > 0, got {beta}")
    if chosen_logps.shape[0] != rejected_logps.shape[0]:
        raise ValueError(f"{chosen_logps.shape[0]} chosen rows vs {rejected_logps.shape[0]} rejected rows")
    r_w = beta * sequence_avg_logp(chosen_logps, chosen_mask)
    r_l = beta * sequence_avg_logp(rejected_logps, rejected_mask)
    loss = -F.logsigmoid(r_w - r_l - gamma).mean()
    margin = (r_w - r_l).detach()
    metrics = {
        "chosen_reward": r_w.detach().mean().item(),
        "rejected_reward": r_l.detach().mean().item(),
        "reward_margin": margin.mean().item(),
        "reward_accuracy": (margin > 0).float().mean().item(),
    }
    return loss, metrics
