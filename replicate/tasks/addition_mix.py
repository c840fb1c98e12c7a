"""Addition with a mixture of two solution strategies: a column-sum scratchpad or the bare answer.

Prompt "47+38=". Scratchpad response "15,8>85"; direct response ">85". The warm-up shows each strategy with
probability 1 - direct / direct; a tiny model can learn the scratchpad but not reliably the direct sum, so
its base entropy (strategy choice and direct-answer digits) is its own uncertainty, not injected noise.
Reward as in `addition`: the text after the last '>' equals the sum.
"""
from __future__ import annotations

import random

from .arithmetic import AdditionTask, Problem


class AdditionMixTask(AdditionTask):
    def __init__(self, digits: list[int] | int = 2, holdout: int = 256, holdout_seed: int = 12345,
                 direct: float = 0.5):
        super().__init__(digits, holdout, holdout_seed)
        self.direct = direct

    def solution(self, problem: Problem, rng: random.Random | None = None, noise: float = 0.0) -> str:
        """With an rng, the direct answer with probability `direct`, else the (optionally noisy) scratchpad."""
        if rng is not None and rng.random() < self.direct:
            return ">" + problem.answer
        return AdditionTask.solution(problem, rng, noise)
