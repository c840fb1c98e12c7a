"""Entropy dynamics: the lemma (exact and inside the tiny LM), covariance metrics, and the specs end to end."""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from replicate.algorithms import entropy_from_logits, predicted_entropy_change
from replicate.algorithms.lemma import lemma_points, loglog_slope, summarize
from replicate.experiment import reproduce
from replicate.specs import find_spec
from replicate.algorithms import covariance_by_accuracy


def test_prediction_is_the_derivative_of_entropy():
    """-Cov(log π, d) equals d/dη H(z + η d) at η = 0, checked against autograd."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 30, generator=g, dtype=torch.float64)
    d = torch.randn(5, 30, generator=g, dtype=torch.float64)
    eta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    entropy_from_logits(z + eta * d).sum().backward()
    assert torch.allclose(eta.grad, predicted_entropy_change(z, d).sum(), atol=1e-10)


def test_natural_pg_prediction_matches_the_closed_form():
    # Δz = η·A: -Cov_π(log π, A) = -(Σ π log π A - Σ π log π · Σ π A)
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    a = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    lp = p.log()
    expected = -((p * lp * a).sum() - (p * lp).sum() * (p * a).sum())
    assert math.isclose(predicted_entropy_change(lp, a).item(), expected.item(), rel_tol=1e-12)
    # a high-probability action with a high advantage lowers entropy; a rare one raises it
    assert predicted_entropy_change(lp, torch.tensor([1.0, 0, 0], dtype=torch.float64)) < 0
    assert predicted_entropy_change(lp, torch.tensor([0, 0, 1.0], dtype=torch.float64)) > 0


def test_error_is_second_order_in_eta():
    rows = lemma_points(0, [4, 64, 50000], 8, np.logspace(-4, -1, 6))
    s = summarize(rows, 1e-2)
    for kind in s:
        assert 1.8 <= s[kind]["abs_error_slope"] <= 2.2 and 0.8 <= s[kind]["rel_error_slope"] <= 1.2
        assert s[kind]["corr"] > 0.999
    assert loglog_slope([1, 10, 100], [1, 100, 10000]) == pytest.approx(2.0)


def test_covariance_by_accuracy_buckets():
    # two groups of 4: accuracy 3/4 (easy) and 1/4 (hard); within-group covariance by hand
    lp = torch.tensor([[-0.1], [-0.2], [-0.3], [-2.0], [-1.0], [-1.5], [-0.5], [-0.7]])
    adv = torch.tensor([[1.], [1.], [1.], [-3.], [-1.], [-1.], [-1.], [3.]])
    mask = torch.ones(8, 1)
    scores = torch.tensor([1., 1., 1., 0., 0., 0., 0., 1.])
    out = covariance_by_accuracy(lp, adv, mask, scores, [[0, 1, 2, 3], [4, 5, 6, 7]])
    def cov(x, y):
        x, y = np.array(x), np.array(y)
        return float(((x - x.mean()) * (y - y.mean())).mean())
    assert out["cov_acc_3"] == pytest.approx(cov([-0.1, -0.2, -0.3, -2.0], [1, 1, 1, -3]), rel=1e-5)
    assert out["cov_easy"] == out["cov_acc_3"] and out["cov_hard"] == out["cov_acc_1"]
    assert "cov_medium" not in out


def test_lemma_spec_end_to_end(tmp_path):
    res = reproduce(find_spec("lemma"), store=tmp_path / "store", out=tmp_path / "out")
    assert all(c["verdict"] == "replicated" for c in res["claims"])
    assert (tmp_path / "out" / "lemma.png").exists()


def test_lemma_in_the_tiny_lm(tiny_spec_file, warm_store, tmp_path):
    from replicate.specs import load_spec
    from replicate.runners.studies import logit_step_probe
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    rows = logit_step_probe(cfg, 0, warm_store, lr=1e-2, log=lambda *_: None)
    grad = [r for r in rows if r["kind"] == "position" and r["direction"] == "gradient"]
    rand = [r for r in rows if r["kind"] == "position" and r["direction"] == "random"]
    assert len(grad) == len(rand) > 20
    pred, exact = np.array([r["predicted"] for r in grad]), np.array([r["exact"] for r in grad])
    assert np.abs(pred).max() > 0 and np.corrcoef(pred, exact)[0, 1] > 0.7  # the Taylor check, one real step
    # the random step of equal norm moves entropy too, but the Taylor check holds for any small step
    assert np.corrcoef([r["predicted"] for r in rand], [r["exact"] for r in rand])[0, 1] > 0.99
    batches = [r for r in rows if r["kind"] == "batch"]
    assert [r["direction"] for r in batches] == ["gradient", "random"]
    assert batches[0]["step_norm"] == pytest.approx(batches[1]["step_norm"])


def test_theorem_prediction_is_the_tabular_policy_gradient_step():
    """-Cov_π(log π, A·(e_y - π)) equals the exact entropy change of that logit step, to first order."""
    from replicate.runners.studies import tabular_pg_step
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 7, generator=g, dtype=torch.float64)
    y = torch.randint(0, 7, (5,), generator=g)
    adv = torch.randn(5, generator=g, dtype=torch.float64)
    step = tabular_pg_step(z, y, adv)
    assert torch.allclose(step.sum(-1), torch.zeros(5, dtype=torch.float64), atol=1e-12)  # softmax-invariant
    eta = 1e-5
    exact = (entropy_from_logits(z + eta * step) - entropy_from_logits(z)) / eta
    assert torch.allclose(predicted_entropy_change(z, step), exact, atol=1e-4)


def test_fig8_smoke(tmp_path, fig_store):
    """fig8 end to end, shortened (2 seeds x 12 steps): probe ΔH and buckets are logged, claims evaluated."""
    res = reproduce(find_spec("fig8"), seeds=2, steps=12, store=fig_store, out=tmp_path / "out")
    rows = next(iter(res["runs"]["main"].values()))  # the spec's first judged seed
    assert all("probe_delta_entropy" in r and "delta_entropy" in r for r in rows)
    assert any(k.startswith("cov_acc_") for r in rows for k in r)
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())["claims"]
    # the level correlations are no claims (trend-confounded): the first-difference one is the primary
    assert {c["id"] for c in claims} == {"cov_mostly_positive", "cov_changes_track_entropy_changes",
                                         "easy_prompts_larger_cov"}
    assert all(c["beats"] for c in claims)  # every claim names the null it beats
    from replicate.summary import write_report
    page = write_report(tmp_path / "REPORT.md").read_text()
    assert "## fig1" in page and "## fig8" in page
    assert "### fig1 at scale small" in page  # a second scale's result (the committed SmolLM2 reference) too


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=6), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_covariance_by_accuracy_equals_the_per_group_loop(sizes, T, seed):
    """The one-pass version (index_add over groups) against each group's masked token covariance, computed alone;
    groups ragged and interleaved, masks with empty tails."""
    from replicate.algorithms.aggregation import masked_mean
    from replicate.algorithms.covariance import token_covariance
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    order = torch.randperm(n, generator=g).tolist()
    groups, at = [], 0
    for s in sizes:
        groups.append(order[at:at + s])
        at += s
    lp, adv = torch.randn(n, T, generator=g), torch.randn(n, T, generator=g)
    mask = (torch.rand(n, T, generator=g) > 0.3).float()
    mask[:, 0] = 1
    scores = (torch.rand(n, generator=g) > 0.5).float()
    out = covariance_by_accuracy(lp, adv, mask, scores, groups)
    want = {}
    for rows in groups:
        acc = scores[rows].mean().item()
        if 0 < acc < 1:
            c = masked_mean(token_covariance(lp[rows], adv[rows], mask[rows]), mask[rows]).item()
            want.setdefault(f"cov_acc_{round(acc * len(rows))}", []).append(c)
            want.setdefault("cov_hard" if acc <= 1 / 3 else ("cov_medium" if acc < 2 / 3 else "cov_easy"), []).append(c)
    assert out.keys() == want.keys()
    for k, v in want.items():
        assert out[k] == pytest.approx(sum(v) / len(v), rel=1e-5, abs=1e-6)
