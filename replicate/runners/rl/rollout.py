"""Sampling: KV-cached generation, verifier scores, the typed rollout batch, and avg@k evaluation.

Every tensor and generator lives on the policy's device; the batch carries the temperature it was sampled at,
so log-probs computed from it always match the sampler.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from replicate.engines import ENGINES
from replicate.runners.rl.models import _cache_of, autocast_scope, cache_kwarg, last_logits_only, response_logprobs
from replicate.runners.rl.stops import cut_at_stops, ends, stop_token_ids
from replicate.tasks import Problem


@dataclass
class RolloutBatch:
    """One step's rollout: rows are responses, grouped by prompt (`index` = group id of each row)."""
    problems: list[Problem]
    index: list[int]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    responses: torch.Tensor
    response_mask: torch.Tensor
    scores: torch.Tensor
    temperature: float
    gen_batches: int = 1          # generation batches used (dynamic sampling may need several)
    groups_short: int = 0         # groups missing when dynamic sampling ran out of batches
    train_acc: float | None = None  # mean score over every generated row (kept or filtered)

    def __len__(self):
        return len(self.problems)

    def rows(self, idx: torch.Tensor) -> "RolloutBatch":
        """The sub-batch of the given row indices (for mini- and micro-batches)."""
        ix = idx.tolist()
        return replace(self, problems=[self.problems[i] for i in ix], index=[self.index[i] for i in ix],
                       prompt_ids=self.prompt_ids[idx], prompt_mask=self.prompt_mask[idx],
                       responses=self.responses[idx], response_mask=self.response_mask[idx], scores=self.scores[idx])

    def logprobs(self, model, with_entropy: bool = False):
        """log π(y_t | prefix) under `model` at the sampling temperature (and the entropy H_t if asked)."""
        return response_logprobs(model, self.prompt_ids, self.prompt_mask, self.responses, self.temperature,
                                 with_entropy)

    def groups(self) -> list[list[int]]:
        """Row indices of each group, in order of first appearance."""
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.index):
            out.setdefault(g, []).append(i)
        return list(out.values())


def encode_prompts(tokenizer, prompts: list[str], device=None):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def make_generator(seed: int, device) -> torch.Generator:
    """A torch generator on `device` (torch.multinomial needs the generator where the probabilities are)."""
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def generate(model, prompt_ids, prompt_mask, max_new_tokens, temperature, stop_ids, pad_id, generator=None,
             repeats: int = 1):
    """Sample responses token by token with a KV cache. temperature 0 is greedy.

    With repeats > 1 the prompts are distinct and each is answered `repeats` times in a row (a GRPO group): the
    prompt is run once and its KV cache copied, instead of running the same prompt `repeats` times.
    Returns responses [B, T] (B = prompts x repeats, pad after the first of `stop_ids`: EOS and any stop token)
    and the response mask (1 up to and including it).
    """
    with autocast_scope(model):  # a model that autocasts casts its weights once per call, not once per token
        return _generate(model, prompt_ids, prompt_mask, max_new_tokens, temperature, stop_ids, pad_id, generator,
                         repeats)


def _generate(model, prompt_ids, prompt_mask, max_new_tokens, temperature, stop_ids, pad_id, generator, repeats):
    stops = torch.tensor(list(stop_ids), device=prompt_ids.device)
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    key = cache_kwarg(model)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True,
                **last_logits_only(model, 1))  # the prefill needs the last position's logits only
    if repeats > 1:
        _cache_of(out).batch_repeat_interleave(repeats)
        out.logits = out.logits.repeat_interleave(repeats, dim=0)
        prompt_mask, pos = prompt_mask.repeat_interleave(repeats, dim=0), pos.repeat_interleave(repeats, dim=0)
    B, P = prompt_mask.shape
    # the whole attention mask, allocated once: step t attends to the first P + t columns
    attn = torch.cat([prompt_mask, prompt_mask.new_ones(B, max_new_tokens)], dim=1)
    next_pos = pos[:, -1:] + 1
    done = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
    tokens, valid = [], []
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        valid.append(~done)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        done = done | torch.isin(nxt, stops)
        if done.all() or t == max_new_tokens - 1:  # no forward for logits that nothing samples from
            break
        out = model(input_ids=nxt[:, None], attention_mask=attn[:, :P + t + 1], position_ids=next_pos,
                    use_cache=True, **{key: _cache_of(out)})
        next_pos = next_pos + 1
    return torch.stack(tokens, 1), torch.stack(valid, 1).float()


def score_responses(tokenizer, task, responses, response_mask, problems) -> list[float]:
    finished = ends(tokenizer, responses).tolist()
    texts = cut_at_stops(tokenizer, tokenizer.batch_decode(responses, skip_special_tokens=True))
    if hasattr(task, "reward_batch"):  # e.g. Math-Verify in a worker pool
        return task.reward_batch(texts, problems, finished)
    return [task.reward(t, p, f) for t, p, f in zip(texts, problems, finished)]


def sample_batch(policy, tok, task, problems, group_size, temperature, max_new_tokens, gen,
                 engine: str = "ours") -> RolloutBatch:
    """group_size responses to each problem from the rollout engine `engine`, scored by the task's verifier."""
    device = next(policy.parameters()).device
    rows = [p for p in problems for _ in range(group_size)]
    ids, pmask = encode_prompts(tok, [p.prompt for p in problems], device)
    resp, rmask = ENGINES[engine](policy, ids, pmask, max_new_tokens, temperature, stop_token_ids(tok),
                                  tok.pad_token_id, gen, repeats=group_size)
    ids, pmask = ids.repeat_interleave(group_size, dim=0), pmask.repeat_interleave(group_size, dim=0)
    scores = torch.tensor(score_responses(tok, task, resp, rmask, rows), device=device)
    return RolloutBatch(rows, [i // group_size for i in range(len(rows))], ids, pmask, resp, rmask, scores,
                        temperature, train_acc=scores.mean().item())


@torch.no_grad()
def rollout(policy, tok, task, ro, shard, py_rng, gen) -> RolloutBatch:
    """Sample this process's share of prompts, ro.group_size responses each, and score them.

    With ro.filter_groups (DAPO's dynamic sampling), groups whose scores are all equal (zero advantage) are
    dropped and more batches are generated, up to ro.max_gen_batches, until the step has its number of groups;
    a step that runs out reports how many groups it is short (`groups_short`) and trains on the groups it has.
    `train_acc` is the mean score of every generated row.
    """
    def draw():
        return sample_batch(policy, tok, task, task.sample(ro.prompts_per_step, py_rng)[shard], ro.group_size,
                            ro.temperature, ro.max_new_tokens, gen, ro.engine)
    batch = draw()
    if not ro.filter_groups:
        return batch
    want, kept, seen, n = len(batch.groups()), [], [], 1
    while True:
        seen.append(batch.scores)
        kept += [batch.rows(torch.tensor(g)) for g in batch.groups() if batch.scores[g].min() != batch.scores[g].max()]
        if len(kept) >= want or n >= ro.max_gen_batches:
            break
        batch, n = draw(), n + 1
    acc = torch.cat(seen).mean().item()
    if not kept:  # nothing informative in max_gen_batches batches: the last batch (zero advantages)
        return replace(batch, gen_batches=n, groups_short=want, train_acc=acc)
    return replace(_concat(kept[:want], tok.pad_token_id, ro.group_size), gen_batches=n,
                   groups_short=max(0, want - len(kept)), train_acc=acc)


def _concat(groups: list[RolloutBatch], pad_id: int, group_size: int) -> RolloutBatch:
    """Stack groups sampled in different batches (their prompt and response widths may differ)."""
    def stack(key, fill, left):
        parts = [getattr(g, key) for g in groups]
        width = max(p.shape[1] for p in parts)
        out = torch.full((sum(len(p) for p in parts), width), fill, dtype=parts[0].dtype, device=parts[0].device)
        row = 0
        for p in parts:
            if left:
                out[row:row + len(p), width - p.shape[1]:] = p
            else:
                out[row:row + len(p), :p.shape[1]] = p
            row += len(p)
        return out
    problems = [p for g in groups for p in g.problems]
    return RolloutBatch(problems, [i // group_size for i in range(len(problems))], stack("prompt_ids", pad_id, True),
                        stack("prompt_mask", 0, True), stack("responses", pad_id, False),
                        stack("response_mask", 0, False), torch.cat([g.scores for g in groups]), groups[0].temperature)


@torch.no_grad()
def avg_at_k(model, tokenizer, task, problems, k, temperature, max_new_tokens, generator, batch_size=256,
             per_problem: bool = False):
    """avg@k accuracy: k samples per problem at `temperature` (k=1 at temperature 0 is greedy); with
    per_problem, the list of each problem's mean score over its k samples instead (same samples)."""
    scores = []
    for start in range(0, len(problems), batch_size):
        batch = sample_batch(model, tokenizer, task, problems[start:start + batch_size], k, temperature,
                             max_new_tokens, generator)
        scores += batch.scores.tolist()
    if per_problem:  # rows are each problem's k samples in a row
        return [sum(scores[i:i + k]) / k for i in range(0, len(scores), k)]
    return sum(scores) / len(scores)
