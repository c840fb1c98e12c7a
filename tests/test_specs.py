"""The spec loader: valid specs load, every scale resolves, and bad input gets a one-line error with a line."""
import re

import pytest

from replicate.errors import UserError
from replicate.paths import experiments_dir
from replicate.specs import all_specs, find_spec, load_spec
from replicate.tasks import TASKS
from conftest import TINY_SPEC, write


def test_every_shipped_spec_loads_at_every_scale():
    files = set(all_specs().values())
    assert files, "no specs in experiments/"
    for path in files:
        spec = load_spec(path)
        if spec.runner == "lemma_exact":  # pure math, no model or task
            assert not spec.body
            continue
        for scale in [spec.default_scale, *spec.scales]:
            for cfg in spec.variant_configs(scale).values():
                # the tiny tier never downloads (a model built from a config, a synthetic task); the others load one
                assert (cfg.model.kind == "tiny") == (scale == "tiny"), (path, scale)
                synthetic = TASKS[cfg.task.name].alphabet is not None  # made in-process, no data set
                assert synthetic == (scale == "tiny"), (path, scale)
                assert len(set(cfg.seeds)) == len(cfg.seeds) >= 1


def test_fig1_paper_scale_mirrors_the_official_recipe():
    cfg = find_spec("fig1").resolve("paper")
    assert cfg.model.path == "Qwen/Qwen2.5-7B"
    assert (cfg.rollout.prompts_per_step, cfg.rollout.group_size) == (256, 8)
    assert cfg.rollout.prompts_per_step // cfg.train.ppo_mini_batches == 32  # mini-batch of 32 prompts
    assert cfg.train.optimizer.lr == 5e-7 and cfg.rollout.max_new_tokens == 8192 and cfg.rollout.temperature == 1.0
    assert cfg.algorithm.kl_loss_coef == 0 and cfg.algorithm.entropy_coeff == 0
    assert find_spec("teaser").id == "fig1"


def _err(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        load_spec(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_malformed_yaml_names_the_line(tmp_path):
    msg = _err(tmp_path, TINY_SPEC.replace("  seeds: [0, 1]", "  seeds: [0, 1"))
    assert "malformed YAML" in msg and re.search(r"bad\.yaml:\d+:", msg)


def test_unknown_advantage_names_the_line_and_the_choices(tmp_path):
    text = TINY_SPEC.replace("advantage: grpo", "advantage: grpoo")
    msg = _err(tmp_path, text)
    line = text.splitlines().index("  algorithm: {advantage: grpoo, policy_loss: vanilla}") + 1
    assert f"bad.yaml:{line}:" in msg and "grpoo" in msg and "rloo" in msg


def test_unknown_policy_loss_and_bad_hparam(tmp_path):
    assert "unknown policy loss 'ppo'" in _err(tmp_path, TINY_SPEC.replace("policy_loss: vanilla", "policy_loss: ppo"))
    msg = _err(tmp_path, TINY_SPEC.replace("policy_loss: vanilla", "policy_loss: kl_cov, policy_loss_params: {clip_cov_ratio: 0.1}"))
    assert "takes no hyperparameter 'clip_cov_ratio'" in msg and "kl_cov_ratio" in msg


def test_prime_hyperparameters_are_checked(tmp_path):
    prime = "advantage: prime, advantage_params: {beta: %s}, prm_lr: %s, policy_loss: vanilla"
    for beta, lr, want in (("0.0", "1.0e-3", "beta (the implicit reward's scale) must be > 0"),
                           ("-1", "1.0e-3", "must be > 0"), ("0.05", "0", "prm_lr"), ("big", "1.0e-3", "beta must be float")):
        msg = _err(tmp_path, TINY_SPEC.replace("advantage: grpo, policy_loss: vanilla", prime % (beta, lr)))
        assert want in msg and "\n" not in msg
    good = write(tmp_path, TINY_SPEC.replace("advantage: grpo, policy_loss: vanilla", prime % ("0.05", "1.0e-3")), "ok.yaml")
    assert load_spec(good).resolve().algorithm.prm_lr == 1e-3


def test_unknown_field_and_missing_field(tmp_path):
    assert "unknown field 'temprature'" in _err(tmp_path, TINY_SPEC.replace("max_new_tokens: 8", "max_new_tokens: 8, temprature: 1"))
    assert "required field is missing" in _err(tmp_path, TINY_SPEC.replace("paper: entropy-mechanism\n", ""))


def test_error_in_a_scale_override_points_at_the_override(tmp_path):
    text = TINY_SPEC.replace("analyses:", "scales:\n  small:\n    rollout: {group_size: 0}\nanalyses:")
    msg = _err(tmp_path, text)
    assert "scales.small.rollout.group_size" in msg


def test_mini_batches_must_divide_prompts(tmp_path):
    assert "must divide" in _err(tmp_path, TINY_SPEC.replace("ppo_mini_batches: 2", "ppo_mini_batches: 3"))


def test_unknown_spec_id_and_missing_file():
    with pytest.raises(UserError, match="unknown spec 'fig99'.*fig1"):
        find_spec("fig99")
    with pytest.raises(UserError, match="does not exist"):
        load_spec(experiments_dir() / "nope.yaml")


def test_missing_model_path_is_a_user_error():
    from replicate.runners.rl.models import load_pretrained
    with pytest.raises(UserError, match="does not exist; fix model.path"):
        load_pretrained("/nonexistent/model/dir")


def test_an_unreachable_hub_id_names_the_local_copy_fix(monkeypatch):
    """Offline, a hub id fails at once (HF_HUB_OFFLINE) with the fix a researcher can apply from the command line."""
    from replicate.runners.rl.models import load_pretrained
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read from the environment at import
    with pytest.raises(UserError, match=r"could not load model 'no-such-org/no-such-model'.*--set model.path=/local/dir"):
        load_pretrained("no-such-org/no-such-model")


def test_tuning_seeds_are_never_judged_in_any_shipped_spec():
    """Every shipped spec loads, so none judges a seed it was tuned on (load_spec refuses that); the DAST specs
    name seeds 100-102, the ones docs/testbed/dast.md tuned on (third round)."""
    from replicate.runners import RUNNERS
    for path in set(all_specs().values()):
        spec = load_spec(path)
        scales = [spec.default_scale, *spec.scales]
        judged = ({s for scale in scales for c in spec.variant_configs(scale).values() for s in c.seeds}
                  if RUNNERS[spec.runner].trains else set(spec.runner_params.get("seeds", [0, 1, 2])))
        assert not set(spec.tuning_seeds) & judged, path
    for name in ("dast-table1", "dast-levels", "dast-ablation"):
        assert find_spec(name).tuning_seeds == [100, 101, 102]


def test_a_tuning_seed_that_is_judged_is_refused_at_its_line(tmp_path):
    from conftest import TINY_SPEC
    path = tmp_path / "t.yaml"
    path.write_text(TINY_SPEC + "tuning_seeds: [1, 100]\n")
    with pytest.raises(UserError) as err:
        load_spec(path)
    line = TINY_SPEC.count("\n") + 1
    assert str(err.value).startswith(f"{path}:{line}: tuning_seeds: seeds [1] are tuning seeds and also judged")
    path.write_text(TINY_SPEC + "tuning_seeds: [100]\n")
    assert load_spec(path).tuning_seeds == [100]


def test_a_control_row_must_use_the_rule_of_the_claim_it_controls(tmp_path):
    from conftest import TINY_SPEC
    ctrl = ('  - {id: c2, statement: "control", source: test, metric: entropy_final_over_initial, op: "<=", '
            'threshold: 0.5, control_of: c1}\n')
    path = tmp_path / "t.yaml"
    path.write_text(TINY_SPEC + ctrl)
    with pytest.raises(UserError, match="a control is judged by the same rule as 'c1'; set op '<=', threshold 1.0"):
        load_spec(path)
    path.write_text(TINY_SPEC + ctrl.replace("c1}", "nope}"))
    with pytest.raises(UserError, match="control_of names no claim"):
        load_spec(path)
    path.write_text(TINY_SPEC + ctrl.replace("0.5", "1.0"))
    assert load_spec(path).claims[1].control_of == "c1"


def test_a_key_given_twice_is_an_error_at_its_line(tmp_path):
    """YAML keeps the last of two equal keys; a second `body:` once silently dropped a spec's testbed pin."""
    from replicate.errors import UserError
    from replicate.specs import load_spec
    path = tmp_path / "twice.yaml"
    path.write_text("id: twice\npaper: p\nreproduces: 'x'\nbody:\n  seeds: [0]\nbody: {seeds: [1]}\n")
    with pytest.raises(UserError, match=r"twice.yaml:6: 'body' is given twice \(first at line 4\)"):
        load_spec(path)


def test_no_shipped_spec_gives_a_key_twice():
    from replicate.specs import all_specs, load_spec
    for path in set(all_specs().values()):
        load_spec(path)


def _two_arm_spec(panels: str, b_small: str = "{train: {steps: 4}}") -> str:
    """TINY_SPEC with a small scale and two arms: `a` not at small scale, `b` only at small scale."""
    return TINY_SPEC.replace("analyses:", f"""scales:
  small: {{seeds: [5]}}
variants:
  - {{name: a, scales: {{small: null}}}}
  - {{name: b, scales: {{tiny: null, small: {b_small}}}}}
analyses:""").replace("panels: [{kind: curves}, {kind: law_fit}]", f"panels: {panels}").replace(
        "analyses: [exp_law, early_share]", "analyses: [exp_law, early_share, law_per_run]").replace(
        "metric: entropy_final_over_initial,", "metric: fit_r2@all, over: every,")


def test_an_arm_set_to_null_at_a_scale_does_not_run_there(tmp_path):
    spec = load_spec(write(tmp_path, _two_arm_spec("[{kind: curves, arms: [a]}, {kind: curves, arms: [b]}]"), "t.yaml"))
    assert list(spec.variant_configs("tiny")) == ["a"]
    small = spec.variant_configs("small")
    assert list(small) == ["b"] and small["b"].train.steps == 4 and small["b"].seeds == [5]


def test_a_scale_where_no_arm_or_no_panel_runs_is_refused_at_its_line(tmp_path):
    msg = _err(tmp_path, _two_arm_spec("[{kind: curves, arms: [a]}]"))
    assert "no panel draws only arms that run at scale small (b)" in msg and re.search(r":\d+", msg)
    msg = _err(tmp_path, _two_arm_spec("[{kind: curves}]", b_small="null"))
    assert "every arm is null at scale small" in msg
    msg = _err(tmp_path, _two_arm_spec("[{kind: curves}]").replace("fit_r2@all", "fit_r2@a"))
    assert "judges arm 'a', which does not run at scale small" in msg


@pytest.mark.parametrize("arm", ["all", "unit"])
def test_a_mean_over_runs_of_one_seed_is_refused_at_its_line(tmp_path, arm):
    """The runs (or warm-ups) of one seed share its data and sampling streams: a claim on their mean must judge one
    value per seed (@seed); over every run they may be pooled."""
    src = (experiments_dir() / "entropy-mechanism" / "fig3.yaml").read_text()
    assert "metric: exp_vs_linear_heldout_ratio@seed" in src
    path = tmp_path / "fig3.yaml"
    path.write_text(src.replace("metric: exp_vs_linear_heldout_ratio@seed", f"metric: exp_vs_linear_heldout_ratio@{arm}"))
    with pytest.raises(UserError) as err:
        load_spec(path)
    metric_line = src[:src.index("metric: exp_vs_linear_heldout_ratio@seed")].count("\n") + 1
    claims_line = src[:src.index("\nclaims:")].count("\n") + 2
    msg = str(err.value)
    assert msg.startswith(f"{path}:") and "counts runs of one seed as independent" in msg
    assert "judge exp_vs_linear_heldout_ratio@seed" in msg
    assert claims_line < int(msg[len(str(path)) + 1:].split(":")[0]) <= metric_line  # at the claim, not the top
    path.write_text(src)
    assert load_spec(path).claims[1].metric.endswith("@seed")


def test_a_pseudo_arm_no_analysis_records_is_refused(tmp_path):
    """@seed exists only where an analysis records it (not the sharpening null's per-run gain): a claim on it would
    have no values; and the advice for a mean over @all names @seed only where it exists."""
    src = (experiments_dir() / "entropy-mechanism" / "fig3.yaml").read_text()
    every = 'metric: rl_gain_over_sharpening@all\n    op: ">"\n    threshold: 0.0\n    over: every\n'
    assert every in src
    path = tmp_path / "fig3.yaml"
    for claim, want in (('metric: rl_gain_over_sharpening@seed\n    op: ">"\n    threshold: 0.0\n    over: every\n',
                         "no analysis of this spec records rl_gain_over_sharpening under @seed; it has @all"),
                        ('metric: rl_gain_over_sharpening@all\n    op: ">"\n    threshold: 0.0\n',
                         "counts runs of one seed as independent (they share its streams); set over: every")):
        path.write_text(src.replace(every, claim))
        with pytest.raises(UserError, match=re.escape(want)):
            load_spec(path)
