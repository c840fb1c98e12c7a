"""Per-token entropy of a softmax policy from its logits."""
from __future__ import annotations

import torch


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    # H = logsumexp(z) - Σ_a softmax(z)_a · z_a
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def _by_rows(fn, logits: torch.Tensor, chunk_size: int | None, *extra: torch.Tensor) -> torch.Tensor:
    """fn(rows of logits [, rows of extra]) over chunk_size rows at a time, so that only one chunk's [chunk, V]
    temporaries ever exist next to the logits; the whole [..., V] -> [...] at once without chunk_size."""
    if chunk_size is None:
        return fn(logits, *extra)
    flat = logits.reshape(-1, logits.shape[-1])
    rest = [e.reshape(-1) for e in extra]
    out = torch.empty(flat.shape[0], dtype=logits.dtype, device=logits.device)
    for start in range(0, flat.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        out[rows] = fn(flat[rows], *(e[rows] for e in rest))
    return out.reshape(logits.shape[:-1])


def entropy_from_logits(logits: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """H(π(·|s)) = logsumexp(z) - Σ_a π(a|s)·z_a for logits [..., V] -> [...].

    With chunk_size, rows are processed chunk_size at a time, so only one chunk of softmax is ever
    materialised next to the logits (B×T×V logits cost ~chunk/(B·T) times their own memory extra).
    """
    return _by_rows(_entropy, logits, chunk_size)


def _logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """log π(label) = z_label - logsumexp(z), gathered per position; with chunk_size, chunk_size rows at a time
    (logsumexp's exp(z - max) temporary is then one chunk, not the whole logits)."""
    return _by_rows(_logprobs, logits, chunk_size, labels)


def predicted_entropy_change(logits: torch.Tensor, delta_logits: torch.Tensor) -> torch.Tensor:
    """First-order entropy change of a softmax policy under a logit update (the paper's lemma):

    H(z + Δz) - H(z) ≈ -Cov_{a~π}(log π(a), Δz_a) = -(E_π[log π·Δz] - E_π[log π]·E_π[Δz]).
    """
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    return -((p * logp * delta_logits).sum(-1) - (p * logp).sum(-1) * (p * delta_logits).sum(-1))
