"""Plain-language arithmetic for pretrained models: "What is 47 + 8? Answer with only the number."

The small tier's task. SmolLM2-135M-Instruct, prompted through its chat template, answers one-digit sums and
differences correctly about a fifth of the time at temperature 0.6-1.0 (measured: docs/testbed/small.md): a base
accuracy inside the range where RL has something to sharpen and something to gain. Rewarded by evaluators.math
(Math-Verify, with the last number of the response as the fallback answer) when the final answer is written as a
number: Math-Verify evaluates what it extracts, so "The answer is 4 + 5." would otherwise earn the reward without
the sum (a reward-hacking audit found it). The level is the number of digits of the first operand; the second
operand has one digit, and a difference is never negative.
"""
from __future__ import annotations

import random
import re

from .base import GeneratedTask, Problem

QUESTION = "What is {a} {op} {b}? Answer with only the number."
_LITERAL = re.compile(r"[-+]?\d+(?:\.\d+)?")


def worked_out(response: str) -> bool:
    """Whether the response's final answer (evaluators.math.extract_answer) is a number as written, or an equation
    whose last side is one ("4 + 5 = 9"): not an expression left for the grader to evaluate ("4 + 5", "8 9")."""
    from evaluators.math import extract_answer
    answer = extract_answer(response)
    if answer is None:
        return False
    last = answer.rsplit("=", 1)[-1].replace("*", "").strip().strip("$").strip()
    return _LITERAL.fullmatch(re.sub(r"\.$", "", last)) is not None


class WordArithmeticTask(GeneratedTask):
    alphabet = None  # pretrained tokenizers only

    def __init__(self, ops: list[str] | str = "+-", digits: list[int] | int = 1, holdout: int = 64,
                 holdout_seed: int = 12345, question: str = QUESTION):
        self.ops = list(ops)
        if not self.ops or set(self.ops) - {"+", "-"}:
            raise ValueError(f"ops must be made of '+' and '-', not {ops!r}")
        self.digits = [digits] if isinstance(digits, int) else list(digits)
        if not self.digits or min(self.digits) < 1 or max(self.digits) > 3:
            raise ValueError(f"digits must be between 1 and 3, not {digits!r}")
        if "{a}" not in question or "{b}" not in question or "{op}" not in question:
            raise ValueError("question must contain {a}, {op} and {b}")
        self.question = question
        distinct = len({self._operands(a, op, b) for d in self.digits for op in self.ops for b in range(10)
                        for a in range(0 if d == 1 else 10 ** (d - 1), 10 ** d)})
        if holdout > distinct // 2:
            raise ValueError(f"holdout {holdout} leaves too few training problems ({distinct} exist); "
                             f"use at most {distinct // 2}")
        self._hold_out(holdout, holdout_seed, distinct=True)

    def _problem(self, rng: random.Random) -> Problem:
        d, op = rng.choice(self.digits), rng.choice(self.ops)
        a, op, b = self._operands(rng.randrange(0 if d == 1 else 10 ** (d - 1), 10 ** d), op, rng.randrange(10))
        value = a + b if op == "+" else a - b
        return Problem(self.question.format(a=a, op=op, b=b), str(value), d)

    @staticmethod
    def _operands(a: int, op: str, b: int) -> tuple[int, str, int]:
        """A difference is never negative: the larger operand goes first."""
        return (b, op, a) if op == "-" and b > a else (a, op, b)

    @staticmethod
    def reward_batch(responses: list[str], problems: list[Problem], finished: list[bool]) -> list[float]:
        from evaluators.math import score_batch
        scores = score_batch(responses, [p.answer for p in problems])
        return [s if s and worked_out(r) else 0.0 for s, r in zip(scores, responses)]
