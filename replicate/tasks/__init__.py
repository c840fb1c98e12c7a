"""Verifiable tasks by name: synthetic ones for the tiny tier."""
from __future__ import annotations

from ..errors import UserError
from .addition_mix import AdditionMixTask
from .arithmetic import AdditionTask
from .base import Problem
from .countdown import CountdownTask
from .math_data import MathTask
from .short_answer import ShortAnswerTask

TASKS = {"addition": AdditionTask, "addition_mix": AdditionMixTask, "countdown": CountdownTask, "math": MathTask, "short_answer": ShortAnswerTask}


def make_task(name: str, **params):
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name](**params)


__all__ = ["TASKS", "Problem", "make_task", "AdditionTask", "AdditionMixTask", "CountdownTask", "MathTask", "ShortAnswerTask"]
