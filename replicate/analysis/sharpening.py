"""The sharpening null: is RL's accuracy more than the base policy reaches by lowering its temperature?

Reads the step-0 row's base_acc_<T> / base_entropy_<T> (replicate/sharpening.py). Per run:

- base_greedy_acc: the base policy decoded greedily; base_best_acc: the max of its accuracy over the temperatures.
- rl_gain_over_sharpening = RL's final accuracy (the mean of the last 3 evals) - base_best_acc.
- law_gain_over_sharpening: at each later eval point (the last two thirds of the steps, as early_prediction's
  split) RL's val_acc minus the accuracy of the *sharpened base* with the same rollout entropy, averaged. The
  sharpened base π_0^(1/τ) has rollout entropy H_base(τ·T_rollout) and is validated at τ·T_eval, so the null at
  entropy H is acc_base(τ(H)·T_eval) with τ(H) read off the base's entropy-temperature curve; both curves are
  linear interpolations over the measured temperatures (clamped at the ends: no extrapolation).
"""
from __future__ import annotations

import math

import numpy as np

from replicate.runners.rl.sharpening import temperature_key
from .collect import record
from .fits import eval_points

METRICS = ("base_greedy_acc", "base_best_acc", "rl_gain_over_sharpening", "law_gain_over_sharpening")


def base_curve(first_row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(temperatures, accuracy, entropy) of the base, sorted by temperature (greedy = 0), from step 0's row."""
    temps = sorted(float(k[len("base_acc_"):]) if k != "base_acc_greedy" else 0.0
                   for k in first_row if k.startswith("base_acc_"))
    acc = np.array([first_row[f"base_acc_{temperature_key(t)}"] for t in temps])
    ent = np.array([first_row[f"base_entropy_{temperature_key(t)}"] for t in temps])
    return np.array(temps), acc, ent


def sharpened_accuracy(entropy, temps, acc, ent, t_rollout: float, t_eval: float) -> np.ndarray:
    """The sharpened base's validation accuracy at rollout entropy `entropy` (see the module docstring)."""
    order = np.argsort(ent)  # entropy rises with temperature; sort for interp all the same
    tau = np.interp(np.asarray(entropy, dtype=float), ent[order], temps[order]) / t_rollout
    return np.interp(tau * t_eval, temps, acc)


def sharpening_values(metrics: list[dict], fraction: float = 1 / 3) -> dict:
    """The four metrics of one run (NaN where the run logged no base temperatures)."""
    first = metrics[0] if metrics else {}
    if not any(k.startswith("base_acc_") for k in first):
        return dict.fromkeys(METRICS, math.nan)
    temps, acc, ent = base_curve(first)
    t_rollout, t_eval = first["base_rollout_temperature"], first["base_eval_temperature"]
    steps, h, r = eval_points(metrics)
    later = steps >= fraction * (max(m["step"] for m in metrics) + 1)
    null = sharpened_accuracy(h[later], temps, acc, ent, t_rollout, t_eval)
    best = float(acc.max())
    return {"base_greedy_acc": float(acc[0]) if temps[0] == 0 else math.nan, "base_best_acc": best,
            "rl_gain_over_sharpening": float(np.mean(r[-3:])) - best,
            "law_gain_over_sharpening": float(np.mean(r[later] - null)) if later.any() else math.nan}


def sharpened_curve(first_row: dict, n: int = 21) -> list[list[float]]:
    """[entropies, accuracies] of the sharpened base π_0^(1/τ), τ from 0 to 1, on the run's own axes (rollout
    entropy, validation accuracy): where a policy that RL only sharpened would sit on the law's panel."""
    temps, acc, ent = base_curve(first_row)
    tau = np.linspace(0.0, 1.0, n)
    h = np.interp(tau * first_row["base_rollout_temperature"], temps, ent)
    r = np.interp(tau * first_row["base_eval_temperature"], temps, acc)
    return [list(map(float, h)), list(map(float, r))]


def sharpening(runs: dict) -> dict:
    """Per run: the sharpening null's metrics, under its arm and the pseudo-arm "all" (every run of every arm, for
    claims over every run); pooled: each variant's sharpened-base curves, by seed (figures)."""
    per_seed, pooled = {}, {}
    for variant, seeds in runs.items():
        for metrics in seeds.values():
            for key, val in sharpening_values(metrics).items():
                record(per_seed, key, variant, val)
                if len(runs) > 1:
                    record(per_seed, key, "all", val)
        pooled[variant] = {"sharpened_curves": {seed: sharpened_curve(rows[0]) for seed, rows in seeds.items()
                                                if rows and "base_acc_greedy" in rows[0]}}
    return {"per_seed": per_seed, "pooled": pooled}
