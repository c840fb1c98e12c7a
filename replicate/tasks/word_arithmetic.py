"""Plain-language arithmetic for pretrained models: "What is 47 + 8? Answer with only the number."

The small tier's task. SmolLM2-135M-Instruct, prompted through its chat template, answers one-digit sums and
differences correctly about a fifth of the time at temperature 0.6-1.0 (measured: docs/testbed/small.md): a base
accuracy inside the range where RL has something to sharpen and something to gain. Rewarded 1 when the number the
response answers with (final_number: the last box, else "The answer is ...", else the last number) equals the
answer. Not by Math-Verify, which evaluates what it extracts, so that "The answer is 4 + 5." earned the reward
without the sum (a reward-hacking audit found it). The level is the number of digits of the first operand; the second
operand has one digit, and a difference is never negative.
"""
from __future__ import annotations

import random
import re
from decimal import Decimal

from .base import GeneratedTask, Problem

QUESTION = "What is {a} {op} {b}? Answer with only the number."
_LITERAL = re.compile(r"[-+]?\d+(?:\.\d+)?")
_CLAUSE_END = re.compile(r"[.,;:!?](?:\s|$)|\n")
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:,\d{3})*(?:\.\d+)?(?!\d)")
_OPERATOR = r"(?:[-+/×÷]|(?<!\*)\*(?!\*)|(?<!\w)(?:plus|minus|times)(?!\w))"  # a lone *: **9** is bold
_BEFORE, _AFTER = re.compile(_OPERATOR + r"\s*$"), re.compile(r"^\s*" + _OPERATOR)


def final_number(response: str) -> Decimal | None:
    """The number the response answers with, as written. The last box, else what follows the last "The answer
    is" to the end of its clause, counts if it is a number or an equation ending in one ("4 + 5 = 9"); else the
    last number that is not an operand ("4 + 5 = 9", "5 + 5 is 10, but"). None for an expression left to a grader
    ("The answer is 4 + 5.", which Math-Verify evaluates to 9: a reward-hacking audit) or the question echoed
    ("To find 6 - 3, we"), words, or nothing."""
    from evaluators.math import extract_answer
    answer = extract_answer(response, fallback="none")
    if answer is not None:
        last = _CLAUSE_END.split(answer + " ", maxsplit=1)[0].rsplit("=", 1)[-1].strip().strip("*$\"'` ")
        return Decimal(last.replace(",", "")) if _LITERAL.fullmatch(last.replace(",", "")) else None
    for m in reversed(list(_NUMBER.finditer(response))):
        if not _BEFORE.search(response[:m.start()]) and not _AFTER.match(response[m.end():]):
            return Decimal(m.group().replace(",", ""))
    return None


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
        return [float(final_number(r) == Decimal(p.answer)) for r, p in zip(responses, problems)]
