"""The softmax-policy entropy lemma, checked exactly.

For a softmax policy π = softmax(z) over a finite action set and a logit update z -> z + η·d,
    H(z + η·d) - H(z) = -η·Cov_{a~π}(log π(a), d_a) + O(η²).
Vanilla policy gradient: d = π(a)·A(a); natural policy gradient: d = A(a).
"""
from __future__ import annotations

import numpy as np
import torch

from replicate.algorithms.entropy import entropy_from_logits as entropy
from replicate.algorithms.entropy import predicted_entropy_change

UPDATES = ("arbitrary", "vanilla_pg", "natural_pg")


def direction(kind: str, z: torch.Tensor, adv: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    if kind == "arbitrary":
        return noise
    if kind == "vanilla_pg":
        return torch.softmax(z, -1) * adv
    if kind == "natural_pg":
        return adv
    raise ValueError(f"unknown update {kind!r}; choose one of {', '.join(UPDATES)}")


def lemma_points(seed: int, vocab_sizes, states_per_vocab: int, etas, logit_scale: float = 2.0) -> list[dict]:
    """Exact and predicted ΔH for random states (float64), every vocabulary size, update kind and step size."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for v in vocab_sizes:
        z = torch.randn(states_per_vocab, v, generator=g, dtype=torch.float64) * logit_scale
        adv = torch.randn(states_per_vocab, v, generator=g, dtype=torch.float64)
        noise = torch.randn(states_per_vocab, v, generator=g, dtype=torch.float64)
        h0 = entropy(z)
        for kind in UPDATES:
            d = direction(kind, z, adv, noise)
            for eta in etas:
                exact = entropy(z + eta * d) - h0
                pred = predicted_entropy_change(z, eta * d)
                rows += [{"vocab": v, "update": kind, "eta": float(eta), "state": i, "exact": float(e),
                          "predicted": float(pr)} for i, (e, pr) in enumerate(zip(exact.tolist(), pred.tolist()))]
    return rows


def loglog_slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def summarize(rows: list[dict], eta_for_scatter: float) -> dict:
    """Per update kind: the log-log slopes of the median absolute and relative error against η, and the
    correlation of predicted and exact ΔH at eta_for_scatter (over every state and vocabulary)."""
    out = {}
    for kind in UPDATES:
        sub = [r for r in rows if r["update"] == kind]
        etas = sorted({r["eta"] for r in sub})
        abs_err = [np.median([abs(r["exact"] - r["predicted"]) for r in sub if r["eta"] == e]) for e in etas]
        rel_err = [np.median([abs(r["exact"] - r["predicted"]) / max(abs(r["predicted"]), 1e-300)
                              for r in sub if r["eta"] == e]) for e in etas]
        at = [r for r in sub if r["eta"] == min(etas, key=lambda e: abs(e - eta_for_scatter))]
        corr = float(np.corrcoef([r["predicted"] for r in at], [r["exact"] for r in at])[0, 1])
        out[kind] = {"abs_error_slope": loglog_slope(etas, abs_err), "rel_error_slope": loglog_slope(etas, rel_err),
                     "corr": corr, "etas": etas, "median_abs_error": abs_err, "median_rel_error": rel_err}
    return out
