"""Masked reductions and loss aggregation (verl semantics)."""
from __future__ import annotations

import torch

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    return (values * mask).sum() if dim is None else (values * mask).sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """sum(v·m) / (sum(m) + 1e-8), as verl's masked_mean."""
    denom = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(values, mask, dim) / (denom + 1e-8)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked entries; unbiased applies Bessel's correction n/(n-1)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n <= 1:
            raise ValueError("masked_var needs at least two unmasked values")
        var = var * n / (n - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(v - mean) / sqrt(var + 1e-8) over masked entries."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    return (values - mean) * torch.rsqrt(var + 1e-8)


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str = "token-mean") -> torch.Tensor:
    """Aggregate a [batch, T] loss matrix to a scalar, as verl 0.9.1's agg_loss on one process.

    token-mean:              Σ_it l·m / Σ_it m
    seq-mean-token-sum:      mean over non-empty rows i of Σ_t l·m
    seq-mean-token-mean:     mean over non-empty rows i of (Σ_t l·m / Σ_t m)
    seq-mean-token-sum-norm: Σ_i (Σ_t l·m) / (n_seq · T)   (Dr. GRPO: a constant normaliser T = mask width)
    """
    if loss_agg_mode == "token-mean":
        return masked_mean(loss_mat, loss_mask)
    seq_sums = masked_sum(loss_mat, loss_mask, dim=-1)
    tokens = loss_mask.sum(dim=-1)
    rows = (tokens > 0).float()
    if loss_agg_mode == "seq-mean-token-sum":
        return masked_mean(seq_sums, rows)
    if loss_agg_mode == "seq-mean-token-mean":
        return masked_mean(seq_sums / (tokens + 1e-8), rows)
    if loss_agg_mode == "seq-mean-token-sum-norm":
        return seq_sums.sum() / (loss_mask.shape[0] * loss_mask.shape[-1])
    raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; choose one of {', '.join(LOSS_AGG_MODES)}")
