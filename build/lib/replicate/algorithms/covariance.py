"""The covariance term of the entropy mechanism: Cov(log π, A) per token, and per prompt group by accuracy."""
from __future__ import annotations

from typing import Sequence

import torch

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
    """
    by_count, by_bin = {}, {}
    for rows in groups:
        acc = scores[rows].mean().item()
        if acc <= 0 or acc >= 1:
            continue
        cov = masked_mean(token_covariance(log_prob[rows], advantages[rows], response_mask[rows]),
                          response_mask[rows]).item()
        by_count.setdefault(f"cov_acc_{round(acc * len(rows))}", []).append(cov)
        name = "cov_hard" if acc <= 1 / 3 else ("cov_medium" if acc < 2 / 3 else "cov_easy")
        by_bin.setdefault(name, []).append(cov)
    return {k: sum(v) / len(v) for k, v in {**by_count, **by_bin}.items()}
