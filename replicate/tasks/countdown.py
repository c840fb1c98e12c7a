"""Countdown: combine the given numbers, each exactly once, with + - * and parentheses to reach a target.

Prompt "3,5,7|22=", a response "3*5+7". Any correct expression earns the reward: it is parsed with `ast` (never
evaluated as code): only integers, + - * and parentheses are allowed. The difficulty level is the number of
operands.
"""
from __future__ import annotations

import ast
import random

from .base import GeneratedTask, Problem

OPS = "+-*"
MAX_LEN = 64


def _value(node) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        a, b = _value(node.left), _value(node.right)
        return a + b if isinstance(node.op, ast.Add) else a - b if isinstance(node.op, ast.Sub) else a * b
    raise ValueError("only integers, + - * and parentheses are allowed")


def evaluate_expression(text: str) -> tuple[int, list[int]] | None:
    """(value, the integers used) of an expression of + - * and parentheses, or None if it is anything else."""
    if not text or len(text) > MAX_LEN or set(text) - set("0123456789+-*() "):
        return None
    try:
        tree = ast.parse(text, mode="eval").body
        value = _value(tree)
    except (SyntaxError, ValueError, RecursionError):
        return None
    numbers = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    return value, numbers


class CountdownTask(GeneratedTask):
    alphabet = "0123456789+-*(),|="

    def __init__(self, operands: list[int] | int = 3, max_number: int = 9, holdout: int = 256,
                 holdout_seed: int = 12345):
        self.operands = [operands] if isinstance(operands, int) else list(operands)
        self.max_number = max_number
        self._solutions: dict[str, str] = {}  # prompt -> the expression it was made from (for the warm-up)
        self._hold_out(holdout, holdout_seed)

    def _draw(self, rng: random.Random) -> tuple[Problem, str]:
        while True:
            n = rng.choice(self.operands)
            nums = [rng.randint(1, self.max_number) for _ in range(n)]
            order = rng.sample(nums, n)
            expr = str(order[0])
            for x in order[1:]:
                expr += rng.choice(OPS) + str(x)
            value = evaluate_expression(expr)[0]
            if 0 <= value <= 999:
                prompt = ",".join(map(str, sorted(nums))) + f"|{value}="
                return Problem(prompt, str(value), n), expr

    def _problem(self, rng: random.Random) -> Problem:
        problem, self._last_expr = self._draw(rng)
        return problem

    def _kept(self, problem: Problem) -> None:
        self._solutions[problem.prompt] = self._last_expr

    def solution(self, problem: Problem, rng: random.Random | None = None, noise: float = 0.0) -> str:
        """The expression the problem was made from; with noise, one operator is swapped (usually wrong)."""
        expr = self._solutions[problem.prompt]
        if rng is not None and noise > 0 and rng.random() < noise:
            spots = [i for i, c in enumerate(expr) if c in OPS]
            if spots:
                i = rng.choice(spots)
                expr = expr[:i] + rng.choice([o for o in OPS if o != expr[i]]) + expr[i + 1:]
        return expr

    @staticmethod
    def reward(response: str, problem: Problem, finished: bool = True) -> float:
        """1.0 if the response uses exactly the given numbers, each once, and evaluates to the target."""
        if not finished:
            return 0.0
        result = evaluate_expression(response.strip())
        if result is None:
            return 0.0
        value, used = result
        given = sorted(int(x) for x in problem.prompt.split("|")[0].split(","))
        return float(value == int(problem.answer) and sorted(used) == given)
