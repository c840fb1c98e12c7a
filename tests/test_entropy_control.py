"""Entropy control (fig9-fig12, table1, table2): the specs' paper presets against the official recipes, run sharing
between specs, the arm_compare analysis, Table 1's top-fraction means, the difficulty levels, the tiny table.csv
check, and the artifact registry in `list`."""
import json
import math

import numpy as np
import pytest
import torch
import yaml

from replicate.report.check import REPORTED_DIR, run_check
from replicate.specs import find_spec

RECIPES = yaml.safe_load((REPORTED_DIR / "entropy-mechanism" / "recipes.yaml").read_text())
CONTROL_SPECS = ["fig11", "table2"]


@pytest.mark.parametrize("spec_id", CONTROL_SPECS)
def test_paper_preset_mirrors_the_official_recipes(spec_id):
    common, methods = RECIPES["common"], RECIPES["methods"]
    cfgs = find_spec(spec_id).variant_configs("paper")
    names = {"grpo": "GRPO", "clip_higher": "Clip-higher", "clip_cov": "Clip-Cov", "kl_cov": "KL-Cov"}
    assert set(cfgs) == set(names)
    for arm, cfg in cfgs.items():
        ro, tr, alg = cfg.rollout, cfg.train, cfg.algorithm
        assert cfg.model.path == "Qwen/Qwen2.5-7B"
        assert (ro.prompts_per_step, ro.group_size) == (common["prompts_per_step"], common["responses_per_prompt"])
        assert ro.prompts_per_step // tr.ppo_mini_batches == common["ppo_mini_batch_prompts"]
        assert tr.ppo_mini_batches * tr.ppo_epochs == common["updates_per_rollout"]
        assert tr.optimizer.lr == common["lr"]["Qwen2.5-7B"] and tr.grad_clip == common["grad_clip"]
        assert ro.max_new_tokens == common["max_response_length"] and ro.temperature == common["rollout"]["temperature"]
        assert ro.filter_groups is common["dynamic_sampling"]["enabled"]
        assert ro.max_gen_batches == common["dynamic_sampling"]["max_gen_batches"]
        assert alg.kl_loss_coef == 0 and alg.kl_in_reward_coef == 0 and alg.entropy_coeff == common["entropy_coeff"]
        assert alg.loss_agg_mode == common["loss_agg_mode"] and alg.advantage == common["advantage"]
        assert cfg.task.params["train"].endswith("DAPO-Math-17k")
        recipe, p = methods[names[arm]], alg.policy_loss_params
        low = p.get("clip_ratio_low", p.get("clip_ratio"))
        high = p.get("clip_ratio_high", p.get("clip_ratio"))
        if arm == "kl_cov":
            assert alg.policy_loss == "kl_cov" and "clip_ratio" not in p  # no PPO clipping in KL-Cov
            assert p["kl_cov_ratio"] == recipe["k"]["Qwen2.5-7B"] == recipe["k_percent"]["Qwen2.5-7B"] / 100
            assert p["ppo_kl_coef"] == recipe["beta"]
            continue
        assert (low, high) == (recipe["clip_ratio"]["low"], recipe["clip_ratio"]["high"])
        if arm == "clip_cov":
            assert alg.policy_loss == "clip_cov"
            assert (p["clip_cov_ratio"], p["clip_cov_lb"], p["clip_cov_ub"]) == (recipe["ratio"], recipe["lb"], recipe["ub"])
        else:
            assert alg.policy_loss == "vanilla" and p["clip_ratio_c"] == common["dual_clip_c"]


def test_table2_trains_exactly_fig11s_runs_at_every_scale():
    fig11, table2 = find_spec("fig11"), find_spec("table2")
    for scale in ["tiny", *fig11.scales]:
        a, b = fig11.variant_configs(scale), table2.variant_configs(scale)
        assert {k: v.digest() for k, v in a.items()} == {k: v.digest() for k, v in b.items()}, scale
        assert [c.seeds for c in a.values()] == [c.seeds for c in b.values()]


def test_tiny_arms_share_mini_batching_and_kl_cov_has_several_updates():
    for spec_id in ("fig11", "fig9", "fig10"):
        cfgs = find_spec(spec_id).variant_configs("tiny")
        assert len({(c.train.ppo_mini_batches, c.train.micro_batches, c.train.steps) for c in cfgs.values()}) == 1
    assert find_spec("fig11").variant_configs("tiny")["kl_cov"].train.ppo_mini_batches >= 2
    # the GRPO arm of fig9 and fig10 is fig11's (shared through the store)
    ref = find_spec("fig11").variant_configs("tiny")["grpo"].digest()
    assert all(find_spec(s).variant_configs("tiny")["grpo"].digest() == ref for s in ("fig9", "fig10"))


def _finish(run, config, seed, rows):
    from replicate.store import Run
    run = Run(run.path)
    run.begin(config, seed, {})
    for r in rows:
        run.append_metrics(r)
    run.finish()
    return run


def test_a_finished_run_of_another_spec_with_the_same_config_is_shared(tmp_path):
    from replicate.store import Run, shared_run
    cfg = find_spec("fig11").variant_configs("tiny")["grpo"]
    other_cfg = find_spec("fig11").variant_configs("tiny")["clip_higher"]
    mine = Run.for_config(tmp_path, "table2", "grpo", cfg, 0, "tiny")
    assert shared_run(mine, cfg, 0) is None
    theirs = _finish(Run.for_config(tmp_path, "fig11", "grpo", cfg, 0, "tiny"), cfg, 0, [{"step": 0, "entropy": 1.0}])
    assert shared_run(mine, cfg, 0).path == theirs.path
    assert shared_run(Run.for_config(tmp_path, "table2", "grpo", cfg, 1, "tiny"), cfg, 1) is None  # other seed
    assert shared_run(Run.for_config(tmp_path, "table2", "x", other_cfg, 0, "tiny"), other_cfg, 0) is None
    # an arm whose name starts with "s" (fig3's smollm2_135m shares fig1's `main` runs)
    assert shared_run(Run.for_config(tmp_path, "fig3", "smollm2_135m", cfg, 0, "tiny"), cfg, 0).path == theirs.path
    # an unfinished run is not shared
    (theirs.path / "DONE").unlink()
    assert shared_run(mine, cfg, 0) is None


def test_run_rl_reuses_the_shared_run_instead_of_training(tmp_path, monkeypatch):
    import replicate.runners.rl.trainer as trainer
    from replicate.runners.rl import run_rl
    from replicate.store import Run
    spec = find_spec("table2")
    cfg = spec.variant_configs("tiny")["grpo"]
    theirs = _finish(Run.for_config(tmp_path, "fig11", "grpo", cfg, 0, "tiny"), cfg, 0, [{"step": 0, "entropy": 1.0}])
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained a shared run"))
    runs = run_rl(spec, "tiny", {"grpo": cfg}, [0], tmp_path, log=lambda *_: None)
    assert runs["grpo"][0].path == theirs.path


def _rows(entropies, accs, levels=None):
    rows = [{"step": i, "entropy": h, "response_length": 2.0} for i, h in enumerate(entropies)]
    for i, a in zip(range(0, len(rows), len(rows) // len(accs)), accs):
        rows[i]["val_acc"] = a
    rows[-1]["val_acc"] = accs[-1]
    if levels:
        rows[-1].update({f"val_acc_L{k}": v for k, v in levels.items()})
    return rows


def test_arm_compare_pairs_seeds_against_grpo():
    from replicate.analysis import ANALYSES
    flat = lambda h: [h] * 20
    runs = {"grpo": {0: _rows([1.0] * 5 + [0.1] * 15, [0.2, 0.3, 0.3, 0.3], {1: 0.5, 2: 0.3, 3: 0.1}),
                     1: _rows([1.0] * 5 + [0.2] * 15, [0.2, 0.4, 0.4, 0.4], {1: 0.6, 2: 0.4, 3: 0.2})},
            "kl_cov": {0: _rows(flat(0.5), [0.2, 0.35, 0.35, 0.35], {1: 0.6, 2: 0.3, 3: 0.3}),
                       1: _rows(flat(0.4), [0.2, 0.4, 0.4, 0.4], {1: 0.6, 2: 0.4, 3: 0.2})}}
    out = ANALYSES["arm_compare"](runs)
    per = out["per_seed"]
    assert per["entropy_end_minus_ref_end"]["kl_cov"] == pytest.approx([0.4, 0.2])
    assert per["entropy_end_minus_ref_end"]["grpo"] == pytest.approx([0.0, 0.0])  # the reference against itself: 0
    assert per["acc_end_minus_ref"]["kl_cov"] == pytest.approx([0.05, 0.0])
    assert per["entropy_end_over_ref_end"]["kl_cov"] == pytest.approx([5.0, 2.0])
    assert per["entropy_end_log_over_ref_end"]["kl_cov"] == pytest.approx([math.log(5.0), math.log(2.0)])
    assert per["acc_avg"]["grpo"] == pytest.approx([0.3, 0.4])
    assert per["acc_avg_minus_ref"]["kl_cov"] == pytest.approx([0.1, 0.0])
    table = {r["arm"]: r for r in out["table"]}
    assert table["grpo"]["L1"] == pytest.approx(55.0) and table["kl_cov"]["average"] == pytest.approx(40.0)


def test_entropy_peak_is_a_full_window_average_not_the_first_step():
    """A falling entropy whose first step is high (fig9's runs: 0.78 then ~0.66) has no 5-step peak above its
    start; a partial window at step 0 made the peak that one step's value (ratio 1.12 for a run that only falls)."""
    from replicate.analysis.control import SMOOTH, summary
    h = [0.78, 0.71, 0.67, 0.66, 0.65, 0.66] + [0.6 - 0.005 * i for i in range(30)]
    s = summary(_rows(h, [0.2, 0.3, 0.3, 0.3]))
    assert s["entropy_max_smoothed"] == pytest.approx(sum(h[:SMOOTH]) / SMOOTH)  # the first full window
    assert s["entropy_max_smoothed"] / s["entropy_start"] == pytest.approx(1.0)
    rising = [0.5] * 10 + [2.0] * 10  # an explosion is still seen
    assert summary(_rows(rising, [0.2, 0.3]))["entropy_max_smoothed"] == pytest.approx(2.0)


def test_top_fraction_means_rank_the_centred_cross_product():
    from replicate.algorithms import token_covariance, top_fraction_means
    g = torch.Generator().manual_seed(0)
    lp, adv = -torch.rand(4, 50, generator=g) * 3, torch.randn(4, 50, generator=g)
    mask = torch.ones(4, 50)
    mask[:, 40:] = 0
    out = top_fraction_means(lp, adv, mask)
    cov = token_covariance(lp, adv, mask)[mask > 0].sort(descending=True).values
    assert out["n_valid_tokens"] == 160
    assert out["cov_top_0p02"] == pytest.approx(cov[0].item())           # at least one token
    assert out["cov_top_20p0"] == pytest.approx(cov[:32].mean().item())
    assert out["cov_all"] == pytest.approx(cov.mean().item(), abs=1e-6)
    assert out["cov_top_0p02"] >= out["cov_top_2p0"] >= out["cov_top_20p0"] >= out["cov_top_50p0"] >= out["cov_all"]


def test_product_levels_by_last_digits():
    from replicate.tasks import make_task
    task = make_task("short_answer", op="*", operands=[2], digits=[2], level_by="last_digits", holdout=300)
    for p in task.validation:
        a, b = (int(x) % 10 for x in p.prompt[:-1].split("*"))
        assert p.level == (1 if {a, b} & {0, 1} else 2 if 5 in (a, b) else 3)
    assert {p.level for p in task.validation} == {1, 2, 3}
    with pytest.raises(ValueError):
        make_task("short_answer", op="+", level_by="last_digits")


def test_tiny_table_csv_is_checked_for_the_ordering_claims(tmp_path):
    from replicate.experiment import write_table
    table = [{"arm": a, "L1": 50.0, "L1_ci": 1.0, "average": avg, "average_ci": 2.0}
             for a, avg in (("grpo", 30.0), ("clip_higher", 31.0), ("clip_cov", 33.0), ("kl_cov", 29.0))]
    write_table(tmp_path, table, 3)
    res = run_check(tmp_path, "entropy-mechanism/table2", out=tmp_path)
    claims = {c["id"]: c["holds"] for c in res["claims"] if c["model"] == "tiny"}
    assert claims == {"clip_cov_beats_grpo": True, "kl_cov_beats_grpo": False}
    assert all(c["measured"] is None for c in res["cells"])  # nothing of the paper's compared with tiny numbers
    assert "± 2.0" in (tmp_path / "table.md").read_text()


def test_list_shows_every_figure_and_table_of_the_paper(capsys):
    from replicate.cli import main
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    art = yaml.safe_load((REPORTED_DIR / "entropy-mechanism" / "artifacts.yaml").read_text())["artifacts"]
    assert [a["id"] for a in art] == [*(f"fig{i}" for i in range(1, 13)), "table1", "table2"]
    lines = out.splitlines()
    for a in art:
        assert any(line.startswith(a["id"] + " ") or line == a["id"] or line.startswith(a["id"] + " (")
                   for line in lines) or a.get("spec"), a["id"]
    assert "(entropy-mechanism): not built yet" not in out  # every figure and table of the paper has a spec
    from replicate.cli import unbuilt_artifacts
    from replicate.specs import all_specs
    specs = all_specs()
    without_fig3 = {name: path for name, path in specs.items() if path != specs["fig3"]}
    assert [item["id"] for _, item in unbuilt_artifacts(without_fig3)] == ["fig3"]  # a missing spec is listed


def test_knob_trend_and_cov_top_read_the_logged_metrics():
    from replicate.analysis import ANALYSES
    runs = {"grpo": {0: _rows([0.1] * 10, [0.3])},
            "k0.02": {0: _rows([0.2] * 10, [0.3])}, "k0.05": {0: _rows([0.3] * 10, [0.3])},
            "k0.1": {0: _rows([0.5] * 10, [0.3])}}
    out = ANALYSES["knob_trend"](runs)["per_seed"]
    assert out["plateau_rise"] == {"k0.1": [pytest.approx(0.3)]}
    assert out["plateau_spearman"]["k0.1"] == [pytest.approx(1.0)]
    top = {"cov_top_0p02": 5.0, "cov_top_0p2": 5.0, "cov_top_2p0": 2.0, "cov_top_20p0": 0.5, "cov_top_50p0": 0.2,
           "cov_all": 0.01}
    rows = [{"step": i, "entropy": 1.0, **top} for i in range(4)]
    res = ANALYSES["cov_top"]({"grpo": {0: rows}})
    assert res["per_seed"]["cov_top_monotone"]["grpo"] == [1.0]
    assert res["per_seed"]["cov_top2_over_all"]["grpo"] == [pytest.approx(200.0)]
    assert math.isnan(res["per_seed"]["cov_top2_minus_perm"]["grpo"][0])  # rows without the null: not measured
    permuted = [{**r, "perm_cov_top_2p0": 1.5 + 0.1 * r["step"]} for r in rows]  # diffs 0.5, 0.4, 0.3, 0.2
    res = ANALYSES["cov_top"]({"grpo": {0: permuted}})
    assert res["per_seed"]["cov_top2_minus_perm"]["grpo"] == [pytest.approx(0.35)]
    assert res["pooled"]["grpo"]["table1"]["top 2%"] == pytest.approx(2.0)


def test_fig12_and_table1_reuse_fig11s_runs():
    fig11 = {v.digest() for v in find_spec("fig11").variant_configs("tiny").values()}
    fig12 = find_spec("fig12").variant_configs("tiny")
    assert {fig12[a].digest() for a in ("grpo", "r0.05", "k0.05")} <= fig11
    assert find_spec("table1").variant_configs("tiny")["grpo"].digest() in fig11


def test_permutation_null_of_table1_can_fail_and_can_pass():
    """Independent log-probs and advantages: the top-2% / all ratio is >= 10 anyway (the claim it replaces could
    not fail), while the top-2% mean minus its permuted value is ~0; coupled ones (correlation 0.8) give > 0."""
    import torch
    from replicate.algorithms import permuted_top_fraction_means, top_fraction_means
    g = torch.Generator().manual_seed(0)
    lp, noise = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    mask = torch.ones(64, 64)
    diffs, top = {}, {}
    for rho in (0.0, 0.8):
        adv = rho * lp + (1 - rho ** 2) ** 0.5 * noise
        real = top_fraction_means(lp, adv, mask)
        perm = [permuted_top_fraction_means(lp, adv, mask, seed=s)["perm_cov_top_2p0"] for s in range(8)]
        diffs[rho], top[rho] = real["cov_top_2p0"] - sum(perm) / len(perm), real["cov_top_2p0"]
        if rho == 0.0:
            assert abs(real["cov_top_2p0"] / real["cov_all"]) >= 10
    assert abs(diffs[0.0]) < 0.15 * top[0.0] and diffs[0.8] > 1.0
    a = permuted_top_fraction_means(lp, noise, mask, seed=3)
    assert a == permuted_top_fraction_means(lp, noise, mask, seed=3)
    assert a != permuted_top_fraction_means(lp, noise, mask, seed=4)
    assert a["perm_cov_all"] == pytest.approx(top_fraction_means(lp, noise, mask)["cov_all"], abs=0.05)


def test_the_ratio_claims_judge_the_log_which_holds_its_level_under_the_null():
    """The stats audit's F3: when an arm does nothing (its final entropy and GRPO's i.i.d., log-normal with the
    spread of fig11's GRPO runs, SD of the log 0.48), the mean of per-seed ratios sits near exp(0.48^2) = 1.26, so
    '> 1' passes ever more often as seeds grow; the mean of log ratios passes '> 0' at its nominal 2.5%."""
    from replicate.report.claims import verdict
    from replicate.specs import find_spec
    rng = np.random.default_rng(0)
    logs = rng.normal(0, 0.48, (2000, 30)) - rng.normal(0, 0.48, (2000, 30))
    ratio = np.mean([verdict(list(np.exp(x)), ">", 1.0) == "replicated" for x in logs])
    log = np.mean([verdict(list(x), ">", 0.0) == "replicated" for x in logs])
    assert ratio > 0.15 and abs(log - 0.025) < 0.015
    judged = [c for i in ("fig9", "fig10", "fig11") for c in find_spec(i).claims if "over_ref_end" in c.metric]
    assert len(judged) == 5 and all(c.metric.startswith("entropy_end_log_over_ref_end@") for c in judged)
    assert {c.threshold for c in judged} == {0.0, 0.4055}  # log 1 and log 1.5
