"""verl as the paper-scale backend: a RunConfig as verl's Hydra overrides, the launch command, the log importer.

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

verl reads parquet data (`data.train_files`, `data.val_files`) whose rows carry `prompt` (chat messages),
`data_source` (selects verl's rule reward, e.g. math_dapo) and `reward_model.ground_truth`. The user prepares
them: a task param that ends in .parquet is used as is, anything else maps to
`<data_dir>/<source with / as __>/<split>.parquet` (data_dir: $VERL_DATA_DIR or data/verl).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from ..errors import UserError
from ..algorithms import POLICY_LOSSES
from replicate.config import RunConfig

VERL_VERSION = "0.9.1"
ADVANTAGES = {"grpo": "grpo", "rloo": "rloo", "reinforce_plus_plus": "reinforce_plus_plus",
              "reinforce_plus_plus_baseline": "reinforce_plus_plus_baseline", "gae": "gae"}
LOSS_MODES = ("vanilla", "clip_cov", "kl_cov")
# verl's key in its file logger's `data` -> our metrics.jsonl key (verl/trainer/ppo/metric_utils.py,
# core_algos.py, v1/trainer_base.py). val_acc comes from the val-core keys, see _val_acc.
METRIC_MAP = {
    "actor/entropy": "entropy",
    "response_length/mean": "response_length",
    "actor/pg_clipfrac": "clipfrac",
    "actor/pg_clipfrac_lower": "clipfrac_lower",
    "actor/ppo_kl": "ppo_kl",
    "actor/grad_norm": "grad_norm",
    "actor/pg_loss": "pg_loss",
    "actor/lr": "lr",
    "critic/score/mean": "train_acc",  # mean sequence score: the accuracy under a 0/1 verifier
    "critic/vf_loss": "vf_loss",
    "timing_s/step": "wall_time",
}


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
        "data.seed": seed,
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


def verl_overrides(config: RunConfig, *, train_files: str, val_files: str, seed: int = 0,
                   n_gpus_per_node: int = 8, nnodes: int = 1, max_prompt_length: int = 2048,
                   project: str = "replicate", experiment: str = "run") -> list[str]:
    """The spec as Hydra overrides of verl 0.9.1's `ppo_trainer` config (see the module docstring).

    Batch sizes: data.train_batch_size and ppo_mini_batch_size count prompts (verl multiplies by rollout.n);
    max_prompt_length is not in our spec (the official recipe uses 2,048). Raises UserError naming a spec
    field verl cannot express.
    """
    check_expressible(config)
    world = n_gpus_per_node * nnodes
    return [*_algorithm_overrides(config), *_actor_overrides(config, world),
            *_rollout_data_overrides(config, train_files, val_files, max_prompt_length, seed),
            *_trainer_overrides(config, project, experiment, n_gpus_per_node, nnodes)]


def parquet_path(source: str, split: str, data_dir: str | Path | None = None) -> str:
    """A task's data source as the parquet file verl reads (the user prepares it; see the module docstring)."""
    if source.endswith(".parquet"):
        return source
    root = Path(data_dir or os.environ.get("VERL_DATA_DIR", "data/verl"))
    return str(root / source.replace("/", "__") / f"{split}.parquet")


def data_files(config: RunConfig, data_dir=None) -> tuple[str, str]:
    p = config.task.params
    train = parquet_path(p["train"], p.get("train_split", "train"), data_dir)
    if not p.get("validation"):
        raise UserError("task.params.validation: the verl backend needs a separate validation set (parquet)")
    return train, parquet_path(p["validation"], p.get("validation_split", "test"), data_dir)


def launch_command(spec, scale: str | None = None, *, variant: str = "main", seed: int | None = None,
                   log_path: str | Path = "verl_log.jsonl", data_dir=None, n_gpus_per_node: int = 8,
                   nnodes: int = 1) -> list[str]:
    """`env VERL_FILE_LOGGER_PATH=<log> python3 -m verl.trainer.main_ppo <overrides>` for one arm and seed."""
    configs = spec.variant_configs(scale)
    if variant not in configs:
        raise UserError(f"{spec.id} has no variant {variant!r}; it has {', '.join(configs)}")
    config = configs[variant]
    seed = config.seeds[0] if seed is None else seed
    check_expressible(config)
    train, val = data_files(config, data_dir)
    overrides = verl_overrides(config, train_files=train, val_files=val, seed=seed, n_gpus_per_node=n_gpus_per_node,
                               nnodes=nnodes, project=f"replicate-{spec.id}",
                               experiment=f"{scale or spec.default_scale}-{variant}-s{seed}")
    return ["env", f"VERL_FILE_LOGGER_PATH={log_path}", "python3", "-m", "verl.trainer.main_ppo", *overrides]


def _val_acc(data: dict) -> float | None:
    """Mean over data sources of `val-core/<source>/acc/mean@N` (else `.../reward/mean@N`), N the largest."""
    best: dict[str, tuple[int, int, float]] = {}  # source -> (acc preferred, N, value)
    for key, value in data.items():
        parts = key.split("/")  # val-core/<data source, may contain "/">/<var>/<metric>
        if len(parts) < 4 or parts[0] != "val-core" or not parts[-1].startswith("mean@"):
            continue
        source, var, metric = "/".join(parts[1:-2]), parts[-2], parts[-1]
        if var not in ("acc", "reward"):
            continue
        rank = (var == "acc", int(metric.split("@")[1]), float(value))
        if source not in best or rank[:2] > best[source][:2]:
            best[source] = rank
    return sum(r[2] for r in best.values()) / len(best) if best else None


def read_verl_log(log_path: str | Path) -> dict[int, dict]:
    """verl's FileLogger lines, `{"step": global_step, "data": {metric: value}}`, merged per step."""
    steps: dict[int, dict] = {}
    with open(log_path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                steps.setdefault(int(rec["step"]), {}).update(rec["data"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{log_path}:{n}: not a verl file-logger line ({exc})") from None
    return steps


def verl_rows(steps: dict[int, dict]) -> list[dict]:
    """Our metrics rows from verl's per-step dicts.

    verl counts training steps from 1 and validates after the update (step 0: before training); our step s is
    verl's step s+1, and our val_acc at s is the policy before update s, i.e. verl's validation at step s.
    A validation after the last update has no training step of ours; it goes to the last row as
    `val_acc_after_last_step`.
    """
    rows: dict[int, dict] = {}
    for vstep, data in sorted(steps.items()):
        train = {ours: float(data[theirs]) for theirs, ours in METRIC_MAP.items() if theirs in data}
        if train:
            rows.setdefault(vstep - 1, {}).update(train)
        acc = _val_acc(data)
        if acc is not None:
            rows.setdefault(vstep, {})["val_acc"] = acc
    out = [{"step": s, **r} for s, r in sorted(rows.items()) if s >= 0]
    while out and "entropy" not in out[-1]:
        last = out.pop()
        if out and "val_acc" in last:
            out[-1]["val_acc_after_last_step"] = last["val_acc"]
    return out


def import_verl_log(log_path: str | Path, run) -> int:
    """Write verl's logged metrics as `run`'s metrics.jsonl (replacing it); returns the number of rows."""
    rows = verl_rows(read_verl_log(log_path))
    run.path.mkdir(parents=True, exist_ok=True)
    run.metrics_file.unlink(missing_ok=True)
    for row in rows:
        run.append_metrics(row)
    return len(rows)


def run_or_print(spec, scale: str | None, dry_run: bool, *, store=None, seed: int | None = None, data_dir=None,
                 n_gpus_per_node: int = 8, nnodes: int = 1) -> list:
    """Dry run: print each arm's launch command, shell-quoted on one line. Else launch verl per arm (first seed),
    then import its log into the run store. Returns the commands (dry run) or the Runs."""
    from ..store import Run, store_root
    scale = scale or spec.default_scale
    results = []
    for variant, config in spec.variant_configs(scale).items():
        s = config.seeds[0] if seed is None else seed
        run = Run.for_config(store_root(store), spec.id, variant, config, s, scale)
        log = run.path / "verl_log.jsonl"
        cmd = launch_command(spec, scale, variant=variant, seed=s, log_path=log, data_dir=data_dir,
                             n_gpus_per_node=n_gpus_per_node, nnodes=nnodes)
        if dry_run:
            print(shlex.join(cmd))
            results.append(cmd)
            continue
        for path in data_files(config, data_dir):
            if not Path(path).exists():
                raise UserError(f"{path} not found: prepare verl's parquet data first (see replicate/backends/verl.py)")
        run.reset()
        run.begin(config, s, {"backend": "verl", "verl_version": VERL_VERSION, "command": shlex.join(cmd)})
        rc = subprocess.run(cmd).returncode
        import_verl_log(log, run)
        if rc != 0:
            raise UserError(f"verl exited with status {rc}; its log is {log}")
        run.finish()
        results.append(run)
    return results
