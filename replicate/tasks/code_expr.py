"""Code-like task: write the body of a Python function f(x, y) from one input-output example, judged by running it.

Prompt "f(47,8)=39;f(x,y)=", gold program "x-y": the hidden function is x+y, x-y or x*y (x in 10..99, y in 1..9),
and the example shows it on one pair. The response is a Python expression in x and y, scored by executing it in
the code sandbox of `evaluators.code` on the example and on hidden tests (pairs where the three operations all
differ), so any program computing the same function passes ("y+x" too) and a program matching only the example
fails. Telling + from - needs the last digit of the sum or difference (a lookup, as fig1's product digit) and *
mostly shows in the size of the result: a tiny model gets part of it, the rest is left for RL. Where the example
cannot tell the operations apart the answer is a guess: an accuracy ceiling below 1, as fig1's.

One sandbox start scores a whole batch: every distinct response becomes a one-function program called once per test
input, the values come back as data and are compared here. A response with any name, call or attribute runs in its
own fresh process in the jail, so it cannot touch another's result; pure arithmetic in x and y shares one process
(it can reach nothing), and is re-run one by one if that process fails as a whole. A response that raises, hangs or
kills the jail scores 0 alone. A response that is not one expression (checked
with `ast`, which parses and runs nothing) scores 0 without running. Warm-up noise replaces the gold operation by
another (as short_answer's noise, on the answer's one hard token).
"""
from __future__ import annotations

import ast
import random

from .base import GeneratedTask, Problem

OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
HIDDEN_TESTS = ((2, 3), (7, 5), (4, 9))  # every pair tells the three operations apart


class CodeExprTask(GeneratedTask):
    alphabet = "0123456789xy+-*(),=;f"

    def __init__(self, holdout: int = 256, holdout_seed: int = 12345, timeout_s: float = 1.0):
        self.timeout_s = timeout_s
        self._hold_out(holdout, holdout_seed)

    def _problem(self, rng: random.Random) -> Problem:
        return self._program(rng.choice("+-*"), rng.randint(10, 99), rng.randint(1, 9))

    @staticmethod
    def _program(op: str, x: int, y: int) -> Problem:
        return Problem(f"f({x},{y})={OPS[op](x, y)};f(x,y)=", f"x{op}y", 1 + "+-*".index(op))

    @staticmethod
    def solution(problem: Problem, rng: random.Random | None = None, noise: float = 0.0) -> str:
        """The gold program; with noise, the program of another operation with that probability."""
        if rng is not None and noise > 0 and rng.random() < noise:
            return f"x{rng.choice([op for op in '+-*' if op != problem.answer[1]])}y"
        return problem.answer

    def reward(self, response: str, problem: Problem, finished: bool = True) -> float:
        return self.reward_batch([response], [problem], [finished])[0]

    def reward_batch(self, responses, problems, finished) -> list[float]:
        """1.0 where the response ends (EOS) and, run in the sandbox, equals the gold function on every test."""
        values = run_expressions([(r, inputs_of(p)) for r, p, f in zip(responses, problems, finished) if f], self.timeout_s)
        return [float(bool(f) and values.get((r, inputs_of(p))) == expected(p))
                for r, p, f in zip(responses, problems, finished)]


def inputs_of(problem: Problem) -> tuple:
    """The inputs a response is run on: the example's pair, then the hidden pairs."""
    x, y = problem.prompt[2:problem.prompt.index(")")].split(",")
    return ((int(x), int(y)), *HIDDEN_TESTS)


def expected(problem: Problem) -> list[int]:
    """The gold function's values on the tests (computed here from the gold operation, not by running)."""
    return [OPS[problem.answer[1]](x, y) for x, y in inputs_of(problem)]


def is_expression(text: str) -> bool:
    """Whether `text` parses as one Python expression (parsing only: nothing runs)."""
    try:
        ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    return bool(text.strip())


ARITHMETIC = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.operator, ast.unaryop)


def is_arithmetic(text: str) -> bool:
    """Whether `text` is only integers, x, y and arithmetic operators: no name, call or attribute, so it can
    touch nothing but its own values (it may still be slow or huge, e.g. 9**9**9)."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    return all(isinstance(n, ARITHMETIC) and (not isinstance(n, ast.Name) or n.id in ("x", "y"))
               and (not isinstance(n, ast.Constant) or type(n.value) is int) for n in ast.walk(tree))


def run_expressions(items, timeout_s: float = 1.0) -> dict:
    """{(expression, inputs): [its values on the inputs] or None} for each distinct (expression, inputs), each
    expression a function f(x, y). Any expression with a name, call or attribute runs in a process of its own
    (one sandbox start for the batch, `timeout_s` each), so it can touch no other response's result. Pure
    arithmetic ones (is_arithmetic: nothing to reach but their own values) share one process, as a speed-up;
    if that process fails as a whole (one of them too slow or too big), each is run again in its own."""
    items = sorted({(e, inputs) for e, inputs in items if is_expression(e)})
    if not items:
        return {}
    names = {e: f"c{i}" for i, e in enumerate(sorted({e for e, _ in items}))}
    programs = {name: f"def {name}(x, y):\n    return ({e})\n" for e, name in names.items()}
    pure = [it for it in items if is_arithmetic(it[0])]
    rest = [it for it in items if not is_arithmetic(it[0])]
    out = {}
    if pure:
        shared = "".join(programs[names[e]] for e in sorted({e for e, _ in pure}))
        status, values = _call(shared, [(names[e], pair) for e, inputs in pure for pair in inputs], timeout_s)
        if status == "passed":
            out.update(_unpack(pure, values))
        else:
            rest += pure
    calls = [(names[e], pair) for e, inputs in rest for pair in inputs]
    out.update(_unpack(rest, _call({names[e]: programs[names[e]] for e, _ in rest}, calls, timeout_s)[1]))
    return out


def _call(programs, calls, timeout_s):
    from evaluators.code import call_in_sandbox
    if not calls:
        return "passed", []
    status, values = call_in_sandbox(programs, calls, timeout_s=timeout_s)
    if status.startswith("error"):
        from ..errors import UserError
        raise UserError(f"code_expr cannot score responses: the code sandbox refused ({status[7:]})")
    return status, values


def _unpack(items, values) -> dict:
    out, at = {}, 0
    for e, inputs in items:
        got = values[at:at + len(inputs)]
        out[(e, inputs)] = None if None in got else got
        at += len(inputs)
    return out
