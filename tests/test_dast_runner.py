"""The preference runner end to end at toy size: rows with the analysis' metrics, pairs on real samples, and the
overthinking warm-up."""
import math
import random

import pytest

from replicate.analysis import ANALYSES
from replicate.algorithms.dast import build_pairs, score_problem
from replicate.runners.preference import arm_params, make_training_data, sample_cache
from replicate.specs import Spec
from replicate.tasks import make_task
from replicate.runners.rl.warmup import base_policy

TASK = {"name": "scratch_addition", "params": {"digits": [1, 2, 3], "max_checks": 2, "direct": 0.2,
                                               "holdout_per_level": 6}}


def toy_spec(warmup_steps=60):
    return Spec.model_validate({
        "id": "dast-toy", "paper": "dast", "reproduces": "toy", "runner": "preference",
        "runner_params": {"n_train": 10, "batch_size": 4, "easy_levels": [1], "hard_levels": [3], "delta": 0.15},
        "body": {"model": {"kind": "tiny", "config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
                                                      "num_hidden_layers": 2, "num_attention_heads": 2,
                                                      "num_key_value_heads": 1, "max_position_embeddings": 64}},
                 "task": TASK, "warmup": {"steps": warmup_steps, "batch_size": 16, "lr": 3e-3},
                 "rollout": {"group_size": 6, "temperature": 1.0, "max_new_tokens": 40},
                 "train": {"ppo_epochs": 1, "optimizer": {"lr": 1e-3}}, "seeds": [0]},
        "variants": [{"name": "base", "runner_params": {"method": "base"}},
                     {"name": "dast", "runner_params": {"method": "dast"}},
                     {"name": "simpo_shortest", "runner_params": {"method": "simpo_shortest"}},
                     {"name": "sft_shortest", "runner_params": {"method": "sft_shortest"}},
                     {"name": "length_penalty", "runner_params": {"method": "length_penalty"}}],
        "analyses": ["dast"]})


def test_runner_end_to_end_writes_declared_metrics(tmp_path):
    from replicate.experiment import plan
    from replicate.runners import RUNNERS
    spec = toy_spec()
    configs, seeds = plan(spec, "tiny", None, None)
    store_runs = RUNNERS["preference"].fn(spec, "tiny", configs, seeds, tmp_path, log=lambda *a: None)
    runs = {v: {s: run.metrics() for s, run in by_seed.items()} for v, by_seed in store_runs.items()}
    assert set(runs) == {"base", "dast", "simpo_shortest", "sft_shortest", "length_penalty"}
    rows = runs["dast"][0]
    assert {r["phase"] for r in rows} >= {"meta", "before", "pairs", "after"}
    assert [r["level"] for r in rows if r["phase"] == "after"] == [1, 2, 3]
    assert all({"acc", "tokens", "n"} <= set(r) for r in rows if r["phase"] in ("before", "after"))
    assert runs["base"][0][-1]["acc"] == next(r for r in rows if r["phase"] == "before" and r["level"] == 3)["acc"]
    res = ANALYSES["dast"](runs)  # raises on an undeclared metric
    for key in ("compression@dast", "acc_change_hard@dast", "compression_easy_minus_hard@dast",
                "acc_change_hard_vs_dast@simpo_shortest"):
        metric, _, arm = key.partition("@")
        assert len(res["per_seed"][metric][arm]) == 1
    assert res["per_seed"]["compression"]["base"] == [0.0]
    # a second call reuses the finished runs (same rows, nothing retrained)
    again = RUNNERS["preference"].fn(spec, "tiny", configs, seeds, tmp_path, log=lambda *a: None)
    assert again["dast"][0].path == store_runs["dast"][0].path and again["dast"][0].metrics() == rows


def test_pairs_on_real_samples_respect_the_rules(tmp_path):
    spec = toy_spec()
    config = spec.variant_configs("tiny")["dast"]
    problems, samples, _ = sample_cache(config, tmp_path, 0, 16, 40)
    assert all(len(g) == 6 for g in samples)
    groups = {i: score_problem(i, [(t, n, ok) for t, n, _, ok in g], 40) for i, g in enumerate(samples)}
    all_pairs = build_pairs(groups, 0.0)
    pairs, _ = make_training_data(problems, samples, arm_params(spec, "dast", "tiny"), 40)
    assert len(pairs) == len(all_pairs) - int(0.15 * len(all_pairs) + 1e-9) or len(pairs) <= len(all_pairs)
    per_problem = {}
    for p in pairs:
        per_problem[p.problem_id] = per_problem.get(p.problem_id, 0) + 1
        assert p.chosen.text != p.rejected.text and p.gap > 0
        assert p.chosen.correct == p.rejected.correct == (p.kind == "dual_correct")
        if p.kind == "dual_correct":
            assert p.chosen.length < p.rejected.length  # shorter correct wins
        else:
            assert p.chosen.length > p.rejected.length  # longer wrong wins (up to the budget)
    assert max(per_problem.values(), default=0) <= 2
    if all_pairs:
        kept_gaps = sorted(p.gap for p in pairs)
        dropped = sorted(p.gap for p in all_pairs)[:len(all_pairs) - len(pairs)]
        assert not dropped or not kept_gaps or max(dropped) <= min(kept_gaps)
    ablated, _ = make_training_data(problems, samples, {**arm_params(spec, "dast", "tiny"), "dual_incorrect": False}, 40)
    assert all(p.kind == "dual_correct" for p in ablated)


def test_solution_overthinks_on_every_level():
    task = make_task("scratch_addition", digits=[1, 2, 5], max_checks=2)
    rng = random.Random(0)
    for p in task.sample(30, rng):
        s = task.solution(p, rng)
        assert task.has_scratchpad(s) and task.reward(s, p) == 1.0
    direct = make_task("scratch_addition", direct=1.0)
    p = direct.sample(1, rng)[0]
    assert direct.solution(p, rng) == ">" + p.answer and direct.reward(">" + p.answer, p) == 1.0


@pytest.mark.slow
def test_overthinking_warmup_writes_scratchpads_on_every_level(tmp_path):
    """The spec's warm-up on its tuning seed (100) meets the rule it was chosen by (docs/testbed/dast.md): greedy
    decoding writes the scratchpad on >= 95% of answers on every level, even one-digit sums (~3 minutes)."""
    from replicate.runners.preference import evaluate_levels
    from replicate.specs import find_spec
    config = find_spec("dast-table1").variant_configs("tiny")["dast"]
    model, tok = base_policy(config, tmp_path, 100, log=lambda *a: None)
    rows = evaluate_levels(model, tok, make_task(config.task.name, **config.task.params), config.rollout.max_new_tokens)
    assert len(rows) == 5 and all(r["scratchpad"] >= 0.95 for r in rows), [(r["level"], r["scratchpad"]) for r in rows]


def test_seeds_in_two_processes_equal_one_process(tmp_path, monkeypatch):
    """Seeds train side by side in worker processes; the rows equal a one-process run's."""
    from replicate.experiment import plan
    from replicate.runners import RUNNERS
    spec = toy_spec(warmup_steps=20)
    spec.variants = spec.variants[:2]  # base, dast
    configs, _ = plan(spec, "tiny", None, None)
    seeds = [0, 1]
    rows = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("REPLICATE_WORKERS", workers)
        runs = RUNNERS["preference"].fn(spec, "tiny", configs, seeds, tmp_path / workers, log=lambda *a: None)
        rows[workers] = {(v, s): [{k: x for k, x in r.items() if k != "seconds"} for r in run.metrics()]
                         for v, by_seed in runs.items() for s, run in by_seed.items()}
    assert set(rows["2"]) == {(v, s) for v in ("base", "dast") for s in seeds}
    assert rows["1"] == rows["2"]


def test_length_penalty_pairs_do_not_depend_on_alpha():
    """Every reward gap of the length-penalty arm is α·ΔL/L_cap, so the widest pair per problem and the δ cut keep
    the same pairs for any α > 0, up to which of several pairs with the same ΔL falls at the cut (float rounding of
    1 - α·L/L_cap breaks those ties): the arm's strength is its lr (docs/testbed/dast.md, third round), not α."""
    rng = random.Random(3)
    samples = [[(f"r{i}-{j}", rng.randint(2, 72), True, rng.random() < 0.5) for j in range(8)] for i in range(40)]
    problems = list(range(40))
    pairs = {a: make_training_data(problems, samples, {"method": "length_penalty", "alpha": a, "delta": 0.15,
                                                       "max_pairs_per_problem": 2}, 72)[0] for a in (0.01, 0.5, 3.0)}
    key = lambda a: {(p.problem_id, p.kind, p.chosen.text, p.rejected.text) for p in pairs[a]}
    assert len(pairs[0.01]) == len(pairs[0.5]) == len(pairs[3.0]) > 30
    assert len(key(0.01) & key(0.5) & key(3.0)) >= len(pairs[0.5]) - 2  # all but the ties at the cut
    assert not make_training_data(problems, samples, {"method": "length_penalty", "alpha": 0.0, "delta": 0.15,
                                                      "max_pairs_per_problem": 2}, 72)[0]  # α = 0: no preference


def _seed_rows(tokens_after: float, acc_after: float) -> list[dict]:
    """One seed's preference rows: levels 1 (easy) and 2 (hard), 10 problems each, base tokens 40."""
    meta = {"phase": "meta", "easy_levels": [1], "hard_levels": [2]}
    before = [{"phase": "before", "level": lv, "acc": 0.5, "tokens": 40.0, "n": 10} for lv in (1, 2)]
    after = [{"phase": "after", "level": lv, "acc": acc_after, "tokens": tokens_after * lv, "n": 10} for lv in (1, 2)]
    return [meta, *before, {"phase": "pairs", "n_pairs": 4, "n_dual_incorrect": 1}, *after]


def test_a_seed_the_dast_arm_lacks_is_nan_not_dropped():
    """The stats audit's F5: simpo_shortest on seeds 0-2, dast on 0-1; seed 2's *_vs_dast is NaN, so the claim
    counts it unmeasured (inconclusive) instead of judging two seeds as if they were all."""
    runs = {"dast": {0: _seed_rows(10.0, 0.5), 1: _seed_rows(12.0, 0.5)},
            "simpo_shortest": {0: _seed_rows(20.0, 0.4), 1: _seed_rows(20.0, 0.5), 2: _seed_rows(20.0, 0.5)}}
    per = ANALYSES["dast"](runs)["per_seed"]
    vs = per["compression_vs_dast"]["simpo_shortest"]
    # overall tokens after are 1.5x the level-1 count: SimPO 1 - 30/40 = 0.25; DAST 1 - 15/40, 1 - 18/40
    assert vs[:2] == pytest.approx([0.25 - 0.625, 0.25 - 0.55]) and math.isnan(vs[2])
    # easy 1 - 20/40, hard 1 - 40/40 for SimPO; DAST 1 - 10/40 and 1 - 20/40: easy-minus-hard 0.5 vs 0.25
    assert per["compression_easy_minus_hard_vs_dast"]["simpo_shortest"][0] == pytest.approx(0.25)


def test_lemma_lm_copyrule_judges_lemma_lms_claims_on_fig1s_base():
    """The sibling keeps lemma-lm's claims word for word, on fig1's copy-rule base and fresh seeds."""
    from replicate.specs import find_spec
    sib, lemma, fig1 = find_spec("lemma-lm-copyrule"), find_spec("lemma-lm"), find_spec("fig1")
    assert [c.model_dump() for c in sib.claims] == [c.model_dump() for c in lemma.claims]
    assert sib.resolve().task == fig1.resolve().task and sib.resolve().warmup == fig1.resolve().warmup
    assert lemma.resolve().task != fig1.resolve().task  # lemma-lm keeps the old testbed's base
    seen = set(lemma.resolve().seeds) | set(fig1.resolve().seeds) | set(sib.tuning_seeds)
    assert not seen & set(sib.resolve().seeds)
