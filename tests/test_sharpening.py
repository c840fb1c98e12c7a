"""The sharpening null: the base policy at several temperatures (trainer) and the analysis that reads it."""
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from replicate.analysis import ANALYSES
from replicate.analysis.sharpening import base_curve, sharpened_accuracy, sharpening_values
from replicate.runners.rl.models import char_tokenizer, tiny_model
from replicate.runners.rl.rollout import avg_at_k, make_generator
from replicate.runners.rl.sharpening import base_temperature_metrics, temperature_key
from replicate.tasks import make_task
from replicate.tasks.short_answer import MISCONCEPTIONS
from replicate.tasks.base import Problem


def _first_row(acc: dict, ent: dict, t_ro=1.0, t_ev=0.5) -> dict:
    row = {"step": 0, "base_rollout_temperature": t_ro, "base_eval_temperature": t_ev}
    for t in acc:
        row[f"base_acc_{temperature_key(t)}"], row[f"base_entropy_{temperature_key(t)}"] = acc[t], ent[t]
    return row


def _run(first: dict, h, r, every=5):
    """Metrics rows with an eval every `every` steps (entropy h[i], val_acc r[i]) and the base row at step 0."""
    rows = []
    for i, (hi, ri) in enumerate(zip(h, r)):
        rows.append({**(first if i == 0 else {}), "step": i * every, "entropy": hi, "val_acc": ri})
    return rows


def test_known_values():
    """Base acc(T) = 0.3 - 0.1·T and H(T) = T: at rollout entropy h and eval T 0.5 the sharpened base scores
    0.3 - 0.05·h; RL sits 0.1 above it everywhere, so law_gain = 0.1 exactly."""
    temps = [1.0, 0.5, 0.0]
    first = _first_row({t: 0.3 - 0.1 * t for t in temps}, {t: t for t in temps})
    h = np.linspace(1.0, 0.1, 10)
    r = 0.3 - 0.05 * h + 0.1
    out = sharpening_values(_run(first, h, r))
    assert out["base_greedy_acc"] == pytest.approx(0.3)
    assert out["base_best_acc"] == pytest.approx(0.3)
    assert out["rl_gain_over_sharpening"] == pytest.approx(np.mean(r[-3:]) - 0.3)
    assert out["law_gain_over_sharpening"] == pytest.approx(0.1)


def test_a_run_that_only_sharpens_gains_nothing():
    """RL points that are the base at a lower temperature: both gains are 0 (up to interpolation on a grid)."""
    temps = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    acc, ent = 0.5 - 0.3 * temps ** 2, 1.2 * temps ** 1.5   # smooth, monotone curves
    first = _first_row(dict(zip(temps, acc)), dict(zip(temps, ent)), t_ro=1.0, t_ev=1.0)
    tau = np.array([1.0, 0.8, 0.6, 0.6, 0.4, 0.4, 0.2, 0.0, 0.0, 0.0])   # on the grid: exact
    out = sharpening_values(_run(first, 1.2 * tau ** 1.5, 0.5 - 0.3 * tau ** 2))
    assert out["law_gain_over_sharpening"] == pytest.approx(0.0, abs=1e-12)
    assert out["rl_gain_over_sharpening"] == pytest.approx(0.0, abs=1e-12)


def test_best_is_the_max_over_temperatures_and_no_base_row_is_nan():
    first = _first_row({1.0: 0.2, 0.6: 0.45, 0.0: 0.3}, {1.0: 1.0, 0.6: 0.6, 0.0: 0.0})
    out = sharpening_values(_run(first, [1.0, 0.8, 0.6, 0.5], [0.2, 0.4, 0.5, 0.6]))
    assert out["base_best_acc"] == 0.45 and out["base_greedy_acc"] == 0.3
    assert out["rl_gain_over_sharpening"] == pytest.approx(0.5 - 0.45)
    assert all(math.isnan(v) for v in sharpening_values(_run({}, [1.0, 0.5, 0.2], [0.1, 0.2, 0.3])).values())


def test_analysis_registered_and_base_curves_pooled():
    first = _first_row({1.0: 0.2, 0.0: 0.3}, {1.0: 1.0, 0.0: 0.0})
    out = ANALYSES["sharpening"]({"main": {0: _run(first, [1.0, 0.8, 0.6, 0.5], [0.2, 0.4, 0.5, 0.6])}})
    assert out["per_seed"]["base_best_acc"]["main"] == [0.3]
    h, r = out["pooled"]["main"]["sharpened_curves"][0]  # τ from 0 to 1: H = τ·1, acc at τ·0.5 = 0.3 - 0.05·τ
    assert h[0] == 0.0 and h[-1] == 1.0 and r[0] == pytest.approx(0.3) and r[-1] == pytest.approx(0.25)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.1, 1.0), st.floats(0.1, 1.0))
def test_sharpened_accuracy_stays_within_the_base_curve(h, t_ro, t_ev):
    temps, acc = np.array([0.0, 0.2, 0.6, 1.0]), np.array([0.4, 0.35, 0.3, 0.1])
    ent = np.array([0.0, 0.2, 0.5, 0.9])
    val = float(sharpened_accuracy(h, temps, acc, ent, t_ro, t_ev))
    assert acc.min() - 1e-12 <= val <= acc.max() + 1e-12


@pytest.fixture(scope="module")
def tiny_policy():
    task = make_task("short_answer", op="*", operands=[2], digits=2, mod=10, holdout=24)
    tok = char_tokenizer(task.alphabet)
    torch.manual_seed(0)
    model = tiny_model({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
                        "tie_word_embeddings": True}, tok, "float32").eval()
    tok.padding_side = "left"
    return model, tok, task


def test_base_metrics_greedy_matches_avg_at_k_and_entropy_falls_with_temperature(tiny_policy):
    model, tok, task = tiny_policy
    out = base_temperature_metrics(model, tok, task, task.validation, 2, [2.0, 1.0, 0.3, 0.0], 4, 0, "cpu", 1.0, 0.6)
    greedy = avg_at_k(model, tok, task, task.validation, 1, 0.0, 4, make_generator(1, "cpu"))
    assert out["base_acc_greedy"] == greedy and out["base_entropy_greedy"] == 0.0
    assert out["base_entropy_2"] > out["base_entropy_1"] > out["base_entropy_0.3"] > 0
    assert out["base_rollout_temperature"] == 1.0 and out["base_eval_temperature"] == 0.6
    again = base_temperature_metrics(model, tok, task, task.validation, 2, [2.0, 1.0, 0.3, 0.0], 4, 0, "cpu", 1.0, 0.6)
    assert again == out  # same seed, same numbers


def test_misconception_rules_and_label_shares():
    p = Problem("47*38=", "6", 3)
    assert MISCONCEPTIONS["copy_b"](p) == "8" and MISCONCEPTIONS["ab_plus_a"](p) == str((47 * 38 + 47) % 10)
    task = make_task("short_answer", op="*", operands=[2], digits=2, mod=10, misconception="copy_b",
                     misconception_p=0.6)
    rng = random.Random(0)
    probs = task.sample(4000, rng)
    sols = [task.solution(q, rng, 0.5) for q in probs]
    rule = [s == MISCONCEPTIONS["copy_b"](q) for s, q in zip(sols, probs)]
    right = [s == q.answer for s, q in zip(sols, probs)]
    agree = np.mean([MISCONCEPTIONS["copy_b"](q) == q.answer for q in probs])
    # P(right) = 0.6·agree + 0.4·0.5; the rule's label is drawn with probability 0.6 (plus chance agreements)
    assert np.mean(right) == pytest.approx(0.6 * agree + 0.2, abs=0.03)
    assert np.mean(rule) >= 0.6 - 0.03
    assert all(task.solution(q) == q.answer for q in probs[:50])  # no rng: the answer (validation, rewards)
    with pytest.raises(ValueError, match="misconception"):
        make_task("short_answer", op="+", misconception="copy_b", misconception_p=0.5)
    with pytest.raises(ValueError, match="misconception"):
        make_task("short_answer", op="*", misconception="nope")
