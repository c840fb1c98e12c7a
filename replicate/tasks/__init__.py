"""Verifiable tasks by name: synthetic ones for the tiny tier, math data sets for the others."""
from __future__ import annotations

from ..errors import UserError
from ..registry import Registry
from .addition_mix import AdditionMixTask
from .arithmetic import AdditionTask
from .base import Problem
from .code_expr import CodeExprTask
from .countdown import CountdownTask
from .math_data import MathTask
from .scratch_addition import ScratchAdditionTask
from .short_answer import ShortAnswerTask
from .word_arithmetic import WordArithmeticTask

TASKS = {"addition": AdditionTask, "addition_mix": AdditionMixTask, "code_expr": CodeExprTask,
         "countdown": CountdownTask, "math": MathTask, "scratch_addition": ScratchAdditionTask,
         "short_answer": ShortAnswerTask, "word_arithmetic": WordArithmeticTask}

TASKS = Registry("task", TASKS)  # a second task under a taken name is an error


def make_task(name: str, **params):
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name](**params)


def score_text(task_name: str, response: str, prompt: str, answer: str) -> float:
    """Task `task_name`'s own verifier on one finished response to `prompt` (what an lm-eval task built from a tiny
    task's held-out problems scores with, named to it as "replicate.tasks:score_text")."""
    return TASKS[task_name].reward(response, Problem(prompt, answer, 0))


__all__ = ["TASKS", "Problem", "make_task", "score_text", "AdditionTask", "AdditionMixTask", "CodeExprTask", "CountdownTask",
           "MathTask", "ScratchAdditionTask", "ShortAnswerTask", "WordArithmeticTask"]
