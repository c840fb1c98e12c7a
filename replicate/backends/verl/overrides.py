"""A RunConfig as Hydra overrides of verl's `ppo_trainer` config (the spec -> verl translation).

Written against verl 0.9.1 (`verl/trainer/config/ppo_trainer.yaml` and its defaults tree; the V1 trainer,
`trainer.use_v1: true`). Where that version puts things:
- the policy loss is `actor_rollout_ref.actor.policy_loss.loss_mode` (vanilla | clip_cov | kl_cov | ...), with
  `clip_cov_ratio`, `clip_cov_lb`, `clip_cov_ub`, `kl_cov_ratio`, `ppo_kl_coef` beside it; `clip_ratio`,
  `clip_ratio_low`, `clip_ratio_high`, `clip_ratio_c` sit on the actor. The yaml sets clip_ratio_low/high
  to 0.2 explicitly (not null), so both are always emitted: setting `clip_ratio` alone would not move them.
- dynamic sampling is `algorithm.filter_groups.{enable,metric,max_num_gen_batches}` in the main config; the
  V1 ReplayBuffer of 0.9.1 logs that it ignores max_num_gen_batches (it refills filtered groups without a cap).
- gradient clipping is read by the engine from `actor.optim.clip_grad`; the legacy worker reads
  `actor.grad_clip`. Both are set.
- Clip-Cov / KL-Cov select tokens per micro-batch (`ppo_micro_batch_size_per_gpu`), so `cov_scope: batch`
  cannot be expressed.
- the reward: `custom_reward_function.{path,name}` names a file and a function that verl's reward manager
  calls as `fn(data_source=, solution_str=, ground_truth=, extra_info=)` (verl/trainer/ppo/reward.py,
  workers/reward_manager/naive.py); see reward.py.
- `trainer.default_local_dir` holds verl's checkpoints; with `trainer.resume_mode: auto` (its default) a
  relaunch continues from the newest one there.
"""
from __future__ import annotations

from pathlib import Path

from replicate.errors import UserError
from replicate.algorithms import POLICY_LOSSES
from replicate.config import RunConfig

VERL_VERSION = "0.9.1"
ADVANTAGES = {"grpo": "grpo", "rloo": "rloo", "reinforce_plus_plus": "reinforce_plus_plus",
              "reinforce_plus_plus_baseline": "reinforce_plus_plus_baseline", "gae": "gae"}
LOSS_MODES = ("vanilla", "clip_cov", "kl_cov")


def _fmt(value) -> str:
    """A Python value as a Hydra override value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if text and all(c.isalnum() or c in "/._-~:+" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_expressible(config: RunConfig):
    """UserError naming the first spec field verl cannot express."""
    alg, pl = config.algorithm, config.algorithm.policy_loss_params
    if config.model.kind != "pretrained":
        raise UserError(f"model.kind {config.model.kind!r}: verl trains pretrained HF models only; "
                        "use --backend ours for the tiny tier")
    if config.task.name != "math":
        raise UserError(f"task.name {config.task.name!r}: the verl backend runs the math task only "
                        "(verl's rule rewards score \\boxed{} answers)")
    if alg.advantage not in ADVANTAGES:
        raise UserError(f"algorithm.advantage {alg.advantage!r} has no verl estimator; "
                        f"choose one of {', '.join(ADVANTAGES)}")
    if alg.policy_loss not in LOSS_MODES:
        raise UserError(f"algorithm.policy_loss {alg.policy_loss!r} has no verl loss_mode; "
                        f"choose one of {', '.join(LOSS_MODES)}")
    if alg.cov_scope != "microbatch" and POLICY_LOSSES[alg.policy_loss].select is not None:
        raise UserError("algorithm.cov_scope 'batch': verl selects Clip-Cov/KL-Cov tokens per micro-batch only; "
                        "use cov_scope: microbatch or --backend ours")
    if alg.advantage_params.get("epsilon", 1e-6) != 1e-6:
        raise UserError("algorithm.advantage_params.epsilon: verl fixes GRPO's epsilon at 1e-6")
    if config.warmup.steps:
        raise UserError("warmup.steps: verl has no supervised warm-up; set warmup.steps: 0")
    if config.train.probe_prompts:
        raise UserError("train.probe_prompts: verl logs no probe entropy change; set it to 0")
    if config.rollout.stop:
        raise UserError("rollout.stop: this backend passes no stop strings to verl's rollout; remove it or use "
                        "--backend ours")


def _algorithm_overrides(config: RunConfig) -> list[str]:
    alg, ro = config.algorithm, config.rollout
    adv = alg.advantage_params
    out = {
        "algorithm.adv_estimator": ADVANTAGES[alg.advantage],
        "algorithm.norm_adv_by_std_in_grpo": adv.get("norm_adv_by_std_in_grpo", True),
        "algorithm.gamma": float(adv.get("gamma", 1.0)),
        "algorithm.lam": float(adv.get("lam", 1.0)),
        "algorithm.use_kl_in_reward": alg.kl_in_reward_coef > 0,
        "algorithm.kl_penalty": alg.kl_in_reward_type,
        "algorithm.kl_ctrl.kl_coef": float(alg.kl_in_reward_coef),
        "algorithm.filter_groups.enable": ro.filter_groups,
        "algorithm.filter_groups.metric": "reward",  # verl's canonical sequence reward
        "algorithm.filter_groups.max_num_gen_batches": ro.max_gen_batches if ro.filter_groups else 0,
    }
    if alg.advantage == "gae":
        out.update({"critic.optim.lr": float(alg.critic_lr), "critic.cliprange_value": float(alg.cliprange_value),
                    "critic.model.path": config.model.path})
    return [f"{k}={_fmt(v)}" for k, v in out.items()]


def _loss_overrides(config: RunConfig) -> dict:
    """The policy loss: loss_mode, its knobs, and the PPO clip range (low/high always explicit)."""
    alg, pl = config.algorithm, config.algorithm.policy_loss_params
    a, p = "actor_rollout_ref.actor.", "actor_rollout_ref.actor.policy_loss."
    clip = float(pl.get("clip_ratio", 0.2))
    out = {p + "loss_mode": alg.policy_loss, a + "loss_agg_mode": alg.loss_agg_mode, a + "clip_ratio": clip,
           a + "clip_ratio_low": float(clip if pl.get("clip_ratio_low") is None else pl["clip_ratio_low"]),
           a + "clip_ratio_high": float(clip if pl.get("clip_ratio_high") is None else pl["clip_ratio_high"])}
    if alg.policy_loss == "vanilla":
        out[a + "clip_ratio_c"] = float(pl.get("clip_ratio_c", 3.0))
    elif alg.policy_loss == "clip_cov":
        out.update({p + "clip_cov_ratio": float(pl.get("clip_cov_ratio", 2e-4)),
                    p + "clip_cov_lb": float(pl.get("clip_cov_lb", 1.0)),
                    p + "clip_cov_ub": float(pl.get("clip_cov_ub", 5.0))})
    else:  # kl_cov; verl's yaml default ppo_kl_coef is 0.1, ours (the paper's) is 1
        out.update({p + "kl_cov_ratio": float(pl.get("kl_cov_ratio", 2e-4)),
                    p + "ppo_kl_coef": float(pl.get("ppo_kl_coef", 1.0))})
    return out


def _micro_batch_per_gpu(config: RunConfig, world: int) -> int:
    seqs = config.rollout.prompts_per_step // config.train.ppo_mini_batches * config.rollout.group_size
    per_gpu, rem = divmod(seqs, world * config.train.micro_batches)
    if rem or not per_gpu:
        raise UserError(f"train.micro_batches ({config.train.micro_batches}) x {world} GPUs must divide a "
                        f"mini-batch of {seqs} responses")
    return per_gpu


def _actor_overrides(config: RunConfig, world: int) -> list[str]:
    alg, tr, opt = config.algorithm, config.train, config.train.optimizer
    a = "actor_rollout_ref.actor."
    micro = _micro_batch_per_gpu(config, world)
    out = {
        "actor_rollout_ref.model.path": config.model.path,
        a + "ppo_mini_batch_size": config.rollout.prompts_per_step // tr.ppo_mini_batches,  # in prompts
        a + "ppo_micro_batch_size_per_gpu": micro,
        a + "ppo_epochs": tr.ppo_epochs,
        **_loss_overrides(config),
        a + "entropy_coeff": float(alg.entropy_coeff),
        a + "use_kl_loss": alg.kl_loss_coef > 0,
        a + "kl_loss_coef": float(alg.kl_loss_coef),
        a + "kl_loss_type": alg.kl_loss_type,
        a + "grad_clip": float(tr.grad_clip),
        a + "optim.clip_grad": float(tr.grad_clip),
        a + "optim.optimizer": {"adamw": "AdamW", "sgd": "SGD"}[opt.name],
        a + "optim.lr": float(opt.lr),
        a + "optim.weight_decay": float(opt.weight_decay),
        a + "optim.betas": [float(b) for b in opt.betas],
        a + "optim.lr_scheduler_type": "constant",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": micro,
    }
    return [f"{k}={_fmt(v)}" for k, v in out.items()]


def _rollout_data_overrides(config: RunConfig, train_files: str, val_files: str, max_prompt_length: int,
                            seed: int) -> list[str]:
    ro, ev = config.rollout, config.eval
    r = "actor_rollout_ref.rollout."
    out = {
        r + "name": "vllm",
        r + "n": ro.group_size,
        r + "temperature": float(ro.temperature),
        r + "top_p": 1.0,
        r + "top_k": -1,
        r + "val_kwargs.n": ev.k,
        r + "val_kwargs.temperature": float(ev.temperature),
        r + "val_kwargs.do_sample": ev.temperature > 0,
        "data.train_files": train_files,
        "data.val_files": val_files,
        "data.train_batch_size": ro.prompts_per_step,
        "data.max_prompt_length": max_prompt_length,
        "data.max_response_length": ro.max_new_tokens,
        "data.val_max_samples": ev.n_prompts,
        "data.seed": seed,  # the shuffle of the training prompts
        r + "seed": seed,  # vLLM's sampling (verl's default 42 for every run: seeds would share their samples)
        "actor_rollout_ref.actor.data_loader_seed": seed,  # the split of a rollout batch into mini-batches
    }
    return [f"{k}={_fmt(v)}" for k, v in out.items()]


def _trainer_overrides(config: RunConfig, project: str, experiment: str, n_gpus_per_node: int,
                       nnodes: int) -> list[str]:
    tr = config.train
    out = {
        "trainer.project_name": project,
        "trainer.experiment_name": experiment,
        "trainer.logger": ["console", "file"],  # file: JSON lines at $VERL_FILE_LOGGER_PATH, read by import_verl_log
        "trainer.total_training_steps": tr.steps,
        "trainer.total_epochs": 100000,  # total_training_steps decides; verl also stops after total_epochs
        "trainer.test_freq": config.eval.every,
        "trainer.val_before_train": True,
        "trainer.save_freq": tr.checkpoint_every,
        "trainer.max_actor_ckpt_to_keep": 1,  # resume needs the last one only
        "trainer.n_gpus_per_node": n_gpus_per_node,
        "trainer.nnodes": nnodes,
    }
    return [f"{k}={_fmt(v)}" for k, v in out.items()]


def verl_overrides(config: RunConfig, *, train_files: str, val_files: str | list[str], seed: int = 0,
                   n_gpus_per_node: int = 8, nnodes: int = 1, max_prompt_length: int = 2048,
                   project: str = "replicate", experiment: str = "run", reward: str = "ours",
                   checkpoint_dir: str | None = None) -> list[str]:
    """The spec as Hydra overrides of verl 0.9.1's `ppo_trainer` config (see the module docstring).

    Batch sizes: data.train_batch_size and ppo_mini_batch_size count prompts (verl multiplies by rollout.n);
    max_prompt_length is not in our spec (the official recipe uses 2,048). reward: "ours" (evaluators.math
    through reward.py, the default) or "verl-rule" (verl's math_dapo rule, also through reward.py: verl's
    default router does not know the benchmark names of our parquet files). Raises UserError naming a spec
    field verl cannot express.
    """
    check_expressible(config)
    world = n_gpus_per_node * nnodes
    extra = [f"trainer.default_local_dir={_fmt(checkpoint_dir)}"] if checkpoint_dir else []
    return [*_algorithm_overrides(config), *_actor_overrides(config, world),
            *_rollout_data_overrides(config, train_files, val_files, max_prompt_length, seed),
            *_trainer_overrides(config, project, experiment, n_gpus_per_node, nnodes),
            *reward_overrides(reward), *extra]


REWARDS = {"ours": "compute_score", "verl-rule": "compute_score_verl_rule"}


def reward_overrides(reward: str) -> list[str]:
    """custom_reward_function pointing at reward.py's function for `reward` (a file path: verl loads it by path)."""
    if reward not in REWARDS:
        raise UserError(f"--reward {reward!r}: choose one of {', '.join(REWARDS)}")
    from . import reward as module
    return [f"custom_reward_function.path={_fmt(str(Path(module.__file__).resolve()))}",
            f"custom_reward_function.name={REWARDS[reward]}"]
