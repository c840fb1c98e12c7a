"""A prototype for issue 25's GPU rollout, timed by `bench rollout` on CUDA before the engine takes it (it trains
nothing; runners/rl/rollout.py's sampler does): our sampler's loop over a static KV cache, so that every decode step
has the same shapes, and that step optionally compiled (`torch.compile(mode="reduce-overhead")`: CUDA graphs).

Every row samples T tokens (no stop handling: the bench's stop id never fires), at a temperature, with our draws
(softmax, then multinomial from the caller's generator), outside the compiled step."""
from __future__ import annotations

import torch


def decode_step(model, compiled: bool):
    """model.forward for one token a row against a static cache, compiled to CUDA graphs if asked."""
    return torch.compile(model.forward, mode="reduce-overhead") if compiled else model.forward


def static_cache(model, max_len: int):
    """One StaticCache of `max_len` positions, kept across calls as transformers' generate() keeps its own: a
    compiled step's graphs hold its tensors' addresses, so a new cache each call would record them again."""
    from transformers import StaticCache
    return StaticCache(config=model.config, max_cache_len=max_len)


@torch.no_grad()
def static_generate(model, ids, mask, T: int, temperature: float, gen, step, cache) -> torch.Tensor:
    """[B, T] sampled tokens: the prompt prefilled eagerly into `cache` (static_cache of P + T positions, reset
    first), then T - 1 calls of `step` (decode_step) whose inputs keep one shape: the whole [B, P + T] attention
    mask (causality hides the positions not written yet), one token and its position. (transformers' static layers
    write at their own counter, which reset() zeroes in place; cache_position is passed so that the model computes
    none of its own.)"""
    from replicate.runners.rl.models import cache_kwarg
    key = cache_kwarg(model)  # `cache` or `past_key_values`, as this transformers names it
    B, P = ids.shape
    cache.reset()
    attn = torch.cat([mask, mask.new_ones(B, T)], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **{key: cache},
                cache_position=torch.arange(P, device=ids.device), logits_to_keep=1)
    logits, tokens = out.logits[:, -1, :], []
    for t in range(T):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        tokens.append(nxt)
        if t == T - 1:
            break
        cache_position = torch.full((1,), P + t, device=ids.device)
        logits = step(input_ids=nxt, attention_mask=attn, position_ids=pos[:, -1:] + 1 + t,
                      use_cache=True, cache_position=cache_position, **{key: cache}).logits[:, -1, :].clone()
    return torch.cat(tokens, dim=1)
