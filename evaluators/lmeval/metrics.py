"""lm-eval hooks: the prompt and the per-document metrics (avg@k as `acc`, and pass@k)."""
from __future__ import annotations

from evaluators.math import PROMPT, gold_answer, problem_text, score_batch


def doc_to_text(doc: dict) -> str:
    text = problem_text(doc)
    if "\\boxed" in text or doc.get("_raw_prompt"):
        return text
    return PROMPT.format(problem=text)


def process_results(doc: dict, results: list) -> dict:
    """results holds the k sampled responses of one problem (a list, or a list of one list after filters)."""
    responses = results[0] if results and isinstance(results[0], list) else list(results)
    if doc.get("_verifier") in ("countdown", "short_answer"):  # the tiny task's own verifier, as in training
        from replicate.tasks import TASKS, Problem
        problem = Problem(doc["problem"], str(doc["answer"]), 0)
        scores = [TASKS[doc["_verifier"]].reward(r.strip(), problem) for r in responses]
    else:
        scores = score_batch(responses, [gold_answer(doc)] * len(responses))
    k = len(scores)
    return {"acc": sum(scores) / k, f"pass@{k}": float(any(scores))}
