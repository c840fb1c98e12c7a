"""The RL training core on accelerate. One step, top to bottom:

rollout (KV-cached sampling) -> rewards -> advantages -> PPO mini-batch updates -> metrics.
The same loop runs on a laptop CPU and under `accelerate launch` on GPUs (prompts are sharded by process).
"""
from __future__ import annotations

import copy
import inspect
import random
import time

import torch
from accelerate import Accelerator

from .algorithms import ADVANTAGES, POLICY_LOSSES, agg_loss, entropy_from_logits, kl_penalty, logprobs_from_logits
from .algorithms import masked_mean, predicted_entropy_change, token_covariance
from .models import cache_kwarg
from .store import Run
from .tasks import make_task
from .warmup import base_policy

COV_LOSSES = ("clip_cov", "kl_cov")


def encode_prompts(tokenizer, prompts: list[str]):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def generate(model, prompt_ids, prompt_mask, max_new_tokens, temperature, eos_id, pad_id, generator=None):
    """Sample responses token by token with a KV cache. temperature 0 is greedy.

    Returns responses [B, T] (pad after EOS) and the response mask (1 up to and including EOS).
    """
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    key = cache_kwarg(model)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True)
    attn, next_pos = prompt_mask, pos[:, -1:] + 1
    done = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
    tokens, valid = [], []
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        valid.append(~done)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos_id)
        if done.all():
            break
        attn = torch.cat([attn, torch.ones_like(nxt[:, None])], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True,
                    **{key: _cache_of(out)})
        next_pos = next_pos + 1
    return torch.stack(tokens, 1), torch.stack(valid, 1).float()


class Critic(torch.nn.Module):
    """A value model for GAE: a copy of the policy's transformer with a linear head on its last hidden state."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.head = torch.nn.Linear(lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, prompt_ids, prompt_mask, responses):
        """V(s_t) for the state before each response token, [B, T] (aligned with response_logprobs)."""
        out = forward_responses(self.lm, prompt_ids, prompt_mask, responses, output_hidden_states=True)
        return self.head(out.hidden_states[-1][:, prompt_ids.shape[1] - 1:-1].float()).squeeze(-1)


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def forward_responses(model, prompt_ids, prompt_mask, responses, **kwargs):
    """One forward pass over left-padded prompts followed by their responses (positions skip the padding)."""
    ids = torch.cat([prompt_ids, responses], dim=1)
    attn = torch.cat([prompt_mask, torch.ones_like(responses)], dim=1)
    return model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0), **kwargs)


def response_logits(model, prompt_ids, prompt_mask, responses, temperature):
    """Next-token logits / temperature at each response position, [B, T, V]."""
    logits = forward_responses(model, prompt_ids, prompt_mask, responses).logits
    return logits[:, prompt_ids.shape[1] - 1:-1].float() / temperature


def response_logprobs(model, prompt_ids, prompt_mask, responses, temperature, with_entropy=False):
    """log π(y_t | prefix) of each response token (logits / temperature, as sampled), and optionally H_t."""
    logits = response_logits(model, prompt_ids, prompt_mask, responses, temperature)
    logp = logprobs_from_logits(logits, responses)
    return (logp, entropy_from_logits(logits)) if with_entropy else (logp, None)


@torch.no_grad()
def evaluate(model, tokenizer, task, problems, k, temperature, max_new_tokens, generator, batch_size=256):
    """avg@k accuracy (k samples per problem at `temperature`; k=1 at 0 is greedy)."""
    scores = []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        ids, mask = encode_prompts(tokenizer, [p.prompt for p in chunk for _ in range(k)])
        resp, rmask = generate(model, ids, mask, max_new_tokens, temperature, tokenizer.eos_token_id,
                               tokenizer.pad_token_id, generator)
        scores += score_responses(tokenizer, task, resp, rmask, [p for p in chunk for _ in range(k)])
    return sum(scores) / len(scores)


def score_responses(tokenizer, task, responses, response_mask, problems) -> list[float]:
    finished = (responses == tokenizer.eos_token_id).any(dim=1).tolist()
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    if hasattr(task, "reward_batch"):  # e.g. Math-Verify in a worker pool
        return task.reward_batch(texts, problems, finished)
    return [task.reward(t, p, f) for t, p, f in zip(texts, problems, finished)]


@torch.no_grad()
def rollout(policy, tok, task, ro, shard, py_rng, gen, device):
    """Sample this process's share of prompts, group_size responses each, and score them.

    With ro.filter_groups (the DAPO recipe's dynamic sampling), groups whose scores are all equal (all right or
    all wrong: zero advantage) are dropped and more batches are generated, up to ro.max_gen_batches, until the
    step has its number of groups. Returns the rows' problems, group index, prompt ids/mask, responses/mask,
    scores, and the number of generation batches used.
    """
    g = ro.group_size
    kept, batches = [], 0
    while True:
        batches += 1
        problems = task.sample(ro.prompts_per_step, py_rng)[shard]
        rows = [p for p in problems for _ in range(g)]
        ids, pmask = encode_prompts(tok, [p.prompt for p in rows])
        ids, pmask = ids.to(device), pmask.to(device)
        resp, rmask = generate(policy, ids, pmask, ro.max_new_tokens, ro.temperature, tok.eos_token_id,
                               tok.pad_token_id, gen)
        scores = score_responses(tok, task, resp, rmask, rows)
        if not ro.filter_groups:
            return rows, [i // g for i in range(len(rows))], ids, pmask, resp, rmask, scores, batches
        for j in range(len(problems)):
            sl = slice(j * g, (j + 1) * g)
            if len(kept) < len(problems) * g and min(scores[sl]) != max(scores[sl]):
                kept += [(rows[i], resp[i, :int(rmask[i].sum())], scores[i]) for i in range(sl.start, sl.stop)]
        if len(kept) >= len(problems) * g or batches >= ro.max_gen_batches:
            break
    if not kept:  # nothing informative in max_gen_batches batches: train on the last one (zero advantages)
        return rows, [i // g for i in range(len(rows))], ids, pmask, resp, rmask, scores, batches
    rows = [r for r, _, _ in kept]
    ids, pmask = encode_prompts(tok, [p.prompt for p in rows])
    width = max(len(t) for _, t, _ in kept)
    resp = torch.full((len(kept), width), tok.pad_token_id, dtype=torch.long)
    rmask = torch.zeros(len(kept), width)
    for i, (_, t, _) in enumerate(kept):
        resp[i, :len(t)], rmask[i, :len(t)] = t, 1
    return (rows, [i // g for i in range(len(rows))], ids.to(device), pmask.to(device), resp.to(device),
            rmask.to(device), [s for _, _, s in kept], batches)


def token_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Outcome rewards as token-level rewards: each sequence's score on its last valid token, 0 elsewhere."""
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(scores)), (mask.sum(-1).long() - 1).clamp(min=0)] = scores
    return rewards


def rng_state(py_rng, gen):
    return {"python": py_rng.getstate(), "torch": gen.get_state(), "torch_global": torch.get_rng_state()}


def train(run: Run, config, seed: int, store_root, resume: bool = False, progress=None, log=print) -> list[dict]:
    """Train one run to completion, writing metrics.jsonl line by line and checkpoints as it goes."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=_trackers(),
                              project_dir=str(run.path))
    torch.manual_seed(seed)
    model, tok = base_policy(config, store_root, log=log)
    task = make_task(config.task.name, **config.task.params)
    alg, ro, tr, ev = config.algorithm, config.rollout, config.train, config.eval
    opt_cls = torch.optim.AdamW if tr.optimizer.name == "adamw" else torch.optim.SGD
    opt_kwargs = {"betas": tr.optimizer.betas} if tr.optimizer.name == "adamw" else {}
    optimizer = opt_cls(model.parameters(), lr=tr.optimizer.lr, weight_decay=tr.optimizer.weight_decay, **opt_kwargs)
    ref_model = copy.deepcopy(model).eval() if (alg.kl_loss_coef or alg.kl_in_reward_coef) else None
    critic = Critic(copy.deepcopy(model)) if alg.advantage == "gae" else None
    if critic is not None:
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=alg.critic_lr)
        critic, critic_opt = accelerator.prepare(critic, critic_opt)
    model, optimizer = accelerator.prepare(model, optimizer)
    if ref_model is not None:
        ref_model = ref_model.to(accelerator.device)
    policy = accelerator.unwrap_model(model)
    advantage_fn, loss_fn = ADVANTAGES[alg.advantage], POLICY_LOSSES[alg.policy_loss]
    loss_params = {k: v for k, v in alg.policy_loss_params.items() if k != "cov_scope"}
    cov_scope = alg.policy_loss_params.get("cov_scope", "microbatch")
    micro = 1 if (alg.policy_loss in COV_LOSSES and cov_scope == "batch") else tr.micro_batches

    py_rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed * 1000 + accelerator.process_index)
    if "generator" in inspect.signature(loss_fn).parameters:
        loss_params["generator"] = gen
    val_problems = task.validation[:ev.n_prompts]
    probe_problems = task.validation[-tr.probe_prompts:] if tr.probe_prompts else []
    start = 0
    state = run.load_checkpoint() if resume else None
    if state is not None:
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if critic is not None:
            accelerator.unwrap_model(critic).load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_optimizer"])
        py_rng.setstate(state["rng"]["python"])
        gen.set_state(state["rng"]["torch"])
        torch.set_rng_state(state["rng"]["torch_global"])
        start = state["step"]
        run.truncate_metrics(start)
        log(f"resuming {run.path.name} at step {start}")
    elif resume or not run.started:
        run.reset()
    run.begin(config, seed, {"seed": seed, "num_processes": accelerator.num_processes})
    accelerator.init_trackers(run.path.name)
    n_local = ro.prompts_per_step // accelerator.num_processes
    t0 = time.time()

    for step in range(start, tr.steps):
        metrics = {"step": step}
        policy.eval()
        # -- validation on the policy about to be updated (so val_acc pairs with this step's entropy)
        if step % ev.every == 0 or step == tr.steps - 1:
            eval_gen = torch.Generator().manual_seed(10_000 + step)
            metrics["val_acc"] = evaluate(policy, tok, task, val_problems, ev.k, ev.temperature, ro.max_new_tokens,
                                          eval_gen)

        # -- rollout: group_size samples of each prompt (with filter_groups: only groups whose scores differ)
        shard = slice(accelerator.process_index * n_local, (accelerator.process_index + 1) * n_local)
        batch_problems, index, prompt_ids, prompt_mask, responses, mask, score_list, gen_batches = rollout(
            policy, tok, task, ro, shard, py_rng, gen, accelerator.device)
        metrics["gen_batches"] = gen_batches

        # -- rewards: the verifier's score on the last valid token
        scores = torch.tensor(score_list, device=mask.device)
        rewards = token_rewards(scores, mask)
        with torch.no_grad():
            old_log_prob, entropy = response_logprobs(policy, prompt_ids, prompt_mask, responses, ro.temperature, True)
            ref_log_prob = None
            if ref_model is not None:
                ref_log_prob, _ = response_logprobs(ref_model, prompt_ids, prompt_mask, responses, ro.temperature)
        if alg.kl_in_reward_coef:
            rewards = rewards - alg.kl_in_reward_coef * kl_penalty(old_log_prob, ref_log_prob, alg.kl_in_reward_type) * mask

        # -- advantages (GAE bootstraps from the critic's values of the response states)
        extra = {}
        if critic is not None:
            with torch.no_grad():
                extra["values"] = old_values = critic(prompt_ids, prompt_mask, responses) * mask
        advantages, returns = advantage_fn(rewards, mask, index, **alg.advantage_params, **extra)
        if probe_problems:  # fixed probe prompts: states sampled now, entropy measured before and after the update
            probe = _probe_states(policy, tok, probe_problems, ro, accelerator.device, seed, step)

        # -- PPO updates: ppo_epochs × ppo_mini_batches optimizer steps, each over whole groups
        policy.train()
        update_stats = []
        for _epoch in range(tr.ppo_epochs):
            for mb_rows in torch.arange(len(batch_problems)).chunk(tr.ppo_mini_batches):
                optimizer.zero_grad()
                for chunk in mb_rows.chunk(micro):
                    log_prob, ent = response_logprobs(model, prompt_ids[chunk], prompt_mask[chunk], responses[chunk],
                                                      ro.temperature, with_entropy=bool(alg.entropy_coeff))
                    m = mask[chunk]
                    loss, stats = loss_fn(old_log_prob[chunk], log_prob, advantages[chunk], m,
                                          loss_agg_mode=alg.loss_agg_mode, **loss_params)
                    if alg.entropy_coeff:
                        loss = loss - alg.entropy_coeff * agg_loss(ent, m, alg.loss_agg_mode)
                    if alg.kl_loss_coef:
                        kl = kl_penalty(log_prob, ref_log_prob[chunk], alg.kl_loss_type)
                        loss = loss + alg.kl_loss_coef * agg_loss(kl, m, alg.loss_agg_mode)
                        stats["kl_loss"] = agg_loss(kl, m, alg.loss_agg_mode).item()
                    accelerator.backward(loss / len(mb_rows.chunk(micro)))
                    update_stats.append({**stats, "pg_loss": loss.item()})
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), tr.grad_clip)
                update_stats[-1]["grad_norm"] = float(grad_norm)
                optimizer.step()
                if critic is not None:  # clipped value loss: ½·max((V-R)², (clip(V, V_old±c)-R)²)
                    critic_opt.zero_grad()
                    v = critic(prompt_ids[mb_rows], prompt_mask[mb_rows], responses[mb_rows])
                    v_old, ret, m = old_values[mb_rows], returns[mb_rows], mask[mb_rows]
                    v_clip = v_old + (v - v_old).clamp(-alg.cliprange_value, alg.cliprange_value)
                    vf_loss = 0.5 * agg_loss(torch.maximum((v - ret) ** 2, (v_clip - ret) ** 2), m, "token-mean")
                    accelerator.backward(vf_loss)
                    accelerator.clip_grad_norm_(critic.parameters(), tr.grad_clip)
                    critic_opt.step()
                    update_stats[-1]["vf_loss"] = vf_loss.item()

        # -- metrics of this step (rollout statistics are of the pre-update policy)
        lengths = mask.sum(-1)
        metrics.update({
            "entropy": masked_mean(entropy, mask).item(),
            "train_acc": scores.mean().item(),
            "cov": masked_mean(token_covariance(old_log_prob, advantages, mask), mask).item(),
            "response_length": lengths.mean().item(),
            **covariance_by_accuracy(old_log_prob, advantages, mask, scores, index, ro.group_size),
        })
        if probe_problems:
            policy.eval()
            with torch.no_grad():
                _, entropy_after = response_logprobs(policy, prompt_ids, prompt_mask, responses, ro.temperature, True)
                metrics["delta_entropy"] = masked_mean(entropy_after - entropy, mask).item()
                metrics["probe_entropy"], metrics["probe_delta_entropy"] = _probe_entropy_change(policy, probe, ro)
        for key in dict.fromkeys(k for stats in update_stats for k in stats):
            vals = [s[key] for s in update_stats if key in s]
            metrics[key] = sum(vals) / len(vals)
        metrics = _reduce(accelerator, metrics)
        metrics["wall_time"] = time.time() - t0
        if accelerator.is_main_process:
            run.append_metrics(metrics)
        accelerator.log({k: v for k, v in metrics.items() if k != "step"}, step=step)
        if (step + 1) % tr.checkpoint_every == 0 and step + 1 < tr.steps and accelerator.is_main_process:
            run.save_checkpoint({"model": policy.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                                 "rng": rng_state(py_rng, gen),
                                 **({"critic": accelerator.unwrap_model(critic).state_dict(),
                                     "critic_optimizer": critic_opt.state_dict()} if critic is not None else {})})
        if progress is not None:
            progress(step, metrics)
    accelerator.end_training()
    if accelerator.is_main_process:
        run.finish()
        run.checkpoint_file.unlink(missing_ok=True)
        policy.save_pretrained(run.path / "model")
        tok.save_pretrained(run.path / "model")
    return run.metrics()


def covariance_by_accuracy(log_prob, advantages, mask, scores, index, group_size) -> dict:
    """Covariance of log π and A within each group, averaged over groups by their accuracy.

    Keys: cov_acc_<k/n> for each group accuracy strictly between 0 and 1 present in the batch, and
    cov_hard / cov_medium / cov_easy for accuracy in (0, 1/3], (1/3, 2/3), [2/3, 1).
    """
    by_acc, by_bin = {}, {}
    for gid in dict.fromkeys(index):
        rows = [i for i, g in enumerate(index) if g == gid]
        acc = scores[rows].mean().item()
        if acc <= 0 or acc >= 1:
            continue  # all-equal groups have zero advantage and zero covariance
        cov = masked_mean(token_covariance(log_prob[rows], advantages[rows], mask[rows]), mask[rows]).item()
        by_acc.setdefault(f"cov_acc_{round(acc * group_size)}/{group_size}", []).append(cov)
        name = "cov_hard" if acc <= 1 / 3 else ("cov_medium" if acc < 2 / 3 else "cov_easy")
        by_bin.setdefault(name, []).append(cov)
    return {k: sum(v) / len(v) for k, v in {**by_acc, **by_bin}.items()}


@torch.no_grad()
def _probe_states(policy, tok, problems, ro, device, seed, step):
    gen = torch.Generator().manual_seed(20_000 + 1000 * seed + step)
    ids, pmask = encode_prompts(tok, [p.prompt for p in problems])
    ids, pmask = ids.to(device), pmask.to(device)
    resp, rmask = generate(policy, ids, pmask, ro.max_new_tokens, ro.temperature, tok.eos_token_id, tok.pad_token_id, gen)
    _, ent = response_logprobs(policy, ids, pmask, resp, ro.temperature, True)
    return ids, pmask, resp, rmask, ent


@torch.no_grad()
def _probe_entropy_change(policy, probe, ro):
    ids, pmask, resp, rmask, before = probe
    _, after = response_logprobs(policy, ids, pmask, resp, ro.temperature, True)
    return masked_mean(before, rmask).item(), masked_mean(after - before, rmask).item()


def _reduce(accelerator, metrics: dict) -> dict:
    """Average metrics over processes (a no-op on one process)."""
    if accelerator.num_processes == 1:
        return metrics
    from accelerate.utils import gather_object
    parts = gather_object([metrics])  # keys may differ by process (accuracy buckets present on each)
    keys = dict.fromkeys(k for part in parts for k in part if k != "step")
    return {"step": metrics["step"],
            **{k: sum(p[k] for p in parts if k in p) / sum(k in p for p in parts) for k in keys}}


def _trackers():
    try:
        import tensorboard  # noqa: F401
        return "tensorboard"
    except ImportError:
        return None


def logit_step_probe(config, seed: int, store_root, lr: float, log=print) -> list[dict]:
    """One plain SGD step of the policy-gradient loss on a rollout batch of the base policy, and at every valid
    response position the measured entropy change next to the lemma's prediction -Cov_π(log π, Δz).

    Δz is the measured change of the (temperature-scaled) logits at that position, on the same states.
    """
    torch.manual_seed(seed)
    policy, tok = base_policy(config, store_root, log=log)
    task = make_task(config.task.name, **config.task.params)
    ro, alg = config.rollout, config.algorithm
    gen = torch.Generator().manual_seed(seed)
    policy.eval()
    _, index, ids, pmask, responses, mask, scores, _ = rollout(policy, tok, task, ro, slice(None), random.Random(seed),
                                                              gen, next(policy.parameters()).device)
    scores = torch.tensor(scores, device=mask.device)
    advantages, _ = ADVANTAGES[alg.advantage](token_rewards(scores, mask), mask, index, **alg.advantage_params)

    def logits_of():
        return response_logits(policy, ids, pmask, responses, ro.temperature).double()

    opt = torch.optim.SGD(policy.parameters(), lr=lr)
    z_before = logits_of()
    logp = logprobs_from_logits(z_before.float(), responses)
    loss, _ = POLICY_LOSSES["vanilla"](logp.detach(), logp, advantages, mask, loss_agg_mode=alg.loss_agg_mode)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        z_after = logits_of()
        z_before = z_before.detach()
        exact = entropy_from_logits(z_after) - entropy_from_logits(z_before)
        pred = predicted_entropy_change(z_before, z_after - z_before)
    valid = mask.bool()
    return [{"exact": float(e), "predicted": float(p), "advantage": float(a)}
            for e, p, a in zip(exact[valid].tolist(), pred[valid].tolist(), advantages[valid].tolist())]
