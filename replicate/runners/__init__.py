"""Runners: each turns a spec's resolved configs and seeds into run-store runs.

A runner returns {variant: {seed: Run}}, directories of the run store, so analysis, figures and claims read
metrics rows from the store and never know which runner produced a run. A spec names its runner (`runner: rl` by
default) and its `runner_params`, which the runner's typed `Params` model validates when the spec loads (a typo is
a file:line error). A new runner is one module that defines a `Runner` and one line in RUNNERS below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict

from replicate.registry import LazyRegistry


class Params(BaseModel):
    """A runner's parameters (`runner_params:` in a spec); the base takes none. Field descriptions become the
    docs' runner table."""
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Runner:
    run: Callable          # (spec, scale, configs, seeds, root, force=False, resume=False, log=print) -> runs
    params: type[Params] = Params
    trains: bool = True    # needs the spec's training config (body + scale preset)
    variant_params: bool = False  # variants may add runner_params of their own (merged over the spec's)

    @property
    def fn(self) -> Callable:
        return self.run


RUNNERS = LazyRegistry("runner", {
    "rl": "replicate.runners.rl:RUNNER",
    "lemma_exact": "replicate.runners.studies:LEMMA_EXACT",
    "lemma_lm": "replicate.runners.studies:LEMMA_LM",
    "preference": "replicate.runners.preference:RUNNER",
})


def one_process(runner: str):
    """Runners other than `rl` do not shard: under `accelerate launch` every process would write the same run."""
    from replicate.errors import UserError
    from replicate.paths import world_size
    if world_size() > 1:
        raise UserError(f"the {runner} runner runs in one process; run it without `accelerate launch`")
