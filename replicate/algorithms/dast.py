"""DAST (Shen et al. 2025, arXiv 2503.04472): the pure, model-free parts of difficulty-adaptive slow thinking.

Per training problem: sample N responses, estimate difficulty by the share p of correct ones, set the paper's
Token Length Budget (TLB), score every response by its budget-aware reward shaping, and build dual-correct /
dual-incorrect pairs for budget preference optimisation with SimPO (the loss is PREFERENCE_LOSSES["simpo"]).
Citations name the paper's method component and the item of shared/papers/dast.md §Method that states the
formula ("dast.md M2" = item 2); the paper's own equation numbers were not checked against the PDF.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Response:
    """One sampled response to a training problem; reward is the budget-aware reward (budget_reward)."""
    problem_id: Hashable
    text: str
    length: int
    correct: bool
    reward: float


@dataclass(frozen=True)
class PreferencePair:
    """A SimPO training pair: chosen has the higher budget reward; kind is "dual_correct" or "dual_incorrect"."""
    problem_id: Hashable
    chosen: Response
    rejected: Response
    kind: str

    @property
    def gap(self) -> float:
        return self.chosen.reward - self.rejected.reward


@dataclass(frozen=True)
class ProblemStats:
    """p = c/N, L_r = mean length of the correct samples (None when c = 0), and the budget (length_budget)."""
    p: float
    mean_correct_length: float | None
    budget: float


def length_budget(p: float, mean_correct_length: float | None, max_length: float) -> float:
    """Token Length Budget, TLB (dast.md M2): L_budget = p·L_r + (1 - p)·L_max.

    p is the share of correct samples (difficulty: hard problems have small p), L_r the mean token length of the
    correct samples, L_max the maximum generation length (4,096 in the paper). p = 0 gives L_max whatever L_r is
    (there is no correct sample, so L_r may be None); p = 1 gives L_r.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    if p == 0.0:
        return float(max_length)
    if mean_correct_length is None:
        raise ValueError("p > 0 needs the mean length of the correct samples")
    return p * mean_correct_length + (1.0 - p) * max_length


def budget_reward(length: float, correct: bool, budget: float) -> float:
    """Budget-aware reward shaping (dast.md M3), with λ = (L - L_budget) / L_budget:

    correct: r = max(-0.5·λ + 0.5, 0.1)   (1.0 at L = 0, 0.5 on budget, floor 0.1 from λ = 0.8 on)
    wrong:   r = min(0.9·λ - 0.1, -0.1)   (-1.0 at L = 0, cap -0.1 from λ = 0 on: a wrong answer is
                                          penalised less the longer it thinks, up to the budget)
    """
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    lam = (length - budget) / budget
    if correct:
        return max(-0.5 * lam + 0.5, 0.1)
    return min(0.9 * lam - 0.1, -0.1)


def problem_stats(samples: Sequence[tuple[int, bool]], max_length: int, l_max_from: str = "cap") -> ProblemStats:
    """p, L_r and L_budget of one problem from its N samples [(length, correct), ...] (dast.md M1-M2).

    l_max_from picks L_max: "cap" = max_length, the generation cap (the paper's reading, the default);
    "longest" = the longest sampled response (a secondary reading of the paper; max_length is then unused).
    """
    if not samples:
        raise ValueError("a problem needs at least one sample")
    if l_max_from not in ("cap", "longest"):
        raise ValueError(f"l_max_from must be 'cap' or 'longest', got {l_max_from!r}")
    correct_lengths = [length for length, ok in samples if ok]
    p = len(correct_lengths) / len(samples)
    l_r = sum(correct_lengths) / len(correct_lengths) if correct_lengths else None
    l_max = max_length if l_max_from == "cap" else max(length for length, _ in samples)
    return ProblemStats(p=p, mean_correct_length=l_r, budget=length_budget(p, l_r, l_max))


def score_problem(problem_id: Hashable, samples: Sequence[tuple[str, int, bool]], max_length: int,
                  l_max_from: str = "cap") -> list[Response]:
    """Responses of one problem, [(text, length, correct), ...], each with its budget-aware reward (dast.md M2-M3)."""
    stats = problem_stats([(length, ok) for _, length, ok in samples], max_length, l_max_from)
    return [Response(problem_id, text, length, ok, budget_reward(length, ok, stats.budget))
            for text, length, ok in samples]


def _widest_pair(responses: Sequence[Response], kind: str) -> PreferencePair | None:
    """The pair of distinct-text responses with the largest reward gap > 0, chosen = higher reward (first on ties)."""
    best = None
    for a, b in itertools.combinations(responses, 2):
        if a.text == b.text or a.reward == b.reward:
            continue
        chosen, rejected = (a, b) if a.reward > b.reward else (b, a)
        if best is None or chosen.reward - rejected.reward > best.gap:
            best = PreferencePair(a.problem_id, chosen, rejected, kind)
    return best


def build_pairs(groups: Mapping[Hashable, Sequence[Response]] | Iterable[Sequence[Response]], delta: float,
                max_pairs_per_problem: int = 2, dual_correct: bool = True,
                dual_incorrect: bool = True) -> list[PreferencePair]:
    """DAST preference pairs (dast.md M4) from the scored responses of each problem (one group per problem).

    1. Per problem, the dual-correct pair (both correct: the shorter wins) and the dual-incorrect pair (both
       wrong: the longer wins) with the largest reward gap; never two responses with the same text, never a
       pair with equal rewards (no preference), never correct-vs-incorrect (the paper finds they add nothing).
    2. A global cut: sort all candidate pairs by gap and drop the bottom ⌊δ·n⌋ of the n (stable on ties: of
       equal gaps, the earlier candidate goes first). δ ≈ 0.15-0.18 in the paper; δ = 0 keeps all.
    3. At most max_pairs_per_problem pairs per problem (largest gaps first; with both kinds on, 2 is no cut).
    dual_correct / dual_incorrect = False and delta = 0 are the paper's ablations (dast.md §Evaluation: without
    dual-incorrect pairs, without dual-correct pairs; δ = 0 makes responses grow).
    Returns the kept pairs in candidate order (problem order, dual-correct before dual-incorrect).
    """
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if max_pairs_per_problem < 1:
        raise ValueError(f"max_pairs_per_problem must be >= 1, got {max_pairs_per_problem}")
    candidates = []
    for group in (groups.values() if isinstance(groups, Mapping) else groups):
        if len({r.problem_id for r in group}) > 1:
            raise ValueError("a group mixes responses of different problems")
        for kind, wanted, on in (("dual_correct", True, dual_correct), ("dual_incorrect", False, dual_incorrect)):
            pair = _widest_pair([r for r in group if r.correct == wanted], kind) if on else None
            if pair is not None:
                candidates.append(pair)
    by_gap = sorted(range(len(candidates)), key=lambda i: candidates[i].gap)
    dropped = set(by_gap[:math.floor(delta * len(candidates) + 1e-9)])  # 0.57·100 is 56.99999...
    kept_per_problem: dict[Hashable, list[int]] = {}
    for i in sorted((i for i in range(len(candidates)) if i not in dropped), key=lambda i: -candidates[i].gap):
        kept_per_problem.setdefault(candidates[i].problem_id, []).append(i)
    keep = {i for ids in kept_per_problem.values() for i in ids[:max_pairs_per_problem]}
    return [c for i, c in enumerate(candidates) if i in keep]
