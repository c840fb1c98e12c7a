"""What every task hands out: a problem with its prompt, gold answer and difficulty level."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    level: int
