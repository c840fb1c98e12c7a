"""Addition with an optional, overthinking scratchpad: a verifiable task whose hard levels need the scratchpad.

Prompt "47+38=". A scratchpad response works column by column, right to left, writing each column as
"x+y+carry=sum", then re-checks its answer `checks` times (";85" each: redundant work, the overthinking that DAST
should remove), then gives the answer after the final marker ">":

    "7+8+0=15,4+3+1=8;85;85>85"      (scratchpad, 2 checks)
    ">85"                            (direct answer)

Level = number of digits of the operands. One- and two-digit sums can be answered directly by a tiny model;
four- and five-digit sums need the column-by-column pass. The warm-up solution always writes the scratchpad
(with 0..max_checks checks, uniformly) unless `direct` > 0: then that share of warm-up solutions is a bare
answer, on every level alike, so that direct answers exist among the base model's samples (an offline method
such as DAST can only prefer responses the base model samples).
Verifier: the response ends (EOS) and its text after the last '>' equals the answer.
"""
from __future__ import annotations

import random

from .base import Problem


class ScratchAdditionTask:
    alphabet = "0123456789+=,;>"

    def __init__(self, digits: list[int] | int = (1, 2, 3, 4, 5), max_checks: int = 2, direct: float = 0.0,
                 holdout_per_level: int = 50, holdout_seed: int = 12345):
        self.digits = [digits] if isinstance(digits, int) else list(digits)
        if not 0.0 <= direct <= 1.0:
            raise ValueError(f"direct must be in [0, 1], got {direct}")
        self.max_checks, self.direct = int(max_checks), float(direct)
        rng = random.Random(holdout_seed)
        self.validation, seen = [], set()
        for d in self.digits:  # a balanced held-out set: holdout_per_level distinct problems per level
            level = []
            for _ in range(1000 * holdout_per_level):
                if len(level) >= min(holdout_per_level, self._count(d)):
                    break
                p = self._problem(rng, d)
                if p.prompt not in seen:
                    seen.add(p.prompt)
                    level.append(p)
            self.validation += level
        self._held = seen

    @staticmethod
    def _count(d: int) -> int:
        return (9 * 10 ** (d - 1) if d > 1 else 10) ** 2

    @staticmethod
    def _problem(rng: random.Random, d: int) -> Problem:
        lo = 10 ** (d - 1) if d > 1 else 0
        a, b = rng.randrange(lo, 10 ** d), rng.randrange(lo, 10 ** d)
        return Problem(f"{a}+{b}=", str(a + b), d)

    def sample(self, n: int, rng: random.Random) -> list[Problem]:
        """Training problems (level uniform over `digits`), never one of the validation set. One-digit sums
        are few (100), so held-out one-digit problems may also be drawn when all others are exhausted."""
        out = []
        while len(out) < n:
            d = rng.choice(self.digits)
            for _ in range(50):
                p = self._problem(rng, d)
                if p.prompt not in self._held:
                    break
            out.append(p)
        return out

    @staticmethod
    def scratchpad(problem: Problem) -> str:
        a, b = problem.prompt[:-1].split("+")
        cols, carry = [], 0
        for i in range(max(len(a), len(b))):
            x = int(a[-1 - i]) if i < len(a) else 0
            y = int(b[-1 - i]) if i < len(b) else 0
            s = x + y + carry
            cols.append(f"{x}+{y}+{carry}={s}")
            carry = s // 10
        return ",".join(cols)

    def solution(self, problem: Problem, rng: random.Random | None = None, noise: float = 0.0,
                 checks: int | None = None, direct: bool | None = None) -> str:
        """The warm-up response: the scratchpad with 0..max_checks re-checks, or (with probability `direct`,
        or when direct=True) the bare answer. `noise` is unused (the scratchpad is exact)."""
        rng = rng or random.Random(0)
        if direct is None:
            direct = self.direct > 0 and rng.random() < self.direct
        if direct:
            return ">" + problem.answer
        k = rng.randint(0, self.max_checks) if checks is None else checks
        return self.scratchpad(problem) + (";" + problem.answer) * k + ">" + problem.answer

    @staticmethod
    def reward(response: str, problem: Problem, finished: bool = True) -> float:
        """1.0 when the response ends (EOS) and its text after the last '>' equals the answer."""
        if not finished or ">" not in response:
            return 0.0
        return float(response.rsplit(">", 1)[1] == problem.answer)

    @staticmethod
    def has_scratchpad(response: str) -> bool:
        return "=" in response.split(">", 1)[0]
