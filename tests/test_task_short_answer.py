"""Short-answer arithmetic (the fig1 testbed candidate): verifier, solutions, levels, held-out validation."""
import random

import pytest

from replicate.tasks import TASKS, Problem, ShortAnswerTask, make_task


def test_registered():
    assert TASKS["short_answer"] is ShortAnswerTask
    assert isinstance(make_task("short_answer", op="*", operands=[2], digits=2), ShortAnswerTask)


def test_reward_on_known_answers():
    p = Problem("47*38=", "6", 2)
    assert ShortAnswerTask.reward("6", p) == 1.0
    for bad in ("5", "66", "06", "1786", " 6", "", "6="):
        assert ShortAnswerTask.reward(bad, p) == 0.0, bad
    assert ShortAnswerTask.reward("6", p, finished=False) == 0.0


@pytest.mark.parametrize("params, prompt, answer", [
    ({"op": "*", "operands": [2], "digits": 2, "mod": 10}, "47*38=", "6"),
    ({"op": "+", "operands": [3], "digits": 1, "mod": 10}, "3+7+5=", "5"),
    ({"op": "+", "operands": [2], "digits": 2, "mod": 0}, "47+38=", "85"),
    ({"op": "*", "operands": [2], "digits": 2, "mod": 100}, "47*38=", "86"),
])
def test_answers_are_computed(params, prompt, answer):
    task = ShortAnswerTask(**params, holdout=8)
    rng = random.Random(3)
    for p in task.sample(300, rng):
        xs = list(map(int, p.prompt[:-1].split(params["op"])))
        v = sum(xs) if params["op"] == "+" else xs[0] * xs[1] * (xs[2] if len(xs) > 2 else 1)
        assert p.answer == str(v % params["mod"] if params["mod"] else v)
    xs = list(map(int, prompt[:-1].split(params["op"])))
    v = sum(xs) if params["op"] == "+" else xs[0] * xs[1] * (xs[2] if len(xs) > 2 else 1)
    assert str(v % params["mod"] if params["mod"] else v) == answer


def test_solutions_score_and_noise_is_wrong():
    task = ShortAnswerTask(op="*", operands=[2], digits=2, mod=10, holdout=16)
    rng = random.Random(0)
    probs = task.sample(500, rng)
    assert all(task.reward(task.solution(p), p) == 1.0 for p in probs)
    noisy = [task.reward(task.solution(p, rng, 0.7), p) for p in probs]
    assert 0.2 < sum(noisy) / len(noisy) < 0.4
    assert all(task.reward(task.solution(p, rng, 1.0), p) == 0.0 for p in probs)
    assert all(len(task.solution(p, rng, 1.0)) == len(p.answer) for p in probs)


def test_levels():
    by_ops = ShortAnswerTask(op="+", operands=[2, 3, 4], digits=1, holdout=16)
    probs = by_ops.sample(300, random.Random(1))
    assert {p.level for p in probs} == {2, 3, 4}
    assert all(p.prompt.count("+") + 1 == p.level for p in probs)
    by_digits = ShortAnswerTask(op="+", operands=[2], digits=[2, 3], mod=0, holdout=16)
    probs = by_digits.sample(300, random.Random(1))
    assert {p.level for p in probs} == {2, 3}
    assert all(len(p.prompt.split("+")[0]) == p.level for p in probs)


def test_validation_held_out_and_fixed():
    task = ShortAnswerTask(op="*", operands=[2], digits=2, holdout=256)
    held = {p.prompt for p in task.validation}
    assert len(task.validation) == 256
    assert not held & {p.prompt for p in task.sample(2000, random.Random(2))}
    again = ShortAnswerTask(op="*", operands=[2], digits=2, holdout=256)
    assert [p.prompt for p in again.validation] == [p.prompt for p in task.validation]


def test_bad_params():
    with pytest.raises(ValueError):
        ShortAnswerTask(op="-")
    with pytest.raises(ValueError):
        ShortAnswerTask(mod=-1)
