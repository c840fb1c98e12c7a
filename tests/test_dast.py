"""DAST's pure parts (budget, reward, pairs) and the SimPO loss against hand-computed values, properties and TRL."""
import math
import tempfile
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from replicate.algorithms import PREFERENCE_LOSSES, logprobs_from_logits, sequence_avg_logp
from replicate.algorithms.dast import (PreferencePair, Response, budget_reward, build_pairs, length_budget, problem_stats,
                            score_problem)

T = torch.tensor


# ---- Token Length Budget ------------------------------------------------------------------------

def test_budget_at_p0_p1_and_between():
    assert length_budget(0.0, None, 4096) == 4096.0  # no correct sample: L_r is irrelevant
    assert length_budget(0.0, 123.0, 4096) == 4096.0
    assert length_budget(1.0, 1000.0, 4096) == 1000.0
    assert length_budget(0.25, 1000.0, 4096) == 0.25 * 1000 + 0.75 * 4096 == 3322.0


def test_budget_rejects_bad_inputs():
    for args in [(1.5, 10.0, 100), (-0.1, 10.0, 100), (0.5, None, 100), (0.5, 10.0, 0)]:
        with pytest.raises(ValueError):
            length_budget(*args)


def test_problem_stats_cap_and_longest():
    samples = [(100, True), (300, True), (4000, False), (2000, False)]
    s = problem_stats(samples, 4096)
    assert (s.p, s.mean_correct_length, s.budget) == (0.5, 200.0, 0.5 * 200 + 0.5 * 4096)
    assert problem_stats(samples, 4096, l_max_from="longest").budget == 0.5 * 200 + 0.5 * 4000
    none_right = problem_stats([(50, False), (70, False)], 4096)
    assert (none_right.p, none_right.mean_correct_length, none_right.budget) == (0.0, None, 4096.0)
    with pytest.raises(ValueError):
        problem_stats(samples, 4096, l_max_from="median")


# ---- budget-aware reward ------------------------------------------------------------------------

@pytest.mark.parametrize("length, correct, expected", [
    (0, True, 1.0), (500, True, 0.75), (1000, True, 0.5), (1700, True, 0.15),
    (1800, True, 0.1),    # λ = 0.8: -0.5·0.8 + 0.5 = 0.1, the floor starts exactly here
    (3000, True, 0.1),    # λ = 2: -0.5 clamped up to 0.1
    (0, False, -1.0),     # λ = -1: 0.9·(-1) - 0.1
    (500, False, -0.55), (900, False, -0.19),
    (1000, False, -0.1),  # λ = 0: the cap starts exactly here
    (2000, False, -0.1),  # λ = 1: 0.8 clamped down to -0.1
])
def test_reward_branches_and_clamps(length, correct, expected):
    assert math.isclose(budget_reward(length, correct, 1000.0), expected, abs_tol=1e-12)


def test_reward_just_inside_the_clamps():
    assert budget_reward(1790, True, 1000.0) > 0.1 + 1e-6    # λ = 0.79: still on the slope
    assert budget_reward(990, False, 1000.0) < -0.1 - 1e-6   # λ = -0.01: still on the slope


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20_000), st.integers(0, 20_000), st.floats(1.0, 8192.0))
def test_reward_ranges_and_monotonicity(l1, l2, budget):
    short, long_ = min(l1, l2), max(l1, l2)
    rc = [budget_reward(x, True, budget) for x in (short, long_)]
    rw = [budget_reward(x, False, budget) for x in (short, long_)]
    assert all(0.1 <= r <= 1.0 for r in rc) and all(-1.0 <= r <= -0.1 for r in rw)
    assert rc[0] >= rc[1] and rw[0] <= rw[1]  # correct: shorter is better; wrong: longer is better
    assert min(rc) > max(rw)


def test_score_problem_uses_the_problem_budget():
    rs = score_problem("q", [("a", 100, True), ("b", 300, True), ("c", 4000, False)], 4096)
    budget = (2 / 3) * 200 + (1 / 3) * 4096
    assert [r.reward for r in rs] == [budget_reward(x, ok, budget) for x, ok in [(100, True), (300, True),
                                                                                   (4000, False)]]
    assert all(r.problem_id == "q" for r in rs)


# ---- preference pairs ---------------------------------------------------------------------------

def R(pid, text, reward, correct, length=0):
    return Response(pid, text, length, correct, reward)


def test_widest_pairs_chosen_higher_and_never_mixed():
    g = [R(0, "a", 0.9, True), R(0, "b", 0.5, True), R(0, "c", 0.2, True), R(0, "d", -0.2, False),
         R(0, "e", -0.8, False)]
    pairs = build_pairs({0: g}, delta=0.0)
    assert [(p.kind, p.chosen.text, p.rejected.text) for p in pairs] == [("dual_correct", "a", "c"),
                                                                         ("dual_incorrect", "d", "e")]
    assert [round(p.gap, 12) for p in pairs] == [0.7, 0.6]  # a-vs-e (gap 1.7) is mixed and never used
    assert all(p.chosen.correct == p.rejected.correct for p in pairs)


def test_end_to_end_shorter_correct_and_longer_wrong_are_chosen():
    rs = score_problem(1, [("s", 100, True), ("t", 300, True), ("u", 500, False), ("v", 2000, False)], 4096)
    dc, di = build_pairs([rs], delta=0.0)
    assert (dc.chosen.length, dc.rejected.length) == (100, 300)
    assert (di.chosen.length, di.rejected.length) == (2000, 500)


def test_identical_texts_and_equal_rewards_never_pair():
    g = [R(0, "x", 0.9, True), R(0, "x", 0.1, True), R(0, "y", 0.4, True)]
    (p,) = build_pairs([g], delta=0.0)
    assert (p.chosen.text, p.rejected.text, round(p.gap, 12)) == ("x", "y", 0.5)
    assert build_pairs([[R(0, "x", 0.9, True), R(0, "x", 0.1, True)]], delta=0.0) == []
    assert build_pairs([[R(0, "x", 0.5, True), R(0, "y", 0.5, True)]], delta=0.0) == []


def ten_problems():
    """Problem i has a dual-correct pair of gap 0.1·(i+1) and a dual-incorrect pair of gap 0.01·(i+1)."""
    return {i: [R(i, "a", 0.1 + 0.1 * (i + 1), True), R(i, "b", 0.1, True),
                R(i, "c", -0.1, False), R(i, "d", -0.1 - 0.01 * (i + 1), False)] for i in range(10)}


def test_delta_cut_drops_exactly_the_bottom_fraction():
    all_pairs = build_pairs(ten_problems(), delta=0.0)
    assert len(all_pairs) == 20
    kept = build_pairs(ten_problems(), delta=0.3)  # ⌊0.3·20⌋ = 6: the six smallest, all dual-incorrect
    assert len(kept) == 14
    dropped = {(p.problem_id, p.kind) for p in all_pairs} - {(p.problem_id, p.kind) for p in kept}
    assert dropped == {(i, "dual_incorrect") for i in range(6)}
    assert len(build_pairs(ten_problems(), delta=0.57)) == 20 - 11  # ⌊11.4⌋, float-safe


def test_cap_per_problem_keeps_the_largest_gap():
    assert all(sum(p.problem_id == i for p in build_pairs(ten_problems(), delta=0.0)) == 2 for i in range(10))
    one = build_pairs(ten_problems(), delta=0.0, max_pairs_per_problem=1)
    assert [(p.problem_id, p.kind) for p in one] == [(i, "dual_correct") for i in range(10)]


def test_ablation_flags():
    only_di = build_pairs(ten_problems(), delta=0.0, dual_correct=False)
    only_dc = build_pairs(ten_problems(), delta=0.0, dual_incorrect=False)
    assert len(only_di) == len(only_dc) == 10
    assert {p.kind for p in only_di} == {"dual_incorrect"} and {p.kind for p in only_dc} == {"dual_correct"}
    assert build_pairs(ten_problems(), delta=0.0, dual_correct=False, dual_incorrect=False) == []
    # the δ cut is global over the candidates that exist: without dual-correct, it cuts dual-incorrect ones
    assert [p.problem_id for p in build_pairs(ten_problems(), delta=0.2, dual_correct=False)] == list(range(2, 10))


def test_build_pairs_rejects_bad_inputs():
    with pytest.raises(ValueError):
        build_pairs([[R(0, "a", 0.5, True), R(1, "b", 0.2, True)]], delta=0.0)
    for kw in [{"delta": 1.0}, {"delta": -0.1}, {"delta": 0.1, "max_pairs_per_problem": 0}]:
        with pytest.raises(ValueError):
            build_pairs([], **kw)


@st.composite
def scored_groups(draw):
    groups = []
    for pid in range(draw(st.integers(1, 8))):
        n = draw(st.integers(1, 8))
        lengths = draw(st.lists(st.integers(1, 4096), min_size=n, max_size=n))
        correct = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        texts = [f"t{draw(st.integers(0, 4))}" for _ in range(n)]  # repeated texts happen
        budget = problem_stats(list(zip(lengths, correct)), 4096).budget
        groups.append([Response(pid, t, x, ok, budget_reward(x, ok, budget))
                       for t, x, ok in zip(texts, lengths, correct)])
    return groups


@settings(max_examples=80, deadline=None)
@given(scored_groups(), st.sampled_from([0.0, 0.15, 0.18, 0.5]))
def test_pair_invariants(groups, delta):
    candidates = build_pairs(groups, delta=0.0)
    pairs = build_pairs(groups, delta=delta)
    assert len(pairs) == len(candidates) - math.floor(delta * len(candidates) + 1e-9)
    if len(pairs) < len(candidates):
        assert min(p.gap for p in pairs) >= max(p.gap for p in candidates if p not in pairs)
    for p in pairs:
        assert isinstance(p, PreferencePair) and p.gap > 0 and p.chosen.text != p.rejected.text
        assert p.chosen.correct == p.rejected.correct and p.chosen.problem_id == p.rejected.problem_id
    assert all(sum(p.problem_id == g[0].problem_id for p in pairs) <= 2 for g in groups)
    assert len({(p.problem_id, p.kind) for p in pairs}) == len(pairs)


# ---- SimPO --------------------------------------------------------------------------------------

def two_pairs():
    chosen = T([[-0.5, -1.5], [-0.2, 9.0]])                # averages -1.0, -0.2 (9.0 is padding)
    rejected = T([[-2.0, -1.0, -3.0], [-0.1, -0.3, 7.0]])  # averages -2.0, -0.2 (7.0 is padding)
    return chosen, rejected, T([[1., 1.], [1., 0.]]), T([[1., 1., 1.], [1., 1., 0.]])


def test_simpo_known_values():
    loss, m = PREFERENCE_LOSSES["simpo"](*two_pairs(), beta=2.0, gamma=1.0)
    # z = β·avg_w - β·avg_l - γ: pair 1: -2 + 4 - 1 = 1; pair 2: -0.4 + 0.4 - 1 = -1
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    assert math.isclose(m["chosen_reward"], -1.2, rel_tol=1e-6)
    assert math.isclose(m["rejected_reward"], -2.2, rel_tol=1e-6)
    assert math.isclose(m["reward_margin"], 1.0, rel_tol=1e-6)
    assert m["reward_accuracy"] == 0.5  # pair 2 has margin 0: not counted as right


def test_simpo_gradient_known_value():
    chosen = T([[-0.5, -1.5]], requires_grad=True)
    loss, _ = PREFERENCE_LOSSES["simpo"](chosen, T([[-2.0, -1.0, -3.0]]), torch.ones(1, 2), torch.ones(1, 3),
                                         beta=2.0, gamma=1.0)
    loss.backward()
    # dL/d logp_t = -σ(-z)·β/|y_w| with z = 1, β/|y_w| = 1
    assert torch.allclose(chosen.grad, torch.full((1, 2), -1 / (1 + math.e)), atol=1e-6)


def test_simpo_rejects_empty_response_and_bad_beta():
    c, r, cm, rm = two_pairs()
    with pytest.raises(ValueError):
        PREFERENCE_LOSSES["simpo"](c, r, T([[1., 1.], [0., 0.]]), rm, beta=2.0, gamma=1.0)
    with pytest.raises(ValueError):
        PREFERENCE_LOSSES["simpo"](c, r, cm, rm, beta=0.0, gamma=1.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6))
def test_simpo_padding_never_changes_the_loss(seed, b, t_w, t_l):
    g = torch.Generator().manual_seed(seed)
    c, r = -torch.rand(b, t_w + 3, generator=g) * 5, -torch.rand(b, t_l + 2, generator=g) * 5
    cm = (torch.arange(t_w + 3) < torch.randint(1, t_w + 1, (b, 1), generator=g)).float()
    rm = (torch.arange(t_l + 2) < torch.randint(1, t_l + 1, (b, 1), generator=g)).float()
    base, _ = PREFERENCE_LOSSES["simpo"](c, r, cm, rm, beta=2.5, gamma=1.25)
    c2 = torch.where(cm > 0, c, torch.randn(c.shape, generator=g) * 100)
    r2 = torch.where(rm > 0, r, torch.full_like(r, -math.inf))
    other, _ = PREFERENCE_LOSSES["simpo"](c2, r2, cm, rm, beta=2.5, gamma=1.25)
    assert torch.equal(base, other)
    trimmed, _ = PREFERENCE_LOSSES["simpo"](c[:, :t_w], r[:, :t_l], cm[:, :t_w], rm[:, :t_l], beta=2.5, gamma=1.25)
    assert torch.allclose(base, trimmed, atol=1e-6)  # masks end before t_w, t_l: the extra columns are padding


# ---- cross-check against TRL's CPOTrainer(loss_type="simpo", cpo_alpha=0) ------------------------

def trl_cpo():
    pytest.importorskip("trl")
    try:  # TRL >= 0.2x moved CPO to trl.experimental.cpo; older releases export it at the top level
        from trl.experimental.cpo import CPOConfig, CPOTrainer
    except ImportError:
        from trl import CPOConfig, CPOTrainer
    return CPOConfig, CPOTrainer


def trl_stand_in(beta, gamma):
    """The attributes CPOTrainer.cpo_loss reads, taken from a real CPOConfig as CPOTrainer.__init__ copies them."""
    CPOConfig, _ = trl_cpo()
    cfg = CPOConfig(output_dir=tempfile.mkdtemp(), loss_type="simpo", cpo_alpha=0.0, simpo_gamma=gamma, beta=beta,
                    report_to=[], bf16=False, use_cpu=True)
    return SimpleNamespace(beta=cfg.beta, simpo_gamma=cfg.simpo_gamma, label_smoothing=cfg.label_smoothing,
                           loss_type=cfg.loss_type, alpha=getattr(cfg, "alpha", 0.0), cpo_alpha=cfg.cpo_alpha,
                           accelerator=SimpleNamespace(device=torch.device("cpu")))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("beta, gamma", [(2.0, 1.0), (2.5, 1.25), (0.1, 0.0)])
def test_simpo_matches_trl_cpo_loss(beta, gamma):
    _, CPOTrainer = trl_cpo()
    c, r, cm, rm = two_pairs()
    ours, m = PREFERENCE_LOSSES["simpo"](c, r, cm, rm, beta=beta, gamma=gamma)
    losses, cw, cl = CPOTrainer.cpo_loss(trl_stand_in(beta, gamma), sequence_avg_logp(c, cm), sequence_avg_logp(r, rm))
    assert torch.allclose(ours, losses.mean(), atol=1e-6)
    assert math.isclose(m["reward_margin"], (cw - cl).mean().item(), abs_tol=1e-6)
    assert m["reward_accuracy"] == (cw > cl).float().mean().item()


@pytest.mark.filterwarnings("ignore")
def test_simpo_from_logits_matches_trl_batch_logps():
    """End to end from logits: TRL's get_batch_logps(average_log_prob=True) + cpo_loss vs ours per token."""
    _, CPOTrainer = trl_cpo()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 11, generator=g)  # rows 0-1 chosen, 2-3 rejected, as TRL concatenates them
    labels = torch.randint(0, 11, (4, 7), generator=g)
    labels[:, :2] = -100                         # the prompt
    labels[0, 5:], labels[3, 4:] = -100, -100    # padding
    trl_avg = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=True)
    targets, mask = labels[:, 1:], (labels[:, 1:] != -100).float()
    per_token = logprobs_from_logits(logits[:, :-1], targets.clamp(min=0))
    assert torch.allclose(sequence_avg_logp(per_token, mask), trl_avg, atol=1e-5)
    losses, _, _ = CPOTrainer.cpo_loss(trl_stand_in(2.0, 1.0), trl_avg[:2], trl_avg[2:])
    ours, _ = PREFERENCE_LOSSES["simpo"](per_token[:2], per_token[2:], mask[:2], mask[2:], beta=2.0, gamma=1.0)
    assert torch.allclose(ours, losses.mean(), atol=1e-5)


# ---- the reported numbers as data ----------------------------------------------------------------

REPORTED = __import__("pathlib").Path(__file__).resolve().parents[1] / "experiments/reported/dast/table1.yaml"
METRICS = {"accuracy", "compression", "avg_tokens", "accuracy_change", "length_change", "n_pairs"}


def reported_rows():
    import yaml
    doc = yaml.safe_load(REPORTED.read_text())
    return doc, doc["rows"]


def test_reported_table_follows_its_schema():
    doc, rows = reported_rows()
    required = {"model", "method", "benchmark", "metric", "value", "source", "unconfirmed"}
    for row in rows:
        assert required <= set(row) <= required | {"relative_to", "note"}, row
        assert row["metric"] in METRICS and row["source"] in doc["sources"], row
        assert isinstance(row["value"], (int, float)) and isinstance(row["unconfirmed"], bool), row
        assert ("relative_to" in row) == (row["metric"] in {"compression", "accuracy_change", "length_change"}), row
    keys = [(r["model"], r["method"], r["benchmark"], r["metric"], r["source"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert all(r["unconfirmed"] for r in rows if r["source"].endswith("_secondary"))


def test_reported_values_spot_checks():
    _, rows = reported_rows()
    get = {(r["model"][-3:], r["method"], r["benchmark"], r["metric"], r["source"]): r["value"] for r in rows}
    assert get[("32B", "DAST", "MATH-500", "compression", "dast_main_secondary")] == 46.0
    assert get[("-7B", "DAST", "AIME 2024", "compression", "dast_main_secondary")] == -1.9
    assert get[("32B", "SimPO-Shortest", "AIME 2024", "accuracy", "dast_main_secondary")] == 36.7
    # the re-run's averages follow from its per-benchmark numbers
    bench = ["GSM8K", "MATH-500", "AIME 2024"]
    acc = [get[("-7B", "DAST", b, "accuracy", "adaptthink_t1")] - get[("-7B", "original", b, "accuracy",
                                                                        "adaptthink_t1")] for b in bench]
    lens = [get[("-7B", "DAST", b, "avg_tokens", "adaptthink_t1")] / get[("-7B", "original", b, "avg_tokens",
                                                                            "adaptthink_t1")] - 1 for b in bench]
    mean_key = "mean(GSM8K, MATH-500, AIME 2024)"
    assert round(sum(acc) / 3, 1) == get[("-7B", "DAST", mean_key, "accuracy_change", "adaptthink_t1")] == -3.2
    assert round(100 * sum(lens) / 3, 1) == get[("-7B", "DAST", mean_key, "length_change", "adaptthink_t1")]


def test_check_table_matches_the_rows():
    """experiments/reported/dast/main.yaml (the `check` form) holds exactly table1.yaml's accuracy rows."""
    from replicate.report.check import load_reported
    _, rows = reported_rows()
    names = {"MATH-500": "math500", "AIME 2024": "aime24", "GPQA": "gpqa"}
    want = {(r["model"], r["method"], names[r["benchmark"]]): float(r["value"]) for r in rows
            if r["metric"] == "accuracy" and r["source"] == "dast_main_secondary"}
    assert load_reported("dast/main")["cells"] == want


def test_list_knows_the_dast_results_and_finds_a_missing_spec_by_its_spec_field(capsys):
    """experiments/reported/dast/artifacts.yaml names each result's spec; a spec whose id equals an artifact's id does
    not build it (ids are not unique across papers: table1, main-results), only the spec its `spec:` names does."""
    from replicate.cli import main, unbuilt_artifacts
    from replicate.specs import all_specs
    specs = all_specs()
    assert [item for paper, item in unbuilt_artifacts(specs) if paper == "dast"] == []
    without = {name: path for name, path in specs.items() if path != specs["dast-levels"]}
    assert [(paper, item["id"]) for paper, item in unbuilt_artifacts(without)] == [("dast", "by-level")]
    assert main(["list"]) == 0
    assert "by-level (dast): not built yet" not in capsys.readouterr().out
    without_table1 = {name: path for name, path in specs.items() if path != specs["dast-table1"]}
    assert [item["id"] for _, item in unbuilt_artifacts({**without_table1, "main-table": None})] == ["main-table"]


def test_list_says_so_when_every_artifact_has_a_spec(capsys, monkeypatch):
    import replicate.cli as cli
    monkeypatch.setattr(cli, "unbuilt_artifacts", lambda specs: [])
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("every figure and table listed")
