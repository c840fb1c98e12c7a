"""Base policies: a supervised warm-up of a tiny model (cached by config hash), or a pretrained model."""
from __future__ import annotations

import random
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from replicate.paths import code_fingerprint, digest
from replicate.runners.rl.models import char_tokenizer, load_pretrained, tiny_model
from replicate.runners.rl.optim import adamw
from replicate.runners.rl.stops import set_stops
from replicate.seeds import derive_seed
from replicate.tasks import make_task


def sft_batch(task, tokenizer, problems, rng, noise):
    """Prompt+solution token ids (left-padded) and a mask selecting the solution tokens."""
    prompts = [tokenizer(p.prompt)["input_ids"] for p in problems]
    rows = [ids + tokenizer(task.solution(p, rng, noise))["input_ids"] + [tokenizer.eos_token_id]
            for ids, p in zip(prompts, problems)]
    prompt_lens = [len(ids) for ids in prompts]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attn = torch.zeros_like(ids)
    target = torch.zeros_like(ids)
    for i, (row, plen) in enumerate(zip(rows, prompt_lens)):
        ids[i, width - len(row):] = torch.tensor(row)
        attn[i, width - len(row):] = 1
        target[i, width - len(row) + plen:] = 1
    return ids, attn, target


def warmup_key(config, seed: int) -> str:
    # autocast and attention act after the warm-up (which runs in the model's dtype, sdpa), so they do not key it
    return digest({"model": config.model.model_dump(exclude={"autocast", "attention"}),
                   "task": config.task.model_dump(), "warmup": config.warmup.model_dump(), "seed": seed,
                   "code": code_fingerprint()}, n=12)


def warmup_cached(config, root: Path, seed: int) -> bool:
    """Whether base_policy builds nothing for this config and seed (a pretrained model, or a cached warm-up)."""
    return config.model.kind != "tiny" or (Path(root) / "_warmup" / warmup_key(config, seed) / "DONE").exists()


def base_policy(config, root: Path, seed: int, log=print):
    """(model, tokenizer) to start RL from. A tiny model is warmed up once per config and run seed (its
    initialisation and data order come from the seed, so seeds are independent base policies) and reused. The
    tokenizer knows the tokens that end a response (set_stops: EOS and rollout.stop)."""
    model, tok = _base_policy(config, root, seed, log)
    set_stops(tok, config.rollout.stop)
    return model, tok


def _base_policy(config, root: Path, seed: int, log=print):
    if config.model.kind == "pretrained":
        return load_pretrained(config.model.path, config.model.gguf_file, config.model.dtype)
    torch.set_num_threads(1)  # tiny models: one thread, so a cached warm-up never depends on who made it
    task = make_task(config.task.name, **config.task.params)
    cache = Path(root) / "_warmup" / warmup_key(config, seed)
    if (cache / "DONE").exists():
        tok = PreTrainedTokenizerFast.from_pretrained(cache)
        tok.padding_side = "left"
        return AutoModelForCausalLM.from_pretrained(cache, dtype=getattr(torch, config.model.dtype)), tok
    tok = char_tokenizer(task.alphabet)
    torch.manual_seed(derive_seed(seed, "warmup-init"))
    model = tiny_model(config.model.config, tok, config.model.dtype)
    w = config.warmup
    if w.steps:
        log(f"warm-up (seed {seed}): {w.steps} supervised steps on {config.task.name} (cached in {cache})")
        # torch's default loop: fused saves < 1 s of a warm-up but moves every base policy (the test spec's seed 0
        # then breaks at step 4)
        opt = adamw(model.parameters(), w.lr, fused=False, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * max(0.1, 1 - s / w.steps))
        rng = random.Random(derive_seed(seed, "warmup-data"))
        model.train()
        for _ in tqdm(range(w.steps), desc=f"warm-up (seed {seed})", unit="step", leave=False, disable=None):
            ids, attn, target = sft_batch(task, tok, task.sample(w.batch_size, rng), rng, w.noise)
            pos = (attn.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                     reduction="none")
            loss = (loss * target[:, 1:].reshape(-1)).sum() / target[:, 1:].sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    cache.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cache)
    tok.save_pretrained(cache)
    (cache / "DONE").write_text("done\n")
    return model, tok
