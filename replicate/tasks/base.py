"""What every task hands out: a problem with its prompt, gold answer and difficulty level."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    level: int


class GeneratedTask:
    """A task whose problems a generator makes: `_problem(rng)` draws one. The held-out set is drawn once from
    `holdout_seed`, and training problems never repeat a held-out prompt (the one sampler every generated task
    shares)."""

    def _problem(self, rng: random.Random) -> Problem:
        raise NotImplementedError

    def _kept(self, problem: Problem) -> None:
        """Called for every problem a sample keeps (a task that remembers how it made a problem hooks in here)."""

    def _hold_out(self, n: int, seed: int, distinct: bool = False) -> None:
        self.validation = self._sample(random.Random(seed), n, exclude=set(), distinct=distinct)
        self._held = {p.prompt for p in self.validation}

    def _sample(self, rng: random.Random, n: int, exclude, distinct: bool = False) -> list[Problem]:
        out, seen = [], set(exclude)
        while len(out) < n:
            p = self._problem(rng)
            if p.prompt not in seen:
                out.append(p)
                self._kept(p)
                if distinct:
                    seen.add(p.prompt)
        return out

    def sample(self, n: int, rng: random.Random) -> list[Problem]:
        """Training problems, never one of the validation set."""
        return self._sample(rng, n, self._held)
