"""verl backend: spec -> verl 0.9.1 Hydra overrides (composed against verl's own config), log import, CLI dry run.

The compose tests need verl + hydra-core importable (`pip install -e .[verl]`; see pyproject for the antlr4
conflict with math-verify) and are skipped otherwise; the translation and import tests need only our code.
"""
from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest

from replicate.backends.verl import METRIC_MAP, import_verl_log, launch_command, verl_overrides, verl_rows
from replicate.errors import UserError
from replicate.specs import RunConfig, find_spec
from replicate.store import Run

FIXTURE = Path(__file__).parent / "data" / "verl_log.jsonl"
FILES = dict(train_files="/data/dapo/train.parquet", val_files="/data/math500/test.parquet")


def _config(**algorithm) -> RunConfig:
    """A small pretrained-math config: 8 prompts x 4, two mini-batches."""
    return RunConfig.model_validate({
        "model": {"kind": "pretrained", "path": "Qwen/Qwen2.5-0.5B"},
        "task": {"name": "math", "params": {"train": "a.parquet", "validation": "b.parquet"}},
        "algorithm": algorithm, "rollout": {"prompts_per_step": 8, "group_size": 4, "max_new_tokens": 64},
        "train": {"steps": 3, "ppo_mini_batches": 2}})


def _as_dict(overrides: list[str]) -> dict[str, str]:
    pairs = [o.split("=", 1) for o in overrides]
    assert len({k for k, _ in pairs}) == len(pairs), "an override key appears twice"
    return dict(pairs)


def _paper_overrides() -> list[str]:
    cmd = launch_command(find_spec("fig1"), "paper", log_path="/tmp/log.jsonl")
    assert cmd[:5] == ["env", "VERL_FILE_LOGGER_PATH=/tmp/log.jsonl", "python3", "-m", "verl.trainer.main_ppo"]
    return cmd[5:]


def _verl_config_dir() -> Path:
    pytest.importorskip("omegaconf")
    try:
        import hydra  # noqa: F401  (hydra 1.3 fails at import with antlr4 != 4.9.*)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"hydra not importable: {exc}")
    spec = importlib.util.find_spec("verl")  # locate the package without importing it (its __init__ needs ray)
    if spec is None:
        pytest.skip("verl not installed")
    return Path(spec.submodule_search_locations[0]) / "trainer" / "config"


def _compose(overrides: list[str]):
    config_dir = _verl_config_dir()
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def test_paper_preset_overrides_carry_the_official_recipe():
    o = _as_dict(_paper_overrides())
    a = "actor_rollout_ref.actor."
    assert o["data.train_batch_size"] == "256" and o["actor_rollout_ref.rollout.n"] == "8"
    assert o[a + "ppo_mini_batch_size"] == "32" and o[a + "optim.lr"] == "5e-07"
    assert o["data.max_response_length"] == "8192" and o[a + "clip_ratio_c"] == "10.0"
    assert o[a + "clip_ratio_low"] == o[a + "clip_ratio_high"] == "0.2"
    assert o["algorithm.filter_groups.enable"] == "true" and o["algorithm.filter_groups.max_num_gen_batches"] == "10"
    assert o["trainer.total_training_steps"] == "2500" and o["trainer.test_freq"] == "20"
    assert "file" in o["trainer.logger"]


def test_paper_preset_composes_against_verls_own_config():
    cfg = _compose(_paper_overrides())
    from omegaconf import OmegaConf
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert cfg.data.train_batch_size == 256 and rollout.n == 8 and actor.ppo_mini_batch_size == 32
    assert actor.optim.lr == pytest.approx(5e-7) and actor.optim.lr_scheduler_type == "constant"
    assert cfg.data.max_response_length == 8192 and rollout.response_length == 8192
    assert rollout.temperature == 1.0 and cfg.data.max_prompt_length == 2048
    assert actor.clip_ratio == actor.clip_ratio_low == actor.clip_ratio_high == pytest.approx(0.2)
    assert actor.clip_ratio_c == 10 and actor.loss_agg_mode == "token-mean"
    assert actor.policy_loss.loss_mode == "vanilla" and cfg.algorithm.adv_estimator == "grpo"
    assert actor.optim.clip_grad == 1.0 and actor.grad_clip == 1.0
    assert not actor.use_kl_loss and not cfg.algorithm.use_kl_in_reward and actor.entropy_coeff == 0
    assert cfg.algorithm.filter_groups.enable and cfg.algorithm.filter_groups.max_num_gen_batches == 10
    assert cfg.actor_rollout_ref.model.path == "Qwen/Qwen2.5-7B"
    assert list(cfg.trainer.logger) == ["console", "file"] and cfg.trainer.total_training_steps == 2500


def test_compose_rejects_an_unknown_key():
    """The compose check has teeth: a key verl does not have fails."""
    _verl_config_dir()
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException):
        _compose(_paper_overrides() + ["actor_rollout_ref.actor.policy_loss.cov_scope=batch"])


def test_clip_cov_translates_to_its_loss_mode_and_knobs():
    cfg = _config(policy_loss="clip_cov", policy_loss_params={"clip_ratio": 1.0, "clip_cov_ratio": 2e-4,
                                                               "clip_cov_lb": 1.0, "clip_cov_ub": 5.0})
    o = _as_dict(verl_overrides(cfg, **FILES, n_gpus_per_node=1))
    p, a = "actor_rollout_ref.actor.policy_loss.", "actor_rollout_ref.actor."
    assert o[p + "loss_mode"] == "clip_cov" and o[p + "clip_cov_ratio"] == "0.0002"
    assert o[p + "clip_cov_lb"] == "1.0" and o[p + "clip_cov_ub"] == "5.0"
    assert o[a + "clip_ratio_low"] == o[a + "clip_ratio_high"] == "1.0"  # not verl's yaml 0.2
    assert p + "kl_cov_ratio" not in o and a + "clip_ratio_c" not in o


def test_kl_cov_translates_with_the_papers_beta():
    cfg = _config(policy_loss="kl_cov", policy_loss_params={"kl_cov_ratio": 2e-3})
    o = _as_dict(verl_overrides(cfg, **FILES, n_gpus_per_node=1))
    p = "actor_rollout_ref.actor.policy_loss."
    assert o[p + "loss_mode"] == "kl_cov" and o[p + "kl_cov_ratio"] == "0.002"
    assert o[p + "ppo_kl_coef"] == "1.0"  # the paper's beta, not verl's yaml default 0.1
    assert p + "clip_cov_ratio" not in o


def test_cov_configs_compose_in_verl():
    for loss, params in (("clip_cov", {"clip_cov_ratio": 5e-4}), ("kl_cov", {"kl_cov_ratio": 2e-3})):
        cfg = _compose(verl_overrides(_config(policy_loss=loss, policy_loss_params=params), **FILES,
                                      n_gpus_per_node=1))
        pl = cfg.actor_rollout_ref.actor.policy_loss
        assert pl.loss_mode == loss
        assert (pl.clip_cov_ratio if loss == "clip_cov" else pl.kl_cov_ratio) == pytest.approx(
            params.get("clip_cov_ratio", params.get("kl_cov_ratio")))
        assert cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 4 and cfg.actor_rollout_ref.rollout.n == 4


def test_kl_terms_translate():
    cfg = _config(kl_loss_coef=0.01, kl_loss_type="k3", kl_in_reward_coef=0.001, kl_in_reward_type="kl")
    o = _as_dict(verl_overrides(cfg, **FILES, n_gpus_per_node=1))
    assert o["actor_rollout_ref.actor.use_kl_loss"] == "true" and o["actor_rollout_ref.actor.kl_loss_coef"] == "0.01"
    assert o["actor_rollout_ref.actor.kl_loss_type"] == "k3"
    assert o["algorithm.use_kl_in_reward"] == "true" and o["algorithm.kl_ctrl.kl_coef"] == "0.001"


@pytest.mark.parametrize("field, make", [
    ("cov_scope", lambda: _config(policy_loss="kl_cov", cov_scope="batch")),
    ("model.kind", lambda: find_spec("fig1").resolve("tiny")),
    ("task.name", lambda: find_spec("fig1").resolve("tiny").model_copy(
        update={"model": _config().model, "warmup": _config().warmup})),
    ("epsilon", lambda: _config(advantage_params={"epsilon": 1e-3})),
    ("micro_batches", lambda: _config().model_copy(
        update={"train": _config().train.model_copy(update={"micro_batches": 3})})),
])
def test_inexpressible_field_is_a_user_error_naming_it(field, make):
    with pytest.raises(UserError, match=field):
        verl_overrides(make(), **FILES, n_gpus_per_node=1)


def test_log_import_maps_keys_and_aligns_steps(tmp_path):
    run = Run(tmp_path / "fig1" / "paper-main-s0-x")
    assert import_verl_log(FIXTURE, run) == 4
    rows = run.metrics()
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    # our step s = verl step s+1; validation at verl step s (after update s) pairs with our step s
    assert rows[0]["entropy"] == 0.65 and rows[0]["val_acc"] == 0.52
    assert "val_acc" not in rows[1] and rows[2]["val_acc"] == pytest.approx(0.58)
    assert rows[3]["val_acc_after_last_step"] == pytest.approx(0.64) and "val_acc" not in rows[3]
    assert rows[1]["clipfrac"] == pytest.approx(0.004) and rows[1]["ppo_kl"] == pytest.approx(2e-4)
    assert rows[1]["response_length"] == 1700.0 and rows[1]["train_acc"] == pytest.approx(0.5)
    assert rows[1]["grad_norm"] == pytest.approx(0.32)
    assert set(METRIC_MAP.values()) >= {"entropy", "response_length", "clipfrac", "ppo_kl", "grad_norm", "train_acc"}


def test_val_acc_prefers_acc_and_averages_sources():
    steps = {1: {"actor/entropy": 0.5, "val-core/a/reward/mean@4": 0.9, "val-core/a/acc/mean@4": 0.4,
                 "val-core/b/acc/mean@1": 0.2, "val-aux/b/acc/mean@1": 0.99}}
    rows = verl_rows({0: steps[1], 1: {"actor/entropy": 0.4}})
    assert rows[0]["val_acc"] == pytest.approx(0.3)


def test_bad_log_line_is_a_user_error(tmp_path):
    bad = tmp_path / "log.jsonl"
    bad.write_text('{"step": 1, "data": {"actor/entropy": 0.5}}\nnot json\n')
    with pytest.raises(UserError, match=":2:"):
        import_verl_log(bad, Run(tmp_path / "r"))


def test_imported_rows_render_in_panel_curves(tmp_path):
    import matplotlib.pyplot as plt
    from replicate.report.figures import panel_curves
    run = Run(tmp_path / "r")
    import_verl_log(FIXTURE, run)
    fig, ax = plt.subplots()
    panel_curves(ax, {"main": {0: run.metrics()}}, {}, "verl")
    lines = ax.lines + fig.axes[-1].lines
    assert any(list(line.get_ydata()) == [0.65, 0.52, 0.41, 0.33] for line in lines)
    assert any(list(line.get_ydata()) == pytest.approx([0.52, 0.58]) for line in lines)
    plt.close(fig)


def test_cli_dry_run_prints_one_shell_quoted_line(capsys):
    from replicate.cli import main
    assert main(["fig1", "--scale", "paper", "--backend", "verl", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    argv = shlex.split(out[0])
    assert argv[2:5] == ["python3", "-m", "verl.trainer.main_ppo"] and "trainer.logger=[console,file]" in argv
    assert main(["fig1", "--backend", "verl", "--dry-run"]) == 2  # the tiny tier is not expressible


def test_fig11_paper_launch_composes_with_reward_checkpoints_and_seven_val_files(tmp_path):
    """The keys this launch adds (custom_reward_function, trainer.default_local_dir, a list of val files) are
    verl's own: composed against its config, they land where verl reads them."""
    _verl_config_dir()
    cmd = launch_command(find_spec("fig11"), "paper", variant="kl_cov", seed=2, log_path=tmp_path / "log.jsonl",
                         data_dir=tmp_path, checkpoint_dir=str(tmp_path / "ckpt"))
    cfg = _compose(cmd[5:])
    assert cfg.custom_reward_function.name == "compute_score"
    assert cfg.custom_reward_function.path.endswith("replicate/backends/verl/reward.py")
    assert cfg.trainer.default_local_dir == str(tmp_path / "ckpt") and cfg.trainer.resume_mode == "auto"
    assert [Path(f).parent.name for f in cfg.data.val_files] == ["aime24", "aime25", "amc23", "math500", "omni_math",
                                                                 "olympiadbench", "minerva_math"]
    assert cfg.data.seed == 2 and cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "kl_cov"
    # seeds independent all the way down: the data order, vLLM's sampling and the mini-batch split
    assert cfg.actor_rollout_ref.rollout.seed == 2 and cfg.actor_rollout_ref.actor.data_loader_seed == 2
