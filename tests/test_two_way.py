"""analysis.stats.two_way: the arm effect in an arms x seeds table against the two-way residual, cross-checked
against a least-squares fit and, for two arms, a paired t-test; scripts/fig6_two_way.py and the numbers
docs/audits.md quotes from it."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from replicate.analysis.stats import two_way

ROOT = Path(__file__).resolve().parent.parent
tables = st.tuples(st.integers(2, 5), st.integers(2, 7), st.integers(0, 2**31 - 1)).map(
    lambda t: np.random.default_rng(t[2]).normal(size=(t[0], t[1])))


def f_by_least_squares(x: np.ndarray) -> tuple[float, int, int, float]:
    """F of arms added to a seeds-only model, ((RSS_seeds - RSS_both) / df_arm) / (RSS_both / df_res), with each
    df from the design matrices' ranks: (F, df_arm, df_res, RSS_both)."""
    arms, seeds = x.shape
    y = x.ravel()
    seed = np.tile(np.eye(seeds), (arms, 1))
    both = np.hstack([seed, np.repeat(np.eye(arms), seeds, axis=0)])
    rss = [float(((y - m @ np.linalg.lstsq(m, y, rcond=None)[0]) ** 2).sum()) for m in (seed, both)]
    df_arm = np.linalg.matrix_rank(both) - np.linalg.matrix_rank(seed)
    df_res = len(y) - np.linalg.matrix_rank(both)
    return ((rss[0] - rss[1]) / df_arm) / (rss[1] / df_res), df_arm, df_res, rss[1]


@settings(max_examples=40, deadline=None)
@given(tables)
def test_f_and_p_equal_the_least_squares_comparison(x):
    f, df_arm, df_res, rss = f_by_least_squares(x)
    out = two_way(x)
    assert math.isclose(sum(out["residual_ss"]), rss, rel_tol=1e-9)
    assert out["df"] == [df_arm, df_res] and math.isclose(out["f"], f, rel_tol=1e-9)
    assert math.isclose(out["p"], stats.f.sf(f, df_arm, df_res), rel_tol=1e-6, abs_tol=1e-300)


@settings(max_examples=40, deadline=None)
@given(tables, st.integers(0, 2**31 - 1))
def test_a_shift_per_seed_moves_nothing(x, seed):
    """Each seed's shared part (its warm-up) is what the residual leaves out."""
    shifted = x + np.random.default_rng(seed).normal(scale=10, size=(1, x.shape[1]))
    a, b = two_way(x), two_way(shifted)
    assert math.isclose(a["f"], b["f"], rel_tol=1e-6) and math.isclose(a["residual_sd"], b["residual_sd"], rel_tol=1e-6)


def test_two_arms_give_the_paired_t_squared():
    x = np.array([[0.70, 0.62, 0.81, 0.66, 0.74], [0.52, 0.60, 0.55, 0.41, 0.58]])
    t = stats.ttest_rel(x[0], x[1])
    out = two_way(x)
    assert math.isclose(out["f"], t.statistic ** 2, rel_tol=1e-12) and math.isclose(out["p"], t.pvalue, rel_tol=1e-9)
    assert out["df"] == [1, 4] and np.allclose(out["arm_means"], [0.706, 0.532], rtol=1e-12)


def test_an_unmeasured_cell_or_no_spread_gives_no_f_and_arms_alone_give_inf():
    for table in ([[0.5, math.nan], [0.4, 0.3]], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]):
        out = two_way(table)
        assert math.isnan(out["f"]) and math.isnan(out["p"]) and out["df"] == [1, len(table[0]) - 1]
    assert two_way([[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])["f"] == math.inf


def test_the_audit_quotes_the_fig6_diagnostic():
    """docs/audits.md's numbers are the script's on the committed fig6 reference; the script's between-seed SD over
    all five arms is the one the reference's analysis recorded."""
    spec = importlib.util.spec_from_file_location("fig6_two_way", ROOT / "scripts" / "fig6_two_way.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    claims = json.loads((ROOT / "figures" / "fig6" / "claims.json").read_text())
    every, no_prime = script.diagnose(claims), script.diagnose(claims, ("prime",))
    assert math.isclose(every["seed_sd"], claims["pooled"]["grpo"]["ceiling_seed_sd"], rel_tol=1e-12)
    doc = " ".join((ROOT / "docs" / "audits.md").read_text().split())
    for d in (every, no_prime):
        quote = (f"F({d['df'][0]}, {d['df'][1]}) = {d['f']:.1f}, p = {d['p']:.1e}, residual SD {d['residual_sd']:.3f}; "
                 f"SD over arms / residual SD {d['ratio'][0]:.3f} [{d['ratio'][1]:.3f}, {d['ratio'][2]:.3f}]")
        assert quote in doc and f"Friedman p = {d['friedman_p']:.1e}" in doc, quote
    assert f"PRIME also holds {every['residual_share'][every['arms'].index('prime')]:.0%} of the residual" in doc
