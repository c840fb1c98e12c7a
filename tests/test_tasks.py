"""Synthetic tasks: solutions earn the reward, wrong or hostile responses do not, levels are as asked."""
import random

import pytest

from replicate.tasks import AdditionTask, CountdownTask, Problem
from replicate.tasks.countdown import evaluate_expression


def test_addition_solutions_and_noise():
    task = AdditionTask(digits=[2, 3], holdout=20)
    rng = random.Random(0)
    probs = task.sample(200, rng)
    assert {p.level for p in probs} == {2, 3}
    assert not {p.prompt for p in probs} & {p.prompt for p in task.validation}
    assert all(task.reward(task.solution(p), p) == 1.0 for p in probs)
    assert task.solution(Problem("47+38=", "85", 2)) == "15,8>85"
    noisy = [task.reward(task.solution(p, rng, 0.5), p) for p in probs]
    assert 0.1 < sum(noisy) / len(noisy) < 0.6
    assert task.reward("15,8>85", Problem("47+38=", "85", 2), finished=False) == 0.0


def test_countdown_rewards_any_correct_expression():
    p = Problem("3,5,7|22=", "22", 3)
    for good in ("3*5+7", "7+5*3", "(5*3)+7", " 7+3*5 "):
        assert CountdownTask.reward(good, p) == 1.0, good
    for bad in ("3*5+8", "3*5*7", "22", "3*5", "3*5+7+0", "7+15", "3*5+7)", ""):
        assert CountdownTask.reward(bad, p) == 0.0, bad
    assert CountdownTask.reward("3*5+7", p, finished=False) == 0.0


@pytest.mark.parametrize("hostile", ["__import__('os')", "3**5**7", "9" * 80, "(" * 200 + "1" + ")" * 200,
                                     "3/5+7", "lambda: 1", "[3,5,7]", "3 if 1 else 5"])
def test_countdown_never_evaluates_code(hostile):
    assert evaluate_expression(hostile) is None


def test_countdown_problems_and_solutions():
    task = CountdownTask(operands=[2, 3, 4], holdout=16)
    rng = random.Random(1)
    probs = task.sample(300, rng)
    assert {p.level for p in probs} == {2, 3, 4}
    assert all(task.reward(task.solution(p), p) == 1.0 for p in probs)
    assert all(0 <= int(p.answer) <= 999 for p in probs)
    noisy = [task.reward(task.solution(p, rng, 1.0), p) for p in probs]
    assert sum(noisy) / len(noisy) < 0.5


def test_countdown_trains_in_the_core(tmp_path, warm_store):
    from replicate.specs import RunConfig
    from replicate.store import Run
    from replicate.runners.rl.trainer import train
    cfg = RunConfig.model_validate({
        "model": {"kind": "tiny", "config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
                                             "num_hidden_layers": 1, "num_attention_heads": 2,
                                             "num_key_value_heads": 1, "max_position_embeddings": 64}},
        "task": {"name": "countdown", "params": {"operands": [2], "holdout": 16}},
        "warmup": {"steps": 150, "batch_size": 32, "lr": 5e-3, "noise": 0.2},
        "rollout": {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 10},
        "train": {"steps": 3, "ppo_mini_batches": 2}, "eval": {"every": 2, "n_prompts": 16}})
    rows = train(Run(tmp_path / "r"), cfg, 0, warm_store, log=lambda *_: None)
    assert len(rows) == 3 and any(r["grad_norm"] > 0 for r in rows)
    # step 0's validation, recomputed independently on the base policy with the run's own eval generator
    from replicate.seeds import derive_seed
    from replicate.runners.rl.rollout import avg_at_k, make_generator
    from replicate.tasks import make_task
    from replicate.runners.rl.warmup import base_policy
    model, tok = base_policy(cfg, warm_store, 0, log=lambda *_: None)
    task = make_task("countdown", operands=[2], holdout=16)
    acc = avg_at_k(model.eval(), tok, task, task.validation[:cfg.eval.n_prompts], cfg.eval.k, cfg.eval.temperature,
                   cfg.rollout.max_new_tokens, make_generator(derive_seed(0, "eval", 0), "cpu"))
    assert rows[0]["val_acc"] == acc
