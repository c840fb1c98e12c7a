"""PRIME's implicit process reward model (Cui et al. 2025, "Process Reinforcement through Implicit Rewards"):
a causal LM π_rm trained online from outcome labels, whose log-ratio to a frozen reference is the process reward."""
from __future__ import annotations

import torch


def implicit_rewards(rm_log_prob, ref_log_prob, response_mask, beta: float) -> torch.Tensor:
    """Token-level implicit process rewards r_t = β·(log π_rm(y_t) - log π_ref(y_t)), zero on masked positions."""
    return beta * (rm_log_prob - ref_log_prob) * response_mask


def implicit_prm_loss(rm_log_prob, ref_log_prob, response_mask, labels, beta: float):
    """Cross-entropy of the outcome label on the sequence-level implicit reward.

    q_i = β·Σ_t (log π_rm(y_it) - log π_ref(y_it));  p_i = σ(q_i);
    L = -mean_i [ y_i·log p_i + (1 - y_i)·log(1 - p_i) ]    (y_i ∈ {0, 1}: the verifier's score)
    Returns (L, q): q (detached) scores each response; q > 0 predicts a correct one.
    """
    q = implicit_rewards(rm_log_prob, ref_log_prob, response_mask, beta).sum(-1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(q, labels.to(q.dtype))
    return loss, q.detach()


def label_accuracy(q, labels) -> float:
    """Share of responses whose implicit reward sign agrees with the label: mean_i [(q_i > 0) == (y_i > 0.5)]."""
    return ((q > 0) == (labels > 0.5)).float().mean().item()
