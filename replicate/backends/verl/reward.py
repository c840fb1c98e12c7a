"""The reward verl calls, so that a spec is judged by the same verifier on both engines.

verl loads this FILE by path (`custom_reward_function.path`, `.name`) and its reward manager calls the named
function with keywords: `fn(data_source=..., solution_str=..., ground_truth=..., extra_info=...)`, extra_info a
dict (verl adds keys such as `num_turns`). A dict return is split by the manager: `score` is the reward, every
other key is logged per data source, so `acc` becomes verl's `val-core/<data_source>/acc/mean@N`, the key
logs.py reads back as validation accuracy.

Only absolute imports here: loaded by path, this file is a module without a package.

verl's reward loop calls a plain function from a thread pool, and evaluators.math's worker pool answers by item
index, so two threads sharing it read each other's verdicts (a reward-hacking audit: 83 of 200 wrong answers
paid). One call verifies at a time here.
"""
from __future__ import annotations

import threading

_ONE_AT_A_TIME = threading.Lock()


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_) -> dict:
    """evaluators.math's verdict (the last \\boxed{} answer, Math-Verify equivalence, in a killable worker):
    score 1.0 / 0.0, the same number our own trainer's math task rewards; `acc` the same."""
    from evaluators.math import score
    with _ONE_AT_A_TIME:
        verdict = float(score(solution_str, str(ground_truth)))
    return {"score": verdict, "acc": verdict}


def compute_score_verl_rule(data_source, solution_str, ground_truth, extra_info=None, **_) -> dict:
    """verl's own math_dapo rule (`--reward verl-rule`) on every data source: its score (+1 / -1) and acc."""
    from verl.utils.reward_score import math_dapo
    res = math_dapo.compute_score(solution_str, str(ground_truth))
    if isinstance(res, dict):
        return {"score": float(res["score"]), "acc": float(bool(res.get("acc", res["score"] > 0)))}
    return {"score": float(res), "acc": float(res > 0)}
