"""The `hf` rollout engine: transformers' `generate()`, as a cross-check of our sampler (same protocol as
replicate.engines.Engine). At temperature 0 both are greedy and give the same tokens; at a temperature,
`generate()` draws from torch's global generator, so the engine seeds it from ours inside a forked RNG state:
reproducible for a seed, though not the same draws as our sampler."""
from __future__ import annotations

import torch


@torch.no_grad()
def hf_generate(model, prompt_ids, prompt_mask, max_new_tokens, temperature, stop_ids, pad_id, generator=None,
                repeats: int = 1):
    stop_ids = list(stop_ids)
    if repeats > 1:
        prompt_ids, prompt_mask = prompt_ids.repeat_interleave(repeats, 0), prompt_mask.repeat_interleave(repeats, 0)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else \
        {"do_sample": False}
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device)) if generator is not None \
        and temperature > 0 else 0
    devices = [prompt_ids.device] if prompt_ids.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
                             eos_token_id=stop_ids, pad_token_id=pad_id, min_new_tokens=0, **sampling)
    responses = out[:, prompt_ids.shape[1]:]
    stops = torch.isin(responses, torch.tensor(stop_ids, device=responses.device))
    ended = stops.int().cumsum(1)
    mask = ((ended == 0) | ((ended == 1) & stops)).float()  # up to and including the first stop token
    responses = torch.where(mask.bool(), responses, torch.full_like(responses, pad_id))
    width = int(mask.sum(1).max().item()) if len(mask) else 0
    return responses[:, :width], mask[:, :width]
