"""The code-like task: programs are judged by running them in the sandbox, a batch in one sandbox start."""
import random
import time

import pytest

from evaluators.code import bwrap_available, call_in_sandbox
from replicate.tasks import make_task
from replicate.tasks.code_expr import expected, inputs_of, is_expression, run_expressions

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="the code sandbox needs bubblewrap")


def test_problems_and_gold_programs():
    task = make_task("code_expr", holdout=32)
    p = task.validation[0]
    x, y = inputs_of(p)[0]
    assert p.prompt == f"f({x},{y})={expected(p)[0]};f(x,y)=" and p.answer in ("x+y", "x-y", "x*y")
    assert not {q.prompt for q in task.sample(200, random.Random(0))} & {q.prompt for q in task.validation}
    rng = random.Random(1)
    noisy = [task.solution(p, rng, noise=0.5) for _ in range(200)]
    assert 0.35 < sum(s != p.answer for s in noisy) / 200 < 0.65 and set(noisy) <= {"x+y", "x-y", "x*y"}


def test_equivalent_programs_pass_and_others_fail():
    task = make_task("code_expr", holdout=8)
    p = next(q for q in task.validation if q.answer == "x-y")
    responses = ["x-y", "(x)-(y)", "-y+x", "y-x", "x+y", "x", "x-", "f(x,y)", "x-y"]
    finished = [True] * 8 + [False]
    assert task.reward_batch(responses, [p] * 9, finished) == [1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_a_program_matching_only_the_example_fails():
    task = make_task("code_expr", holdout=8)
    p = task.validation[0]
    x, y = inputs_of(p)[0]
    assert task.reward(str(expected(p)[0]), p) == 0.0  # the example's value as a constant
    assert task.reward(f"{expected(p)[0]}+0*x*y", p) == 0.0


def test_parsing_runs_nothing():
    assert is_expression("x*y") and not is_expression("x*") and not is_expression("") and not is_expression("a=1")


def test_one_runaway_candidate_does_not_sink_the_batch():
    items = [("x+y", ((1, 2),)), ("9**9**9**9", ((1, 2),)), ("x*y", ((3, 4),))]
    t0 = time.monotonic()
    out = run_expressions(items, timeout_s=2.0)
    assert out[("x+y", ((1, 2),))] == [3] and out[("x*y", ((3, 4),))] == [12]
    assert out[("9**9**9**9", ((1, 2),))] is None
    assert time.monotonic() - t0 < 15


def test_call_in_sandbox_returns_values_and_none_for_raising_calls():
    status, values = call_in_sandbox("def f(x):\n    return 10 // x\n", [("f", (2,)), ("f", (0,)), ("g", (1,))])
    assert status == "passed" and values == [5, None, None]
    status, values = call_in_sandbox("def f(x) return x\n", [("f", (1,))])
    assert status.startswith("failed") and values == [None]


def test_only_pure_arithmetic_shares_a_process():
    from replicate.tasks.code_expr import is_arithmetic
    assert is_arithmetic("x*y") and is_arithmetic("-(x+3)**2//y") and is_arithmetic("9**9**9**9")
    for text in ("f(x,y)", "x.real", "z", "x if y else 1", "[x][0]", "'a'*x", "1.5*x", "__import__('os')", "(x:=1)"):
        assert not is_arithmetic(text), text


def test_a_runaway_arithmetic_response_costs_only_itself():
    items = [("x+y", ((1, 2),)), ("9**9**9**9", ((1, 2),)), ("x*y", ((3, 4),)), ("x-y", ((3, 4),))]
    out = run_expressions(items, timeout_s=1.0)
    assert out == {("x+y", ((1, 2),)): [3], ("9**9**9**9", ((1, 2),)): None, ("x*y", ((3, 4),)): [12],
                   ("x-y", ((3, 4),)): [-1]}
