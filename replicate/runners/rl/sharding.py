"""Sampling from a sharded policy: under FSDP the unwrapped module holds only this process's flat shard of each
parameter, so generation and the old log-probabilities must run with the full parameters gathered.

`full_parameters(model)` is a context: for a model wrapped in FSDP (v1; `accelerate launch` with
experiments/accelerate/fsdp.yaml) it gathers every parameter on every process for the duration
(`FullyShardedDataParallel.summon_full_params`, writeback off: sampling never changes weights, and the update
runs outside it on the wrapped model); for any other model it does nothing. Memory: a full copy of the weights
per process while it is open (a 7B model in bf16: ~15 GB).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager


def is_fsdp(model) -> bool:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    except ImportError:  # a torch without distributed
        return False
    return isinstance(model, FSDP) or any(isinstance(m, FSDP) for m in model.modules())


@contextmanager
def full_parameters(model):
    """Full (unsharded) parameters of an FSDP model inside the block; a no-op for any other model."""
    if not is_fsdp(model):
        yield model
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    with FSDP.summon_full_params(model, writeback=False, recurse=True):
        yield model


def open_full_parameters(model) -> ExitStack:
    """full_parameters as an open stack (close() it): the trainer's sampling section needs no re-indenting."""
    stack = ExitStack()
    stack.enter_context(full_parameters(model))
    return stack
