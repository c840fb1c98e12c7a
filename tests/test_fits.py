"""The exponential law fit and the early-share measures on synthetic data with known answers."""
import math

import numpy as np
import pytest
from scipy.optimize import curve_fit

from replicate.analysis import early_prediction, early_shares, fit_exp_law
from replicate.report.claims import mean_ci, verdict


def test_fit_recovers_known_a_and_b():
    h = np.linspace(0.05, 0.7, 40)
    fit = fit_exp_law(h, -0.6 * np.exp(h) + 1.5)
    assert fit.a == pytest.approx(0.6, abs=1e-9) and fit.b == pytest.approx(1.5, abs=1e-9)
    assert fit.r2 == pytest.approx(1.0) and fit.ceiling == pytest.approx(0.9)


def test_fit_agrees_with_nonlinear_least_squares_on_noisy_data():
    rng = np.random.default_rng(0)
    h = rng.uniform(0.05, 0.8, 60)
    r = -0.4 * np.exp(h) + 1.3 + rng.normal(0, 0.01, 60)
    fit = fit_exp_law(h, r)
    (a, b), _ = curve_fit(lambda x, a, b: -a * np.exp(x) + b, h, r, p0=(1.0, 1.0))
    assert fit.a == pytest.approx(a, rel=1e-6) and fit.b == pytest.approx(b, rel=1e-6)
    assert 0.9 < fit.r2 < 1.0 and abs(fit.a - 0.4) < 0.03


def test_fit_of_degenerate_input_is_nan():
    assert math.isnan(fit_exp_law([0.1, 0.1, 0.1], [0.5, 0.6, 0.7]).a)


def _metrics(entropy, acc_every=5, acc=None):
    rows = [{"step": i, "entropy": float(h)} for i, h in enumerate(entropy)]
    for i in range(0, len(rows), acc_every):
        rows[i]["val_acc"] = float(acc[i])
    rows[-1]["val_acc"] = float(acc[len(rows) - 1])
    return rows


def test_early_shares_of_an_exponential_decay():
    steps = np.arange(300)
    h = 0.1 + 0.5 * np.exp(-steps / 20)   # almost all of the drop within the first 100 steps
    r = 0.9 - 0.3 * np.exp(-steps / 20)
    s = early_shares(_metrics(h, acc=r))
    assert s["entropy_drop_share_first_third"] > 0.95 and s["acc_gain_share_first_third"] > 0.95
    line = np.linspace(0.6, 0.1, 300)
    lin = early_shares(_metrics(line, acc=np.linspace(0.5, 0.9, 300)))
    assert lin["entropy_drop_share_first_third"] == pytest.approx(1 / 3, abs=0.02)
    assert lin["acc_gain_share_first_third"] == pytest.approx(1 / 3, abs=0.03)
    # levels are means over windows of 5% of the steps (15 here)
    assert lin["entropy_final_over_initial"] == pytest.approx(line[-15:].mean() / line[:15].mean(), rel=1e-9)


def test_early_prediction_is_exact_when_the_law_holds():
    h = 0.1 + 0.5 * np.exp(-np.arange(120) / 30)
    r = -0.5 * np.exp(h) + 1.6
    p = early_prediction(_metrics(h, acc=r))
    # r passes 1 late in the run (1.04 at the end): the law's predictions are not clipped, so it stays exact
    assert r.max() > 1 and p["early_fit_final_abs_error"] < 1e-9 and p["early_fit_rmse_rest"] < 1e-9
    assert p["early_fit_ceiling"] == pytest.approx(1.1)


def test_verdicts_use_the_confidence_interval():
    assert verdict([0.8, 0.82, 0.79], ">=", 0.5) == "replicated"
    assert verdict([0.2, 0.22, 0.19], ">=", 0.5) == "not replicated"
    assert verdict([0.2, 0.9, 0.5], ">=", 0.5) == "inconclusive"
    assert verdict([0.9], ">=", 0.5) == "inconclusive"  # one seed cannot decide
    assert verdict([0.8, 0.82, math.nan], ">=", 0.5) == "inconclusive"  # an unmeasured seed is not dropped silently
    assert verdict([0.95, 0.91, 0.97], ">=", 0.9, over="every") == "replicated"
    assert verdict([0.95, 0.89, 0.97], ">=", 0.9, over="every") == "not replicated"  # one run fails "every run"
    assert verdict([0.95, math.nan], ">=", 0.9, over="every") == "inconclusive"
    assert verdict([0.5, math.nan], ">=", 0.9, over="every") == "not replicated"
    from replicate.report.claims import worst
    assert worst([0.95, 0.89, 0.97], ">=") == 0.89 and worst([0.9, 1.2, math.nan], "<") == 1.2  # the failing run
    assert math.isnan(worst([math.nan], "<="))
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.302653 * 1 / math.sqrt(3), rel=1e-5)


def test_early_prediction_baselines_by_hand():
    # accuracy rises linearly in the step while entropy stays flat early: the no-change null misses by the rise,
    # the linear-in-step null is exact, and the law (flat entropy early: a degenerate fit) cannot predict
    steps = 30
    acc = np.linspace(0.2, 0.8, steps)
    h = np.concatenate([np.full(10, 0.5), np.linspace(0.5, 0.1, 20)])
    p = early_prediction(_metrics(h, acc_every=1, acc=acc))
    rest = acc[10:]
    assert p["no_change_rmse_rest"] == pytest.approx(float(np.sqrt(np.mean((rest - acc[9]) ** 2))))
    assert p["linear_step_rmse_rest"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(p["early_fit_rmse_rest"])


def test_the_linear_step_null_predicts_no_accuracy_above_1():
    # a fast early rise (0.1 a step from 0), then a plateau at 0.95: the early line foretells 1.0-2.9 later;
    # clipped to 1 its error is the plateau's distance to 1, 0.05 at every later point
    steps = 30
    acc = np.concatenate([0.1 * np.arange(10), np.full(20, 0.95)])
    h = np.linspace(0.6, 0.1, steps)
    p = early_prediction(_metrics(h, acc_every=1, acc=acc))
    line = 0.1 * np.arange(10, steps)
    assert line.min() == pytest.approx(1.0) and line.max() == pytest.approx(2.9)
    assert p["linear_step_rmse_rest"] == pytest.approx(0.05, abs=1e-9)
    assert float(np.sqrt(np.mean((line - 0.95) ** 2))) > 0.9  # what the unclipped line would have scored
    # and below 0: a fall of 0.1 a step from 0.9 to a floor of 0.05; clipped to 0, the error is 0.05 again
    falling = early_prediction(_metrics(h, acc_every=1, acc=np.concatenate([0.9 - 0.1 * np.arange(10),
                                                                            np.full(20, 0.05)])))
    assert falling["linear_step_rmse_rest"] == pytest.approx(0.05, abs=1e-9)


def test_law_beats_the_linear_null_only_on_exponential_data():
    from replicate.analysis import law_vs_linear
    rng = np.random.default_rng(1)
    h = np.linspace(0.05, 1.6, 40)
    noise = rng.normal(0, 0.002, 40)
    curved = law_vs_linear(h, -0.3 * np.exp(h) + 1.4 + noise)
    straight = law_vs_linear(h, -0.4 * h + 0.9 + noise)
    assert curved["exp_vs_linear_heldout_ratio"] < 0.5 < 2 < straight["exp_vs_linear_heldout_ratio"]
    assert curved["exp_h_collinearity"] > 0.01  # a wide range: exp(H) and H distinguishable
    narrow = law_vs_linear(np.linspace(0.03, 0.19, 40), np.linspace(0.9, 0.7, 40))
    assert narrow["exp_h_collinearity"] < 1e-3  # the old testbed's range: the two laws are collinear


def test_loo_rmse_matches_refitting_without_each_point():
    from replicate.analysis.fits import loo_rmse
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 1, 12), rng.normal(0, 1, 12)
    errs = []
    for i in range(12):
        keep = np.arange(12) != i
        c, d = np.polyfit(x[keep], y[keep], 1)
        errs.append(c * x[i] + d - y[i])
    assert loo_rmse(x, y) == pytest.approx(float(np.sqrt(np.mean(np.square(errs)))), rel=1e-9)


def _law_run(a, b, entropies):
    return [{"step": i, "entropy": h, "val_acc": -a * math.exp(h) + b} for i, h in enumerate(entropies)]


def test_law_across_arms_ceiling_range_and_seed_noise_by_hand():
    from replicate.analysis import ANALYSES
    hs = [1.0, 0.8, 0.6, 0.4, 0.2]
    # ceilings b - a: grpo 0.5 / 0.6 (seeds 0 / 1), rloo 0.7 / 0.6
    runs = {"grpo": {0: _law_run(0.1, 0.6, hs), 1: _law_run(0.1, 0.7, hs)},
            "rloo": {0: _law_run(0.1, 0.8, hs), 1: _law_run(0.2, 0.8, hs)}}
    out = ANALYSES["law_across_arms"](runs)
    rng = out["per_seed"]["ceiling_range"]["grpo"]
    assert rng == pytest.approx([0.2, 0.0], abs=1e-9)
    # seed SD: each arm's ceilings differ by 0.1 over two seeds: variance 0.005, noise = sqrt(0.005)
    # arm SD at seed 0: |0.5 - 0.7| / sqrt(2) = 0.1414 -> ratio 2; at seed 1: 0
    assert out["per_seed"]["ceiling_arm_sd_over_seed_sd"]["grpo"] == pytest.approx([2.0, 0.0], abs=1e-6)
    assert set(out["per_seed"]["ceiling_range"]) == {"grpo"}  # recorded under the reference arm only
