"""Per-token KL estimators between the policy and a reference (verl's kl_penalty kinds)."""
from __future__ import annotations

import torch

KL_KINDS = ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3")


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str = "low_var_kl") -> torch.Tensor:
    """Per-token estimate of KL(π || π_ref) from sampled-token log-probs.

    kl / k1:         log π - log π_ref
    abs:             |log π - log π_ref|
    mse / k2:        ½ (log π - log π_ref)²
    low_var_kl / k3: r - log r - 1 with r = π_ref/π (log r clamped to ±20), the result clamped to [-10, 10]
    """
    diff = log_prob - ref_log_prob
    if kind in ("kl", "k1"):
        return diff
    if kind == "abs":
        return diff.abs()
    if kind in ("mse", "k2"):
        return 0.5 * diff.square()
    if kind in ("low_var_kl", "k3"):
        log_ratio = torch.clamp(-diff, min=-20, max=20)
        return torch.clamp(torch.exp(log_ratio) - log_ratio - 1, min=-10, max=10)
    raise ValueError(f"unknown KL kind {kind!r}; choose one of {', '.join(KL_KINDS)}")
