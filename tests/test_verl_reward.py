"""One reward on both engines: the file verl loads as `custom_reward_function`, called as verl's reward manager
calls it (loaded by path as a module without a package; keywords data_source, solution_str, ground_truth,
extra_info with verl's added keys), agrees with evaluators.math on the tricky answers of test_math_eval and on
every set of ../shared/data/math."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from evaluators.math import gold_answer, score_batch
from replicate.backends.verl.overrides import _fmt, reward_overrides
from test_math_eval import EQUIVALENT, NEAR_MISSES

# ../shared beside the checkout (or beside the folder of git worktrees a checkout may sit in)
SHARED = next((p / "shared" / "data" / "math" for p in Path(__file__).resolve().parents[2:4]
               if (p / "shared" / "data" / "math").is_dir()), Path("../shared/data/math"))


def load_as_verl(overrides: list[str]):
    """The function the overrides name, loaded from its file path as verl's load_extern_object does."""
    o = dict(x.split("=", 1) for x in overrides)
    spec = importlib.util.spec_from_file_location("custom_module", o["custom_reward_function.path"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, o["custom_reward_function.name"])


def call_as_manager(fn, response: str, gold: str, source: str = "math500") -> float:
    """verl's naive/dapo reward manager: keywords, extra_info with num_turns and rollout scores, a dict back."""
    out = fn(data_source=source, solution_str=response, ground_truth=gold,
             extra_info={"id": "x", "level": None, "index": 0, "num_turns": None, "rollout_reward_scores": {}})
    assert set(out) == {"score", "acc"} and out["score"] == out["acc"]
    return out["score"]


def test_default_overrides_point_to_our_reward_file():
    o = dict(x.split("=", 1) for x in reward_overrides("ours"))
    assert o["custom_reward_function.name"] == "compute_score"
    assert Path(o["custom_reward_function.path"]).name == "reward.py" and Path(o["custom_reward_function.path"]).is_absolute()
    assert dict(x.split("=", 1) for x in reward_overrides("verl-rule"))["custom_reward_function.name"] == \
        "compute_score_verl_rule"
    assert _fmt("/a b/reward.py") == "'/a b/reward.py'"  # a path with a space stays one Hydra value


def test_custom_reward_agrees_with_evaluators_math_on_tricky_answers():
    fn = load_as_verl(reward_overrides("ours"))
    cases = EQUIVALENT + NEAR_MISSES
    ours = score_batch([r for r, _ in cases], [g for _, g in cases])
    theirs = [call_as_manager(fn, r, g) for r, g in cases]
    assert theirs == ours
    # and both are right (every equivalent 1, every near miss 0) with the base install's ANTLR 4.13; under the
    # verl extra's ANTLR 4.9.3 Math-Verify no longer parses '50\\%' (one equivalent scores 0, on both engines)
    assert sum(theirs[len(EQUIVALENT):]) == 0 and sum(theirs) >= len(EQUIVALENT) - 1


def test_threads_calling_the_reward_get_their_own_verdicts():
    """verl's reward loop calls the function from a thread pool: each thread's verdicts must be its own (sharing
    evaluators.math's pool unguarded, wrong answers read right answers' 1.0s, or a connection was reset)."""
    from concurrent.futures import ThreadPoolExecutor
    fn = load_as_verl(reward_overrides("ours"))
    cases = [("\\boxed{4}", "5"), ("\\boxed{5}", "5")] * 60
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda c: call_as_manager(fn, *c), cases))
    assert got == [0.0, 1.0] * 60


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/math")
@pytest.mark.parametrize("name", ["aime24", "aime25", "amc23", "math500", "minerva_math", "olympiadbench"])
def test_custom_reward_agrees_on_each_shared_set(name):
    """The first 12 gold answers of each set: boxed (right), boxed + 1 (a near miss) and a bare last number."""
    fn = load_as_verl(reward_overrides("ours"))
    golds = [gold_answer(json.loads(x)) for x in (SHARED / f"{name}.jsonl").read_text().splitlines()[:12]]
    responses = [r for g in golds for r in (f"Thus \\boxed{{{g}}}.", f"\\boxed{{{g}+1}}", f"so it is {g}")]
    gold3 = [g for g in golds for _ in range(3)]
    theirs = [call_as_manager(fn, r, g, name) for r, g in zip(responses, gold3)]
    assert theirs == score_batch(responses, gold3)
    assert theirs[0::3] == [1.0] * len(golds)


def test_verl_rule_is_verls_math_dapo_and_disagrees_with_ours_on_some_tricky_answers(monkeypatch):
    """--reward verl-rule: verl's math_dapo (its file, loaded without verl's package, which needs ray) scores
    +1 / -1 with acc; it is a different verifier from ours, which is why ours is the default."""
    import sys
    import types
    spec = importlib.util.find_spec("verl")
    if spec is None:
        pytest.skip("verl not installed (see pyproject's verl extra)")
    path = Path(spec.submodule_search_locations[0]) / "utils" / "reward_score" / "math_dapo.py"
    loaded = importlib.util.spec_from_file_location("verl.utils.reward_score.math_dapo", path)
    math_dapo = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(math_dapo)
    pkg = types.ModuleType("verl.utils.reward_score")
    pkg.math_dapo = math_dapo
    for name, module in (("verl", types.ModuleType("verl")), ("verl.utils", types.ModuleType("verl.utils")),
                         ("verl.utils.reward_score", pkg), ("verl.utils.reward_score.math_dapo", math_dapo)):
        monkeypatch.setitem(sys.modules, name, module)
    fn = load_as_verl(reward_overrides("verl-rule"))
    out = fn(data_source="aime24", solution_str="so \\boxed{204}", ground_truth="204", extra_info={})
    assert out == {"score": 1.0, "acc": 1.0}
    assert fn(data_source="x", solution_str="\\boxed{205}", ground_truth="204", extra_info={}) == {"score": -1.0, "acc": 0.0}
    cases = EQUIVALENT + NEAR_MISSES
    rule = [fn(data_source="x", solution_str=r, ground_truth=g, extra_info={})["acc"] for r, g in cases]
    ours = [1.0] * len(EQUIVALENT) + [0.0] * len(NEAR_MISSES)
    disagree = [c for c, a, b in zip(cases, rule, ours) if a != b]
    print(f"math_dapo disagrees with evaluators.math on {len(disagree)} of {len(cases)} tricky answers: {disagree}")
    assert disagree  # a different verifier: the reason both engines use evaluators.math by default
