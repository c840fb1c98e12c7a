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
    if doc.get("_verifier"):  # a scorer the caller names, "module:function" (a tiny task's verifier, as in training)
        score = _resolve(doc["_verifier"])
        scores = [score(doc["_task"], r.strip(), doc["problem"], str(doc["answer"])) for r in responses]
    else:
        scores = score_batch(responses, [gold_answer(doc)] * len(responses))
    k = len(scores)
    return {"acc": sum(scores) / k, f"pass@{k}": float(any(scores))}


def _resolve(target: str):
    """The function a `module:function` target names; the caller's scorer, so evaluators import nothing of it."""
    import importlib
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
