"""Multi-digit addition with a short column-sum scratchpad: a verifiable task with difficulty levels.

Prompt "47+38=", response "15,8>85": the column sums (with carry) right to left, then the answer.
The difficulty level is the number of digits of the operands.
"""
from __future__ import annotations

import random

from .base import GeneratedTask, Problem


class AdditionTask(GeneratedTask):
    alphabet = "0123456789+=,>"

    def __init__(self, digits: list[int] | int = 2, holdout: int = 256, holdout_seed: int = 12345):
        self.digits = [digits] if isinstance(digits, int) else list(digits)
        self._holdout_seed = holdout_seed
        self._hold_out(holdout, holdout_seed)

    def _problem(self, rng: random.Random) -> Problem:
        d = rng.choice(self.digits)
        a, b = rng.randrange(10 ** (d - 1), 10 ** d), rng.randrange(10 ** (d - 1), 10 ** d)
        return Problem(f"{a}+{b}=", str(a + b), d)

    @staticmethod
    def solution(problem: Problem, rng: random.Random | None = None, noise: float = 0.0) -> str:
        """The scratchpad response; with noise, each column sum is off by ±1 with that probability."""
        a, b = problem.prompt[:-1].split("+")
        cols, carry, digits = [], 0, []
        for i in range(max(len(a), len(b))):
            x = int(a[-1 - i]) if i < len(a) else 0
            y = int(b[-1 - i]) if i < len(b) else 0
            s = x + y + carry
            if rng is not None and noise > 0 and rng.random() < noise:
                s = min(19, max(0, s + rng.choice((-1, 1))))
            cols.append(str(s))
            digits.append(str(s % 10))
            carry = s // 10
        answer = (str(carry) if carry else "") + "".join(reversed(digits))
        return ",".join(cols) + ">" + answer

    @staticmethod
    def reward(response: str, problem: Problem, finished: bool = True) -> float:
        """1.0 when the response ends (EOS) and its text after the last '>' equals the answer."""
        if not finished or ">" not in response:
            return 0.0
        return float(response.rsplit(">", 1)[1] == problem.answer)
