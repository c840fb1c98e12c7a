"""Math word problems from a JSONL file or a hub dataset, rewarded by evaluators.math (Math-Verify).

For the small and paper scales. A hub dataset needs a network and the `datasets` package; a local .jsonl
needs neither. Each record gives the problem (`problem`/`question`/`prompt`) and the answer in its dataset's
own field (`answer`, `final_answer`, or a boxed answer in `solution`).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from evaluators.math import PROMPT

from ..errors import UserError
from .base import Problem


def load_records(source: str, split: str) -> list[dict]:
    path = Path(source).expanduser()
    if source.endswith(".jsonl") or path.exists():
        if not path.exists():
            raise UserError(f"data file {source} does not exist; fix task.params in the spec")
        with path.open() as fh:
            return [json.loads(line) for line in fh if line.strip()]
    try:
        import datasets
        return list(datasets.load_dataset(source, split=split))
    except Exception as exc:  # noqa: BLE001 - any hub failure is the same fix for the user
        raise UserError(f"could not load dataset {source!r} (split {split}): {str(exc).splitlines()[0][:160]}; "
                        "give a local .jsonl path instead") from None


class MathTask:
    alphabet = None  # pretrained tokenizers only

    def __init__(self, train: str, validation: str | list[str] | None = None, train_split: str = "train",
                 validation_split: str = "test", holdout: int = 500, prompt: str = PROMPT):
        from evaluators.math import gold_answer, problem_text
        def to_problems(records):
            return [Problem(prompt.format(problem=problem_text(r)), gold_answer(r), int(r.get("level", 0) or 0)
                            if str(r.get("level", "0")).isdigit() else 0) for r in records]
        self.train = to_problems(load_records(train, train_split))
        if isinstance(validation, list):  # several benchmarks (names of evaluators.lmeval.BENCHMARKS or sources)
            from evaluators.lmeval import BENCHMARKS
            self.validation = [p for v in validation for p in to_problems(
                load_records(*(BENCHMARKS[v][1:] if v in BENCHMARKS else (v, validation_split))))[:holdout]]
        elif validation:
            self.validation = to_problems(load_records(validation, validation_split))[:holdout]
        else:  # hold out the tail of the training set
            self.validation, self.train = self.train[-holdout:], self.train[:-holdout]
        if not self.train:
            raise UserError(f"no training problems in {train}; check task.params.train")

    def sample(self, n: int, rng: random.Random) -> list[Problem]:
        return [rng.choice(self.train) for _ in range(n)]

    @staticmethod
    def reward(response: str, problem: Problem, finished: bool = True) -> float:
        from evaluators.math import score
        return score(response, problem.answer)

    @staticmethod
    def reward_batch(responses: list[str], problems: list[Problem], finished: list[bool]) -> list[float]:
        """Math-Verify in the worker pool; a truncated response still counts if its boxed answer is right."""
        from evaluators.math import score_batch
        return score_batch(responses, [p.answer for p in problems])
