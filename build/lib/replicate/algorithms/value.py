"""The critic's loss (PPO with GAE), as verl's compute_value_loss."""
from __future__ import annotations

import torch

from .aggregation import agg_loss


def value_loss(values, old_values, returns, response_mask, *, cliprange_value: float = 0.5,
               loss_agg_mode: str = "token-mean") -> torch.Tensor:
    """Clipped value loss: ½·agg(max((V - R)², (clip(V, V_old ± c) - R)²))."""
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    return 0.5 * agg_loss(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), response_mask,
                          loss_agg_mode)
