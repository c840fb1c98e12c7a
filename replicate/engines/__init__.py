"""Rollout engines: one protocol for sampling responses, several implementations, picked by `rollout.engine`.

An engine takes left-padded prompts and returns (responses [B, T], response mask [B, T]) with B = prompts x
repeats (each prompt answered `repeats` times in a row, a GRPO group), pad after the first of `stop_ids` (EOS and
the tokens of rollout.stop) and the mask 1 up to and including it; temperature 0 is greedy. A new engine is one
module with such a function and one line below.
"""
from __future__ import annotations

from typing import Protocol

from replicate.registry import LazyRegistry


class Engine(Protocol):
    def __call__(self, model, prompt_ids, prompt_mask, max_new_tokens: int, temperature: float,
                 stop_ids: list[int], pad_id: int, generator=None, repeats: int = 1): ...


ENGINES = LazyRegistry("rollout engine", {
    "ours": "replicate.runners.rl.rollout:generate",      # KV cache, prompts prefilled once per group
    "hf": "replicate.engines.hf:hf_generate",             # transformers' generate(), a cross-check
})
