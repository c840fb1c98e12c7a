"""addition_mix (testbed 3): two clean solution strategies, scratchpad "15,8>85" or direct ">85"."""
import random

import pytest

from replicate.tasks import TASKS, AdditionMixTask, Problem, make_task


def test_registered():
    assert TASKS["addition_mix"] is AdditionMixTask
    task = make_task("addition_mix", digits=[2], holdout=16, direct=0.7)
    assert isinstance(task, AdditionMixTask) and task.direct == 0.7


def test_both_strategies_are_correct_and_clean():
    p = Problem("47+38=", "85", 2)
    assert AdditionMixTask.reward("15,8>85", p) == 1.0
    assert AdditionMixTask.reward(">85", p) == 1.0
    for bad in (">84", "15,8>84", "85", "", ">85>1"):
        assert AdditionMixTask.reward(bad, p) == 0.0, bad
    assert AdditionMixTask.reward(">85", p, finished=False) == 0.0
    task = AdditionMixTask(digits=[2, 3], holdout=16, direct=0.5)
    rng = random.Random(0)
    for q in task.sample(500, rng):
        s = task.solution(q, rng, 0.0)
        assert task.reward(s, q) == 1.0, (q, s)


@pytest.mark.parametrize("direct", [0.0, 0.3, 0.7, 1.0])
def test_direct_share(direct):
    task = AdditionMixTask(digits=[2], holdout=16, direct=direct)
    rng = random.Random(1)
    sols = [task.solution(q, rng) for q in task.sample(2000, rng)]
    share = sum(s.startswith(">") for s in sols) / len(sols)
    assert abs(share - direct) < 0.04
    assert all(s.startswith(">") or "," in s for s in sols)


def test_without_rng_is_the_scratchpad():
    task = AdditionMixTask(digits=[2], holdout=16, direct=1.0)
    assert task.solution(Problem("47+38=", "85", 2)) == "15,8>85"


def test_validation_held_out_and_fixed():
    task = AdditionMixTask(digits=[2], holdout=256, direct=0.5)
    held = {p.prompt for p in task.validation}
    assert len(task.validation) == 256
    assert not held & {p.prompt for p in task.sample(2000, random.Random(2))}
    assert [p.prompt for p in AdditionMixTask(digits=[2], holdout=256).validation] == [p.prompt for p in task.validation]
