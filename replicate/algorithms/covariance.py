"""The covariance term of the entropy mechanism: Cov(log π, A) per token, and per prompt group by accuracy."""
from __future__ import annotations

from typing import Sequence

import torch

from .advantages import group_sum
from .aggregation import masked_mean


def token_covariance(log_prob: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Cov_i = (log π(y_i) - mean_j log π(y_j)) · (A_i - mean_j A_j), means over valid tokens (detached)."""
    lp, adv = log_prob.detach(), advantages.detach()
    return (adv - masked_mean(adv, response_mask)) * (lp - masked_mean(lp, response_mask))


def covariance_by_accuracy(log_prob, advantages, response_mask, scores, groups: Sequence[Sequence[int]]) -> dict:
    """Mean within-group covariance of log π and A, averaged over the groups of each accuracy.

    For a group of n rows with c correct (0 < c < n; all-equal groups have zero advantage and covariance):
    cov_acc_<c> averages over groups with that count, and cov_hard / cov_medium / cov_easy over groups whose
    accuracy c/n lies in (0, 1/3], (1/3, 2/3), [2/3, 1). The group size is a separate metric, not part of a key.
    Each group's covariance is token_covariance within the group (its own means over its valid tokens), all groups
    in one pass of tensor ops.
    """
    rows = torch.tensor([r for g in groups for r in g], dtype=torch.long, device=scores.device)
    gid = torch.tensor([i for i, g in enumerate(groups) for _ in g], dtype=torch.long, device=scores.device)
    lp, adv, m = log_prob.detach()[rows], advantages.detach()[rows], response_mask[rows]

    def per_group(x):  # Σ over each group's rows, then over tokens where x is [rows, T]
        return group_sum(x.sum(-1) if x.dim() > 1 else x, gid, len(groups))

    tokens = per_group(m) + 1e-8
    lp_mean, adv_mean = per_group(lp * m) / tokens, per_group(adv * m) / tokens
    cov = per_group((adv - adv_mean[gid, None]) * (lp - lp_mean[gid, None]) * m) / tokens
    acc = per_group(scores[rows].to(cov.dtype)) / per_group(torch.ones_like(gid, dtype=cov.dtype))
    by_count, by_bin = {}, {}
    for g, a, c in zip(groups, acc.tolist(), cov.tolist()):
        if a <= 0 or a >= 1:
            continue
        by_count.setdefault(f"cov_acc_{round(a * len(g))}", []).append(c)
        by_bin.setdefault("cov_hard" if a <= 1 / 3 else ("cov_medium" if a < 2 / 3 else "cov_easy"), []).append(c)
    return {k: sum(v) / len(v) for k, v in {**by_count, **by_bin}.items()}


TOP_PERCENTS = (0.02, 0.2, 2.0, 20.0, 50.0)  # Table 1's groups, in percent of tokens


def top_fraction_means(log_prob: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor,
                       percents: Sequence[float] = TOP_PERCENTS) -> dict:
    """Table 1: the mean of Cov_i over the top p% of valid tokens ranked by Cov_i (at least one token), for each
    p, and over all valid tokens; plus the quantiles of Cov_i that Clip-Cov's lb/ub are read against.

    Keys: cov_top_<p> (p as written in TOP_PERCENTS, '.' -> 'p': cov_top_0p02 ... cov_top_50p0), cov_all,
    cov_q50, cov_q90, cov_q99, cov_max, n_valid_tokens."""
    valid = response_mask.reshape(-1) > 0
    cov = token_covariance(log_prob, advantages, response_mask).reshape(-1)[valid]
    out = {"n_valid_tokens": int(valid.sum())}
    if len(cov) == 0:
        return out
    ranked = torch.sort(cov, descending=True).values
    for p in percents:
        k = max(1, int(len(ranked) * p / 100))
        out[f"cov_top_{str(float(p)).replace('.', 'p')}"] = ranked[:k].mean().item()
    out["cov_all"] = cov.mean().item()
    for q in (50, 90, 99):
        out[f"cov_q{q}"] = torch.quantile(cov, q / 100).item()
    out["cov_max"] = ranked[0].item()
    return out


def permuted_top_fraction_means(log_prob: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor,
                                seed: int, percents: Sequence[float] = TOP_PERCENTS) -> dict:
    """Table 1's permutation null: `top_fraction_means` with the valid tokens' advantages shuffled within the
    batch (one permutation, from `seed`), which keeps both marginals and breaks their coupling. Keys as
    top_fraction_means' cov_top_<p> and cov_all, prefixed perm_."""
    valid = response_mask.reshape(-1) > 0
    adv = advantages.detach().reshape(-1).clone()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(int(valid.sum()), generator=gen).to(adv.device)
    adv[valid] = adv[valid][order]
    out = top_fraction_means(log_prob, adv.reshape(advantages.shape), response_mask, percents)
    return {f"perm_{k}": v for k, v in out.items() if k.startswith("cov_top_") or k == "cov_all"}
