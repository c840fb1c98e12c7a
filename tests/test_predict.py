"""The predictability analyses (fig2-fig5, fig7) on synthetic runs with known answers."""
import math

import numpy as np
import pytest

from replicate.analysis import ANALYSES
from replicate.analysis.predict import beats_both_from, prediction_interval, size_trend


def law_run(a=0.3, b=1.0, steps=100, every=3, noise=0.0, seed=0, size=None):
    """Metrics rows whose entropy decays and whose accuracy follows R = -a exp(H) + b (plus noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(steps):
        h = 0.1 + 1.0 * math.exp(-t / 15)
        row = {"step": t, "entropy": h}
        if t % every == 0 or t == steps - 1:
            row["val_acc"] = -a * math.exp(h) + b + float(rng.normal(0, noise))
        if t == 0 and size is not None:
            row["params_nonembed"] = size
        rows.append(row)
    return rows


def test_beats_both_from_is_the_first_fraction_of_the_final_winning_streak():
    fr = [0.1, 0.2, 0.3]
    assert beats_both_from([1, 1, 1], [[2, 2, 2], [3, 3, 3]], fr) == 0.1
    assert beats_both_from([3, 1, 1], [[2, 2, 2], [3, 3, 3]], fr) == 0.2
    assert beats_both_from([1, 3, 1], [[2, 2, 2], [3, 3, 3]], fr) == 0.3  # a loss at 0.2 breaks the streak
    assert beats_both_from([1, 1, 3], [[2, 2, 2], [3, 3, 3]], fr) == 1.0  # never from some fraction on
    assert math.isnan(beats_both_from([1, math.nan, 1], [[2, 2, 2], [3, 3, 3]], fr))


def test_prediction_interval_of_an_exact_line_and_its_coverage():
    pred, half, slope = prediction_interval([1, 2, 3, 4], [3, 5, 7, 9], 6)
    assert pred == pytest.approx(13) and slope == pytest.approx(2) and half == pytest.approx(0, abs=1e-9)
    rng = np.random.default_rng(0)
    x = np.array([1.0, 1.5, 2.0, 2.5, 3.0] * 2)
    hits = 0
    for _ in range(400):  # a new observation at x0 falls inside the 95% interval ~95% of the time
        y = 0.5 * x + rng.normal(0, 0.1, len(x))
        pred, half, _ = prediction_interval(x, y, 4.0)
        hits += abs(2.0 + rng.normal(0, 0.1) - pred) <= half
    assert 0.91 <= hits / 400 <= 0.99
    assert all(math.isnan(v) for v in prediction_interval([1, 1, 1], [1, 2, 3], 2))


def test_law_per_run_records_every_run_under_its_arm_and_all():
    runs = {"x": {0: law_run(seed=0), 1: law_run(a=0.2, seed=1)}, "y": {0: law_run(a=0.5, b=1.2)}}
    out = ANALYSES["law_per_run"](runs)
    assert out["per_seed"]["fit_a"]["x"] == pytest.approx([0.3, 0.2])
    assert out["per_seed"]["fit_a"]["all"] == pytest.approx([0.3, 0.2, 0.5])
    assert out["per_seed"]["fit_r2"]["all"] == pytest.approx([1, 1, 1])
    assert out["pooled"]["y"]["run_fits"][0]["b"] == pytest.approx(1.2)


def test_early_curve_law_beats_both_nulls_when_the_law_holds():
    runs = {"x": {s: law_run(noise=0.002, seed=s) for s in range(3)}}
    out = ANALYSES["early_curve"](runs)
    per = out["per_seed"]
    assert all(v < 0 for v in per["law_minus_best_null_f33"]["all"])
    assert all(v < 0 for v in per["law_minus_best_null_paper"]["all"])
    assert per["law_beats_both_from"]["all"] == [0.1, 0.1, 0.1]
    curve = out["pooled"]["all"]["early_curve"]
    assert len(curve["law"]) == 3 and len(curve["fractions"]) == 4
    assert out["pooled"]["x"]["early_curve"]["law"] == curve["law"]


def test_shares_first_third_and_twelfth_of_a_fast_collapse():
    out = ANALYSES["shares_per_run"]({"x": {0: law_run()}})["per_seed"]
    third, twelfth = out["entropy_drop_share_first_third"]["all"][0], out["entropy_drop_share_first_twelfth"]["all"][0]
    assert 0.85 < third <= 1.0 and 0.3 < twelfth < third  # exp(-t/15): ~90% of the drop by a third of 100 steps
    assert out["acc_gain_share_first_third"]["x"][0] > 0.8


def test_size_trend_predicts_a_log_linear_largest_size_and_beats_the_mean():
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6]
    runs = {f"s{i}": {s: law_run(a=0.1 + 0.1 * math.log10(n), b=1.0 + 0.05 * math.log10(n), noise=0.001, seed=s,
                                 size=n) for s in range(2)}
            for i, n in enumerate(sizes)}
    per = size_trend(runs)["per_seed"]
    assert per["a_in_interval"]["all"] == [1.0, 1.0] and per["b_in_interval"]["all"] == [1.0, 1.0]
    assert per["a_predicted_informatively"]["all"] == [1.0, 1.0]  # a narrow interval, far from the mean
    assert all(v < 0 for v in per["a_trend_minus_mean_abs_error"]["all"])


def test_size_trend_no_size_dependence_is_not_predicted_informatively():
    """a does not depend on size: the held-out value falls inside a wide interval (in_interval passes, as it
    would for any noisy family), but the interval covers the smaller sizes' mean, so the informative claim fails."""
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6]
    jitter = {1e4: 0.02, 3e4: -0.03, 1e5: 0.01, 3e5: -0.01, 1e6: 0.0}
    runs = {f"s{i}": {s: law_run(a=0.3 + jitter[n] + 0.01 * s, b=1.2, noise=0.001, seed=s, size=n) for s in range(2)}
            for i, n in enumerate(sizes)}
    per = size_trend(runs)["per_seed"]
    assert per["a_in_interval"]["all"] == [1.0, 1.0]
    assert per["a_predicted_informatively"]["all"] == [0.0, 0.0]
    assert all(v < 0.02 for v in per["a_trend_abs_error"]["all"])


def test_size_trend_without_sizes_says_what_is_missing():
    with pytest.raises(ValueError, match="params_nonembed"):
        size_trend({"s": {0: law_run()}})


def test_shares_per_run_counts_a_shared_warmup_once():
    """Two arms on one warm-up (seed 0) are one unit: their mean; a third arm with its own warm-up is another."""
    from replicate.analysis import ANALYSES
    runs = {"x": {0: law_run(seed=0), 1: law_run(seed=1)}, "y": {0: law_run(seed=2)}}
    units = {"x": {0: "w0", 1: "w1"}, "y": {0: "w0"}}
    per = ANALYSES["shares_per_run"](runs, units)["per_seed"]
    key = "entropy_final_over_initial"
    assert len(per[key]["all"]) == 3 and len(per[key]["unit"]) == 2
    x0, x1, y0 = per[key]["x"][0], per[key]["x"][1], per[key]["y"][0]
    assert sorted(per[key]["unit"]) == pytest.approx(sorted([(x0 + y0) / 2, x1]))
    # without units every run is its own unit
    assert len(ANALYSES["shares_per_run"](runs)["per_seed"][key]["unit"]) == 3


@pytest.mark.parametrize("analysis", ["shares_per_run", "early_curve", "law_per_run"])
def test_seed_pseudo_arm_is_the_mean_of_each_seeds_units(analysis):
    """One value per seed, in seed order: the mean of the seed's units, a unit being the mean of its runs. On seed
    0, arms x and y share warm-up w0 (one unit) and z has its own: (mean(x0, y0) + z0) / 2; on seed 1 each arm has
    its own: mean(x1, y1, z1)."""
    runs = {"x": {1: law_run(noise=0.01, seed=1), 0: law_run(noise=0.01, seed=0)},
            "y": {0: law_run(noise=0.01, seed=2), 1: law_run(noise=0.01, seed=5)},
            "z": {0: law_run(noise=0.01, seed=3), 1: law_run(noise=0.01, seed=4)}}
    units = {"x": {0: "w0", 1: "w1"}, "y": {0: "w0", 1: "u1"}, "z": {0: "v0", 1: "v1"}}
    per = ANALYSES[analysis](runs, units)["per_seed"]
    for key, arms in per.items():
        if "seed" not in arms:
            continue
        x, y, z = (dict(zip(runs[a], arms[a])) for a in "xyz")
        want = [((x[0] + y[0]) / 2 + z[0]) / 2, (x[1] + y[1] + z[1]) / 3]
        assert arms["seed"] == pytest.approx(want, nan_ok=True), key
    assert "seed" in per["law_rmse_paper" if analysis == "early_curve" else
                        "fit_r2" if analysis == "law_per_run" else "entropy_final_over_initial"]


def test_seed_pseudo_arm_of_a_seed_with_a_broken_unit_is_unmeasured():
    """A NaN in any unit of a seed, or a missing run, makes that seed's value NaN (unmeasured), not the mean of the
    others."""
    from replicate.analysis.predict import _record_groups
    per = {}
    _record_groups(per, [("x", 0, {"m": 1.0}), ("y", 0, {"m": float("nan")}), ("x", 1, {"m": 2.0}),
                         ("y", 1, {"m": 4.0})], None)
    assert per["m"]["unit"][0] == 1.0 and math.isnan(per["m"]["unit"][1]) and per["m"]["unit"][2:] == [2.0, 4.0]
    assert math.isnan(per["m"]["seed"][0]) and per["m"]["seed"][1] == 3.0
    # a seed without one arm's run (dropped as broken) is unmeasured too, not the mean of the arms it kept
    per = {}
    _record_groups(per, [("x", 0, {"m": 1.0}), ("y", 0, {"m": 3.0}), ("x", 1, {"m": 2.0})], None)
    assert per["m"]["seed"][0] == 2.0 and math.isnan(per["m"]["seed"][1])


def test_early_curve_counts_a_shared_warmup_once():
    """fig5 judges the mean over runs: runs on one warm-up (fig1's config on a seed) are one unit, their mean."""
    runs = {"x": {0: law_run(noise=0.01, seed=0), 1: law_run(noise=0.01, seed=1)},
            "y": {0: law_run(noise=0.01, seed=2)}}
    units = {"x": {0: "w0", 1: "w1"}, "y": {0: "w0"}}
    out = ANALYSES["early_curve"](runs, units)
    per, key = out["per_seed"], "law_minus_best_null_paper"
    assert len(per[key]["all"]) == 3 and len(per[key]["unit"]) == 2
    x0, x1, y0 = per[key]["x"][0], per[key]["x"][1], per[key]["y"][0]
    assert sorted(per[key]["unit"]) == pytest.approx(sorted([(x0 + y0) / 2, x1]))
    assert out["pooled"]["unit"]["runs_per_unit"] == [1, 2]
    assert len(ANALYSES["early_curve"](runs)["per_seed"][key]["unit"]) == 3  # without units: one unit a run
