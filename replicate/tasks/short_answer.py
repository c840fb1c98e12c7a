"""Short-answer arithmetic: a verifiable task whose whole response is one or two answer digits.

Prompt "3+7+5=" (op "+") or "47*38=" (op "*"); response the result modulo `mod` ("5", "6"), or the full
result when mod is 0 ("47+38=" -> "85": direct-answer addition). No scratchpad, so a policy's uncertainty
sits on the few answer tokens: a partly trained model has high per-token entropy at moderate accuracy,
and RL can sharpen it (a contextual-bandit-like regime). The level is the number of operands, or the
number of digits per operand when only one operand count is asked for and several digit counts are.
With level_by="last_digits" (products only), the level is instead how much of the times table the answer needs,
read from the operands' last digits: 1 when one of them ends in 0 or 1 (the answer is 0 or the other's last
digit), 2 when one ends in 5 (the answer is 0 or 5), 3 otherwise (a times-table lookup): three difficulty
levels inside the same training distribution.

A `misconception` makes the warm-up teach a systematic wrong rule on a share `misconception_p` of its labels
(applied before the uniform `noise`, which then replaces the rest with probability noise): "copy_b", the last
digit of the last operand (47*38= -> 8); "ab_plus_a", (a·b + a) mod `mod` (a rule as hard as the task);
"b_tens", the tens digit of the last operand (47*38= -> 3: a digit the answer never depends on). The
base policy's mode is then wrong where the rule disagrees with the answer while the answer keeps some mass, so RL
must move mass using the reward (docs/testbed/teach.md). Rewards and validation answers are never affected.
"""
from __future__ import annotations

import random

from .base import GeneratedTask, Problem


class ShortAnswerTask(GeneratedTask):
    alphabet = "0123456789+*="

    def __init__(self, op: str = "+", operands: list[int] | int = 3, digits: list[int] | int = 1, mod: int = 10,
                 holdout: int = 256, holdout_seed: int = 12345, level_by: str = "default",
                 misconception: str = "none", misconception_p: float = 0.0):
        if op not in ("+", "*"):
            raise ValueError(f"op must be '+' or '*', not {op!r}")
        if mod < 0:
            raise ValueError("mod must be >= 0 (0 = the full result)")
        if level_by not in ("default", "last_digits") or (level_by == "last_digits" and op != "*"):
            raise ValueError(f"level_by must be 'default' or (op '*' only) 'last_digits', not {level_by!r}")
        if misconception not in MISCONCEPTIONS or not 0 <= misconception_p <= 1:
            raise ValueError(f"misconception must be one of {sorted(MISCONCEPTIONS)} and misconception_p in [0, 1], "
                             f"not {misconception!r}, {misconception_p!r}")
        if misconception != "none" and (op != "*" or mod != 10):
            raise ValueError("a misconception needs op '*' and mod 10 (its rules are about a product's last digit)")
        self.op, self.mod, self.level_by = op, mod, level_by
        self.misconception, self.misconception_p = misconception, misconception_p
        self.operands = [operands] if isinstance(operands, int) else list(operands)
        self.digits = [digits] if isinstance(digits, int) else list(digits)
        self.by_digits = len(self.operands) == 1 and len(self.digits) > 1
        self._hold_out(holdout, holdout_seed)

    def _problem(self, rng: random.Random) -> Problem:
        k, d = rng.choice(self.operands), rng.choice(self.digits)
        lo = 10 ** (d - 1) if d > 1 else 0
        xs = [rng.randrange(lo, 10 ** d) for _ in range(k)]
        value = sum(xs) if self.op == "+" else _product(xs)
        answer = str(value % self.mod if self.mod else value)
        level = d if self.by_digits else k
        if self.level_by == "last_digits":
            last = {x % 10 for x in xs}
            level = 1 if last & {0, 1} else (2 if 5 in last else 3)
        return Problem(self.op.join(map(str, xs)) + "=", answer, level)

    def solution(self, problem: Problem, rng: random.Random | None = None, noise: float = 0.0) -> str:
        """The answer; with a misconception, its rule's answer with probability misconception_p; otherwise, with
        noise, a uniformly drawn wrong answer of the same length with that probability."""
        if rng is not None and self.misconception_p > 0 and rng.random() < self.misconception_p:
            return MISCONCEPTIONS[self.misconception](problem)
        if rng is not None and noise > 0 and rng.random() < noise:
            n = len(problem.answer)
            wrong = [str(v) for v in range(10 ** n) if str(v) != problem.answer and len(str(v)) == n]
            return rng.choice(wrong or [problem.answer + "0"])
        return problem.answer

    @staticmethod
    def reward(response: str, problem: Problem, finished: bool = True) -> float:
        """1.0 when the response ends (EOS) and is exactly the answer."""
        return float(finished and response == problem.answer)


def _product(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def _operands(problem: Problem) -> list[int]:
    return [int(x) for x in problem.prompt.rstrip("=").split("*")]


MISCONCEPTIONS = {
    "none": lambda p: p.answer,
    "copy_b": lambda p: str(_operands(p)[-1] % 10),
    "ab_plus_a": lambda p: str((_product(_operands(p)) + _operands(p)[0]) % 10),
    "b_tens": lambda p: str(_operands(p)[-1] // 10 % 10),  # a control: reads a digit the answer never depends on
}
