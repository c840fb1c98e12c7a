"""The optimizers the trainer and the warm-up build: AdamW fused where torch has the kernel.

On CPU `torch.optim.AdamW` defaults to its per-parameter Python loop (neither foreach nor fused); the fused kernel
does the same update in one pass over all parameters (`bench small-step`, its update arms: SmolLM2-135M's bf16
update 3.78 s with the loop, 3.39 s fused, one thread, Intel Xeon with AMX). It rounds differently in the last bits,
so a run is still the same run only on the same code: same seed, same numbers.
"""
from __future__ import annotations

import torch

FUSED_DEVICES = ("cpu", "cuda")


def adamw(params, lr: float, fused: bool = True, **kwargs) -> torch.optim.AdamW:
    """torch AdamW over `params`, with fused=True when asked and every parameter is a floating tensor on a device
    with the fused kernel (else torch's default implementation)."""
    params = list(params)
    ok = fused and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.AdamW(params, lr=lr, fused=True if ok else None, **kwargs)


def make_optimizer(spec, params) -> torch.optim.Optimizer:
    """The policy's optimizer from the spec's train.optimizer (OptimizerSpec)."""
    if spec.name == "adamw":
        return adamw(params, spec.lr, spec.fused, weight_decay=spec.weight_decay, betas=spec.betas)
    return torch.optim.SGD(params, lr=spec.lr, weight_decay=spec.weight_decay)
