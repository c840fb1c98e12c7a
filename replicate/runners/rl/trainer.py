"""The RL loop on accelerate, read top to bottom: validate, rollout, rewards, advantages, PPO updates, metrics.

The same loop runs on a laptop CPU and under `accelerate launch` on GPUs (prompts are sharded by process).
Sampling lives in rollout.py, models and the critic in models.py, every formula in algorithms/.
"""
from __future__ import annotations

import copy
import inspect
import os
import random
import time
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from replicate.algorithms import (ADVANTAGES, POLICY_LOSSES, agg_loss, covariance_by_accuracy, extra_inputs,
                                  implicit_prm_loss, kl_penalty, label_accuracy, masked_mean,
                                  permuted_top_fraction_means, token_covariance, token_rewards, top_fraction_means,
                                  value_loss)
from replicate.errors import Interrupted
from replicate.errors import UserError
from replicate.runners.rl.health import Watch
from replicate.runners.rl.models import ChatPrompts, Critic, autocast_forward, non_embedding_params
from replicate.runners.rl.stops import ends
from replicate.seeds import derive_seed
from replicate.runners.rl.sharpening import base_temperature_metrics
from replicate.runners.rl.rollout import avg_at_k, make_generator, rollout
from replicate.runners.rl.sharding import full_parameters, open_full_parameters
from replicate.store import Run
from replicate.tasks import make_task
from replicate.runners.rl.optim import adamw, make_optimizer
from replicate.runners.rl.warmup import base_policy


@dataclass
class Learner:
    """Everything one run trains and samples with (set up once, restored from a checkpoint on resume)."""
    accelerator: Accelerator
    model: torch.nn.Module        # as prepared by accelerate (may be wrapped)
    policy: torch.nn.Module       # the unwrapped model: sampling, checkpoints
    optimizer: torch.optim.Optimizer
    tok: object
    task: object
    ref_model: torch.nn.Module | None
    critic: torch.nn.Module | None
    critic_opt: torch.optim.Optimizer | None
    prm: torch.nn.Module | None   # PRIME's implicit process reward model (a causal LM), else None
    prm_opt: torch.optim.Optimizer | None
    py_rng: random.Random
    gen: torch.Generator          # sampling
    loss_gen: torch.Generator     # a loss's own randomness (Clip-Cov's token draw), apart from sampling


def setup(config, seed: int, store_root, run: Run, log=print) -> Learner:
    if config.model.kind == "tiny" and not torch.cuda.is_available():
        torch.set_num_threads(1)  # tiny models gain nothing from threads; one thread makes pooled runs equal
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=_trackers(), project_dir=str(run.path))
    check_sharding(config, accelerator.num_processes)
    torch.manual_seed(seed)
    with accelerator.main_process_first():  # process 0 builds (and caches) the warm-up; the others load it
        model, tok = base_policy(config, store_root, seed, log=log)
    if config.model.attention != model.config._attn_implementation:
        model.set_attn_implementation(config.model.attention)
    model = autocast_forward(model, config.model.autocast, accelerator.device.type)  # the copies below inherit it
    alg, opt = config.algorithm, config.train.optimizer
    optimizer = make_optimizer(opt, model.parameters())
    needs = advantage_needs(alg.advantage)  # the estimator's extra tensors decide which models the learner holds
    needs_ref = alg.kl_loss_coef or alg.kl_in_reward_coef or "ref_log_prob" in needs
    ref_model = copy.deepcopy(model).eval() if needs_ref else None
    critic = critic_opt = prm = prm_opt = None
    if "values" in needs:
        critic = Critic(copy.deepcopy(model))
        critic_opt = adamw(critic.parameters(), alg.critic_lr, opt.fused)
        critic, critic_opt = accelerator.prepare(critic, critic_opt)
    if "rm_log_prob" in needs:  # PRIME's implicit PRM starts as the warm-up policy, as the reference does
        prm = copy.deepcopy(model)
        prm_opt = adamw(prm.parameters(), alg.prm_lr, opt.fused)
        prm, prm_opt = accelerator.prepare(prm, prm_opt)
    model, optimizer = accelerator.prepare(model, optimizer)
    task = make_task(config.task.name, **config.task.params)
    if config.model.chat:
        task = ChatPrompts(task, tok, config.model.system)
    if ref_model is not None:
        ref_model = ref_model.to(accelerator.device)
    return Learner(accelerator, model, accelerator.unwrap_model(model), optimizer, tok,
                   task, ref_model, critic, critic_opt, prm, prm_opt,
                   random.Random(seed), make_generator(seed * 1000 + accelerator.process_index, accelerator.device),
                   make_generator(derive_seed(seed, "loss", accelerator.process_index), accelerator.device))


def check_sharding(config, n_processes: int):
    """Every process must run the same number of updates (else DDP waits forever): whole mini-batches of whole
    groups on every process, and no dynamic sampling across processes (its group counts differ by process)."""
    ro, tr = config.rollout, config.train
    if n_processes > 1 and ro.filter_groups:
        raise UserError("rollout.filter_groups (dynamic sampling) runs on one process in this trainer: its group "
                        "counts differ by process; run one process or --backend verl")
    if ro.prompts_per_step % (n_processes * tr.ppo_mini_batches):
        raise UserError(f"rollout.prompts_per_step ({ro.prompts_per_step}) must be divisible by processes x "
                        f"train.ppo_mini_batches ({n_processes} x {tr.ppo_mini_batches})")


def restore(learner: Learner, run: Run, resume: bool, log=print) -> int:
    """The step to start from: the checkpoint's with --resume (metrics after it are dropped), else 0."""
    acc = learner.accelerator
    state = run.load_checkpoint() if resume else None
    if state is None:
        if resume and run.started and acc.is_main_process:
            log(f"no checkpoint in {run.path}; starting it from step 0")
        if (resume or not run.started) and acc.is_main_process:
            run.reset()
        acc.wait_for_everyone()  # no process reads the run before process 0 has reset it
        return 0
    saved = len(state["rng"].get("torch_per_process") or [])
    if saved and saved != acc.num_processes:
        raise UserError(f"{run.path.name} was checkpointed by {saved} process(es) and this launch has "
                        f"{acc.num_processes}: resume it with {saved} (`accelerate launch --num_processes {saved}`"
                        f"{', or without accelerate launch' if saved == 1 else ''}), or pass --force to start it again")
    learner.policy.load_state_dict(state["model"])
    learner.optimizer.load_state_dict(state["optimizer"])
    if learner.critic is not None:
        learner.accelerator.unwrap_model(learner.critic).load_state_dict(state["critic"])
        learner.critic_opt.load_state_dict(state["critic_optimizer"])
    if learner.prm is not None:
        learner.accelerator.unwrap_model(learner.prm).load_state_dict(state["prm"])
        learner.prm_opt.load_state_dict(state["prm_optimizer"])
    learner.py_rng.setstate(state["rng"]["python"])
    for gen, key in ((learner.gen, "torch"), (learner.loss_gen, "loss")):  # each process's own generators
        per_process = state["rng"].get(f"{key}_per_process")
        if per_process and len(per_process) == acc.num_processes:
            gen.set_state(per_process[acc.process_index])
        elif key in state["rng"]:
            gen.set_state(state["rng"][key])
    torch.set_rng_state(state["rng"]["torch_global"])
    acc.wait_for_everyone()
    if acc.is_main_process:
        run.truncate_metrics(state["step"])
        log(f"resuming {run.path.name} at step {state['step']}")
    return state["step"]


def train(run: Run, config, seed: int, store_root, resume: bool = False, progress=None, log=print,
          on_start=None) -> list[dict]:
    """Train one run to completion, writing metrics.jsonl line by line and checkpoints as it goes.

    on_start(step) is called once the start step is known (0, or the checkpoint's with --resume);
    progress(step, metrics) after each step.
    """
    try:
        learner = setup(config, seed, store_root, run, log)
        start = restore(learner, run, resume, log)
        if on_start is not None:
            on_start(start)
        if learner.accelerator.is_main_process:
            run.begin(config, seed, {"seed": seed, "num_processes": learner.accelerator.num_processes})
        learner.accelerator.init_trackers(run.path.name)
        train_steps(learner, run, config, seed, start, progress, log)
    except KeyboardInterrupt:
        raise interrupted(run) from None
    finish(learner, run, config.train.steps)
    return run.metrics()


def interrupted(run: Run) -> Interrupted:
    """Ctrl-C during a run, saying truthfully what of it is saved."""
    rows = run.metrics(torn_ok=True) if run.started else []
    if not rows:
        return Interrupted(f"interrupted before the first RL step of {run.path.name}: no step of it was saved "
                           "(a warm-up is cached once it completes; finished runs are kept)")
    return Interrupted(f"interrupted; {run.path.name} has {len(rows)} finished step(s) in the run store: rerun "
                       "with --resume to continue it from its last checkpoint")


def train_steps(learner: Learner, run: Run, config, seed: int, start: int, progress=None, log=print):
    """Steps start .. train.steps-1: each validates (at the cadence), rolls out, updates and logs."""
    alg, ro, tr, ev = config.algorithm, config.rollout, config.train, config.eval
    n_local = ro.prompts_per_step // learner.accelerator.num_processes
    shard = slice(learner.accelerator.process_index * n_local, (learner.accelerator.process_index + 1) * n_local)
    val_problems = learner.task.validation[:ev.n_prompts]
    probe_problems = learner.task.validation[-tr.probe_prompts:] if tr.probe_prompts else []
    t0 = time.time()
    name = run.path.name if hasattr(run, "path") else "run"
    health = Watch(ro.max_new_tokens, log, name, run.metrics(torn_ok=True) if start else [])
    for step in range(start, tr.steps):
        metrics = {"step": step}
        if step == 0:  # the model's size, for analyses across sizes (fig7)
            metrics["params_nonembed"] = non_embedding_params(learner.accelerator.unwrap_model(learner.policy))
        learner.policy.eval()
        gathered = open_full_parameters(learner.model)  # FSDP: sample and score with full parameters (sharding.py)
        # -- validation of the policy about to be updated (so val_acc pairs with this step's entropy)
        if step % ev.every == 0 or step == tr.steps - 1:
            metrics.update(validate(learner, config, val_problems, seed, step))
        # -- rollout: group_size samples of each prompt, scored by the verifier
        t_rollout = time.time()
        batch = rollout(learner.policy, learner.tok, learner.task, ro, shard, learner.py_rng, learner.gen)
        metrics["time_rollout"] = time.time() - t_rollout
        mask = batch.response_mask
        rewards = token_rewards(batch.scores, mask)
        # -- log-probs under the rollout policy (or left for the update's first forward: reuses_update_forward)
        reuse = reuses_update_forward(learner, config)
        t_logprobs = time.time()
        with torch.no_grad():
            old_log_prob, entropy = ((torch.zeros_like(mask), torch.zeros_like(mask)) if reuse
                                     else batch.logprobs(learner.policy, with_entropy=True))
            ref_log_prob = batch.logprobs(learner.ref_model)[0] if learner.ref_model is not None else None
            old_values = learner.critic(batch.prompt_ids, batch.prompt_mask, batch.responses) * mask if learner.critic else None
        metrics["time_logprobs"] = time.time() - t_logprobs
        if alg.kl_in_reward_coef:
            rewards = rewards - alg.kl_in_reward_coef * kl_penalty(old_log_prob, ref_log_prob, alg.kl_in_reward_type) * mask
        # -- advantages (GAE bootstraps from the critic's values; PRIME first updates its PRM on this batch)
        extra, prm_stats = advantage_inputs(learner, config, batch, ref_log_prob, old_values)
        advantages, returns = ADVANTAGES[alg.advantage](rewards, mask, batch.index, **alg.advantage_params, **extra)
        t_probe = time.time()
        probe = probe_states(learner, probe_problems, ro, seed, step) if probe_problems else None
        time_probe = time.time() - t_probe
        # -- PPO updates over mini-batches of whole groups
        gathered.close()
        learner.policy.train()
        t_update = time.time()
        update_stats = ppo_update(learner, config, batch, old_log_prob, advantages, ref_log_prob, old_values, returns,
                                  entropy if reuse else None)
        metrics["time_update"] = time.time() - t_update
        # -- metrics of this step (rollout statistics are of the pre-update policy)
        metrics.update(rollout_metrics(batch, old_log_prob, entropy, advantages), **prm_stats)
        metrics["eos_share"] = ends(learner.tok, batch.responses).float().mean().item()  # EOS or a stop token
        metrics.update(permuted_top_fraction_means(old_log_prob, advantages, mask, derive_seed(seed, "perm", step)))
        if probe is not None:
            t_probe = time.time()
            metrics.update(entropy_change(learner, batch, entropy, probe))
            metrics["time_probe"] = time_probe + time.time() - t_probe
        metrics.update(mean_stats(update_stats))
        if step == tr.steps - 1:  # the final policy, after this last update, per difficulty level (Table 2's columns)
            metrics.update(final_levels(learner, val_problems, config, seed))
        metrics = _reduce(learner.accelerator, metrics)
        metrics["wall_time"] = time.time() - t0
        if learner.accelerator.is_main_process:
            run.append_metrics(metrics)
            health.add(metrics)  # one log line the first time the run breaks (runners/rl/health.py)
        learner.accelerator.log({k: v for k, v in metrics.items() if k != "step"}, step=step)
        if (step + 1) % tr.checkpoint_every == 0 and step + 1 < tr.steps:
            state = checkpoint(learner, step + 1)  # every process takes part (each adds its generator's state)
            if learner.accelerator.is_main_process:
                run.save_checkpoint(state)
            learner.accelerator.wait_for_everyone()
        if progress is not None:
            progress(step, metrics)


def validate(learner: Learner, config, val_problems, seed: int, step: int) -> dict:
    """avg@k validation accuracy of the policy about to be updated; at step 0 also the sharpening null (the base
    policy at each of eval.base_temperatures)."""
    ro, ev, t0 = config.rollout, config.eval, time.time()
    scores = avg_at_k(learner.policy, learner.tok, learner.task, val_problems, ev.k, ev.temperature, ro.max_new_tokens,
                      make_generator(derive_seed(seed, "eval", step), learner.accelerator.device), per_problem=True)
    metrics = {"val_acc": sum(scores) / len(scores)}
    if step == 0 and ev.base_temperatures:
        metrics.update(base_temperature_metrics(learner.policy, learner.tok, learner.task, val_problems, ev.k,
                                                ev.base_temperatures, ro.max_new_tokens, seed,
                                                learner.accelerator.device, ro.temperature, ev.temperature))
    return {**metrics, "time_eval": time.time() - t0}


def ppo_update(learner: Learner, config, batch, old_log_prob, advantages, ref_log_prob, old_values, returns,
               entropy=None) -> list:
    """ppo_epochs × ppo_mini_batches optimizer steps, each over whole groups; the critic steps alongside.

    With `entropy` given, the first mini-batch's forward, at the rollout policy, fills old_log_prob and entropy
    (reuses_update_forward): log π_old = log π there, bit for bit."""
    alg, tr = config.algorithm, config.train
    loss_fn = POLICY_LOSSES[alg.policy_loss]
    params = dict(alg.policy_loss_params)
    if "generator" in inspect.signature(loss_fn).parameters:
        params["generator"] = learner.loss_gen
    stats, fill = [], entropy is not None
    for _epoch in range(tr.ppo_epochs):
        for mb in mini_batches(batch, tr.ppo_mini_batches):
            learner.optimizer.zero_grad()
            selected = select_tokens(learner, loss_fn, batch, mb, old_log_prob, advantages, params, alg.cov_scope)
            for pos in torch.arange(len(mb)).chunk(tr.micro_batches):
                rows = mb[pos]
                sub, m = batch.rows(rows), batch.response_mask[rows]
                log_prob, ent = sub.logprobs(learner.model, with_entropy=bool(alg.entropy_coeff) or fill)
                if fill:
                    old_log_prob[rows], entropy[rows] = log_prob.detach(), ent.detach()
                extra = {"selected": selected[pos]} if selected is not None else {}
                pg_loss, s = loss_fn(old_log_prob[rows], log_prob, advantages[rows], m,
                                     loss_agg_mode=alg.loss_agg_mode, **params, **extra)
                loss = pg_loss
                if alg.entropy_coeff:
                    loss = loss - alg.entropy_coeff * agg_loss(ent, m, alg.loss_agg_mode)
                if alg.kl_loss_coef:
                    kl = agg_loss(kl_penalty(log_prob, ref_log_prob[rows], alg.kl_loss_type), m, alg.loss_agg_mode)
                    loss, s["kl_loss"] = loss + alg.kl_loss_coef * kl, kl.item()
                learner.accelerator.backward(loss / len(torch.arange(len(mb)).chunk(tr.micro_batches)))
                stats.append({**s, "pg_loss": pg_loss.item(), "loss": loss.item()})
            stats[-1]["grad_norm"] = float(learner.accelerator.clip_grad_norm_(learner.model.parameters(), tr.grad_clip))
            learner.optimizer.step()
            fill = False  # the next mini-batch runs past the rollout policy
            if learner.critic is not None:
                stats[-1]["vf_loss"] = critic_step(learner, config, batch.rows(mb), old_values[mb], returns[mb])
    return stats


def reuses_update_forward(learner: Learner, config) -> bool:
    """Whether the update's first forward gives the rollout policy's log-probs and entropy. It does where the update
    is one mini-batch of the whole batch in one micro-batch: before any step, that is the very forward a separate
    no-grad pass would run (same rows, same shapes, same policy), so log π_old = log π bit for bit
    (tests/test_speed.py). Not where they are needed before the update (a KL penalty in the reward, a
    mini-batch-wide token selection) or where train mode changes the forward (dropout). Smaller mini- or
    micro-batches would score rows in other shapes, which may round differently: they keep the separate pass."""
    alg, tr = config.algorithm, config.train
    needs_first = alg.kl_in_reward_coef or (POLICY_LOSSES[alg.policy_loss].select is not None
                                            and alg.cov_scope == "batch")
    return tr.ppo_mini_batches == 1 and tr.micro_batches == 1 and not needs_first and not has_dropout(learner.policy)


def has_dropout(model) -> bool:
    """Whether train mode changes the model's forward: a dropout module or a dropout rate in its config above 0."""
    p = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    p += [getattr(model.config, k, 0.0) or 0.0 for k in ("attention_dropout", "hidden_dropout", "dropout")]
    return any(x > 0 for x in p)


@torch.no_grad()
def select_tokens(learner: Learner, loss_fn, batch, mb, old_log_prob, advantages, params, scope):
    """With cov_scope 'batch', a token-selecting loss (Clip-Cov, KL-Cov) selects over the whole mini-batch, in a
    no-grad pass at the current parameters, whatever the micro-batching; None: each micro-batch selects itself
    (verl's behaviour)."""
    if loss_fn.select is None or scope != "batch":
        return None
    log_prob, _ = batch.rows(mb).logprobs(learner.model)
    return loss_fn.select(old_log_prob[mb], log_prob, advantages[mb], batch.response_mask[mb], **params)


def final_levels(learner: Learner, problems, config, seed: int) -> dict:
    """val_acc_L<level> of the policy after the last update (its own evaluation generator)."""
    ev = config.eval
    learner.policy.eval()
    scores = avg_at_k(learner.policy, learner.tok, learner.task, problems, ev.k, ev.temperature,
                      config.rollout.max_new_tokens,
                      make_generator(derive_seed(seed, "eval-final"), learner.accelerator.device), per_problem=True)
    return accuracy_by_level(problems, scores)


def accuracy_by_level(problems, scores) -> dict:
    """val_acc_L<level>: the mean of each problem's avg@k score over the problems of that level."""
    by: dict = {}
    for p, s in zip(problems, scores):
        by.setdefault(p.level, []).append(s)
    return {f"val_acc_L{lv}": sum(v) / len(v) for lv, v in sorted(by.items())}


def mini_batches(batch, n: int) -> list[torch.Tensor]:
    """Row indices of n mini-batches with equal numbers of whole groups (a remainder of groups is left out)."""
    groups = batch.groups()
    n = min(n, len(groups))
    per = len(groups) // n
    return [torch.tensor([i for g in groups[j * per:(j + 1) * per] for i in g]) for j in range(n)]


def critic_step(learner: Learner, config, sub, old_values, returns) -> float:
    learner.critic_opt.zero_grad()
    values = learner.critic(sub.prompt_ids, sub.prompt_mask, sub.responses)
    loss = value_loss(values, old_values, returns, sub.response_mask, cliprange_value=config.algorithm.cliprange_value)
    learner.accelerator.backward(loss)
    learner.accelerator.clip_grad_norm_(learner.critic.parameters(), config.train.grad_clip)
    learner.critic_opt.step()
    return loss.item()


# The extra tensors an advantage estimator may ask for (algorithms.extra_inputs) and the model that provides each.
PROVIDED = {"values": "a critic (value model)", "rm_log_prob": "an implicit process reward model",
            "ref_log_prob": "the reference policy"}


def advantage_needs(name: str) -> tuple[str, ...]:
    """The estimator's extra tensors, refused in one line when this trainer has no model that provides one."""
    needs = extra_inputs(name)
    missing = [x for x in needs if x not in PROVIDED]
    if missing:
        raise UserError(f"advantage {name!r} needs {', '.join(missing)}, which the trainer does not provide; it "
                        f"provides {', '.join(f'{k} ({v})' for k, v in PROVIDED.items())}")
    return needs


def advantage_inputs(learner: Learner, config, batch, ref_log_prob, old_values) -> tuple[dict, dict]:
    """The tensors the estimator needs beyond the standard ones, by name, and metrics: a critic's values; from an
    implicit PRM, first updated on this batch's outcome labels (prm_update), its log-probs; the reference's."""
    needs, stats = extra_inputs(config.algorithm.advantage), {}
    extra = {"values": old_values, "ref_log_prob": ref_log_prob}
    if "rm_log_prob" in needs:
        stats = prm_update(learner, config, batch, ref_log_prob)
        with torch.no_grad():
            extra["rm_log_prob"] = batch.logprobs(learner.prm)[0]
    return {k: extra[k] for k in needs}, stats


def prime_beta(alg) -> float:
    """β of the implicit reward: the estimator's `beta` hyperparameter, else its default (one β for the PRM's loss
    and for the process rewards, as PRIME's beta_train)."""
    return alg.advantage_params.get("beta", inspect.signature(ADVANTAGES[alg.advantage]).parameters["beta"].default)


def prm_update(learner: Learner, config, batch, ref_log_prob) -> dict:
    """One pass of the implicit PRM over the rollouts, one optimizer step per PPO mini-batch of whole groups:
    L = BCE(σ(β·Σ_t log π_rm(y_t)/π_ref(y_t)), verifier score) (algorithms/prm.py), micro-batched as the policy.

    prm_loss and prm_acc (the share of responses whose implicit reward q > 0 agrees with the label) are measured
    in each mini-batch's forward pass, before its step: for the first mini-batch, on rollouts the PRM never saw.
    """
    tr, beta = config.train, prime_beta(config.algorithm)
    losses, accs = [], []
    for mb in mini_batches(batch, tr.ppo_mini_batches):
        learner.prm_opt.zero_grad()
        chunks = torch.arange(len(mb)).chunk(tr.micro_batches)
        for pos in chunks:
            rows = mb[pos]
            sub = batch.rows(rows)
            rm_log_prob = sub.logprobs(learner.prm)[0]
            loss, q = implicit_prm_loss(rm_log_prob, ref_log_prob[rows], sub.response_mask, sub.scores, beta)
            learner.accelerator.backward(loss / len(chunks))
            losses.append(loss.item())
            accs.append(label_accuracy(q, sub.scores))
        learner.accelerator.clip_grad_norm_(learner.prm.parameters(), tr.grad_clip)
        learner.prm_opt.step()
    return {"prm_loss": sum(losses) / len(losses), "prm_acc": sum(accs) / len(accs)}


def rollout_metrics(batch, old_log_prob, entropy, advantages) -> dict:
    mask = batch.response_mask
    return {
        "entropy": masked_mean(entropy, mask).item(),
        "train_acc": batch.train_acc,
        "cov": masked_mean(token_covariance(old_log_prob, advantages, mask), mask).item(),
        "response_length": mask.sum(-1).mean().item(),
        "gen_batches": batch.gen_batches,
        "groups_short": batch.groups_short,
        "group_size": len(batch.groups()[0]),
        **covariance_by_accuracy(old_log_prob, advantages, mask, batch.scores, batch.groups()),
        **top_fraction_means(old_log_prob, advantages, mask),
    }


def mean_stats(update_stats: list[dict]) -> dict:
    """Each update statistic averaged over the updates that logged it."""
    keys = dict.fromkeys(k for s in update_stats for k in s)
    return {k: sum(s[k] for s in update_stats if k in s) / sum(k in s for s in update_stats) for k in keys}


@torch.no_grad()
def probe_states(learner: Learner, problems, ro, seed: int, step: int):
    """One response per fixed probe prompt, sampled now; its per-token entropy before the update."""
    from replicate.runners.rl.rollout import sample_batch
    probe = sample_batch(learner.policy, learner.tok, learner.task, problems, 1, ro.temperature, ro.max_new_tokens,
                         make_generator(derive_seed(seed, "probe", step), learner.accelerator.device))
    return probe, probe.logprobs(learner.policy, with_entropy=True)[1]


@torch.no_grad()
def entropy_change(learner: Learner, batch, entropy_before, probe) -> dict:
    """The exact entropy change of this step's update on its own rollout states and on the probe states."""
    learner.policy.eval()
    probe_batch, probe_before = probe
    with full_parameters(learner.model):
        after = batch.logprobs(learner.policy, with_entropy=True)[1]
        probe_after = probe_batch.logprobs(learner.policy, with_entropy=True)[1]
    pm = probe_batch.response_mask
    return {"delta_entropy": masked_mean(after - entropy_before, batch.response_mask).item(),
            "probe_entropy": masked_mean(probe_before, pm).item(),
            "probe_delta_entropy": masked_mean(probe_after - probe_before, pm).item()}


def checkpoint(learner: Learner, next_step: int) -> dict:
    """The full state to resume from. Collective under several processes: it gathers every process's sampling
    generator state (process 0 writes the file; each process restores its own generator from it)."""
    gens = [(learner.gen.get_state().cpu(), learner.loss_gen.get_state().cpu())]
    if learner.accelerator.num_processes > 1:
        from accelerate.utils import gather_object
        gens = gather_object(gens)
    state = {"model": learner.policy.state_dict(), "optimizer": learner.optimizer.state_dict(), "step": next_step,
             "rng": {"python": learner.py_rng.getstate(), "torch": learner.gen.get_state(), "loss": learner.loss_gen.get_state(),
                     "torch_per_process": [g for g, _ in gens], "loss_per_process": [g for _, g in gens],
                     "torch_global": torch.get_rng_state()}}
    if learner.critic is not None:
        state.update(critic=learner.accelerator.unwrap_model(learner.critic).state_dict(),
                     critic_optimizer=learner.critic_opt.state_dict())
    if learner.prm is not None:
        state.update(prm=learner.accelerator.unwrap_model(learner.prm).state_dict(),
                     prm_optimizer=learner.prm_opt.state_dict())
    return state


def finish(learner: Learner, run: Run, steps: int):
    """Mark the run done; the model goes to model/, its last full state to final.pt (for extension)."""
    state = checkpoint(learner, steps)  # collective: before end_training, which ends the process group
    if learner.accelerator.is_main_process:
        learner.policy.save_pretrained(run.path / "model")
        learner.tok.save_pretrained(run.path / "model")
        run.save_final(state)
        run.finish()
    learner.accelerator.wait_for_everyone()  # the run is done (DONE written) for every process when train returns
    learner.accelerator.end_training()


SUMMED = ("gen_batches", "groups_short")  # counts over each process's shard: the step's totals are their sums


def _reduce(accelerator, metrics: dict) -> dict:
    """Average metrics over processes, summing the counts in SUMMED (a no-op on one process)."""
    if accelerator.num_processes == 1:
        return metrics
    from accelerate.utils import gather_object
    parts = gather_object([metrics])  # keys may differ by process (accuracy buckets present on each)
    keys = dict.fromkeys(k for part in parts for k in part if k != "step")
    return {"step": metrics["step"],
            **{k: sum(p[k] for p in parts if k in p) / (1 if k in SUMMED else sum(k in p for p in parts))
               for k in keys}}


def _trackers():
    """$REPLICATE_TRACK (set by --track: none, tensorboard, wandb), else TensorBoard when it is installed."""
    chosen = os.environ.get("REPLICATE_TRACK", "")
    if chosen:
        return None if chosen == "none" else chosen
    try:
        import tensorboard  # noqa: F401
        return "tensorboard"
    except ImportError:
        return None
