"""Run health: did a run break? A broken run is flagged, never silently counted as an effect.

A run is flagged at the first step where (over its metric rows, in order):
- no EOS: over the last WINDOW steps, under 1 - NO_EOS_SHARE of the rollout's responses end in EOS or a stop
  token of rollout.stop (the trainer's eos_share); for rows logged before eos_share existed, the mean response
  length is at least NO_EOS_SHARE of rollout.max_new_tokens (almost every response runs to the cap);
- accuracy 0: a validation accuracy (val_acc) after the first is 0 while the first was above 0;
- entropy blow-up: the mean entropy over the last WINDOW steps exceeds BLOWUP x the mean of the first WINDOW.
"""
from __future__ import annotations

import numpy as np

WINDOW = 5
NO_EOS_SHARE = 0.97
BLOWUP = 1.5


def first_break(rows: list[dict], max_new_tokens: int | None) -> tuple[int, str] | None:
    """(step, reason) of the first step at which the run trips a rule, or None for a healthy run."""
    ent, length, eos, acc0 = [], [], [], None
    for row in rows:
        if "val_acc" in row:
            if acc0 is None:
                acc0 = row["val_acc"]
            elif acc0 > 0 and row["val_acc"] == 0:
                return row["step"], f"accuracy fell to 0 (from {acc0:.3g}) at step {row['step']}"
        if "entropy" in row:
            ent.append(row["entropy"])
            start = float(np.mean(ent[:WINDOW]))
            if len(ent) >= 2 * WINDOW and np.mean(ent[-WINDOW:]) > BLOWUP * start:
                return row["step"], (f"entropy {np.mean(ent[-WINDOW:]):.3g} > {BLOWUP} x its start {start:.3g} "
                                     f"at step {row['step']}")
        if "eos_share" in row:
            eos.append(row["eos_share"])
            if len(eos) >= WINDOW and np.mean(eos[-WINDOW:]) < 1 - NO_EOS_SHARE:
                share = np.mean(eos[-WINDOW:])
                return row["step"], f"no EOS: {share:.3g} of responses end in EOS at step {row['step']}"
        elif "response_length" in row and max_new_tokens:
            length.append(row["response_length"])
            if len(length) >= WINDOW and np.mean(length[-WINDOW:]) >= NO_EOS_SHARE * max_new_tokens:
                return row["step"], (f"no EOS: mean response length {np.mean(length[-WINDOW:]):.3g} of "
                                     f"{max_new_tokens} at step {row['step']}")
    return None


class Watch:
    """During a run: feed each step's metrics; the first time the run trips a rule, log one line."""

    def __init__(self, max_new_tokens: int | None, log=print, name: str = "run", rows: list[dict] | None = None):
        self.max_new_tokens, self.log, self.name = max_new_tokens, log, name
        self.rows = list(rows or [])
        self.tripped = first_break(self.rows, max_new_tokens) is not None

    def add(self, metrics: dict) -> None:
        self.rows.append(metrics)
        if not self.tripped and (hit := first_break(self.rows, self.max_new_tokens)) is not None:
            self.tripped = True
            self.log(f"run health: {self.name} flagged: {hit[1]} (its claims count it; claims.md says so)")


def run_health(runs: dict, max_new_tokens: dict) -> dict:
    """{arm: {"seeds": n, "healthy": k, "flagged": {seed: reason}}} over a spec's runs
    ({arm: {seed: rows}}); max_new_tokens maps each arm to its rollout cap."""
    out = {}
    for arm, seeds in runs.items():
        flagged = {}
        for seed, rows in seeds.items():
            hit = first_break(rows, max_new_tokens.get(arm))
            if hit is not None:
                flagged[seed] = hit[1]
        out[arm] = {"seeds": len(seeds), "healthy": len(seeds) - len(flagged), "flagged": flagged}
    return out
