"""The training core end to end on a tiny model: determinism, resume equality, every algorithm name, the CLI."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from replicate.specs import RunConfig, deep_merge, load_spec
from replicate.store import Run
from replicate.runners.rl.trainer import train

REPO = Path(__file__).resolve().parent.parent


def _config(tiny_spec_file, **over):
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    return RunConfig.model_validate(deep_merge(cfg.model_dump(), over)) if over else cfg


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_time" and not k.startswith("time_")} for r in rows]


def test_same_seed_same_metrics(tiny_spec_file, warm_store, tmp_path):
    cfg = _config(tiny_spec_file)
    a = train(Run(tmp_path / "a"), cfg, 0, warm_store, log=lambda *_: None)
    b = train(Run(tmp_path / "b"), cfg, 0, warm_store, log=lambda *_: None)
    c = train(Run(tmp_path / "c"), cfg, 1, warm_store, log=lambda *_: None)
    assert len(a) == cfg.train.steps and _strip(a) == _strip(b)
    # seeds are independent down to the base policy: another warm-up, so other step-0 entropy and metrics
    assert a[0]["entropy"] != c[0]["entropy"] and _strip(a[:1]) != _strip(c[:1])
    from replicate.runners.rl.warmup import warmup_key
    assert warmup_key(cfg, 0) != warmup_key(cfg, 1)
    assert all((warm_store / "_warmup" / warmup_key(cfg, s) / "DONE").exists() for s in (0, 1))
    for key in ("entropy", "train_acc", "cov", "response_length", "clipfrac", "ppo_kl", "grad_norm"):
        assert key in a[0]
    assert "val_acc" in a[0] and "val_acc" in a[-1]


def interrupted_after_step_4(cfg, path, warm_store) -> Run:
    """A run of cfg stopped by Ctrl-C once step 4 is logged (its last checkpoint stays), for resume tests."""
    def crash(step, m):
        if step == 4:
            raise KeyboardInterrupt
    run = Run(path)
    with pytest.raises(KeyboardInterrupt):
        train(run, cfg, 0, warm_store, progress=crash, log=lambda *_: None)
    return run


def test_resume_after_interrupt_equals_uninterrupted(tiny_spec_file, warm_store, tmp_path):
    cfg = _config(tiny_spec_file)
    full = train(Run(tmp_path / "full"), cfg, 0, warm_store, log=lambda *_: None)

    run = interrupted_after_step_4(cfg, tmp_path / "cut", warm_store)
    assert not run.done and len(run.metrics()) == 5 and run.checkpoint_file.exists()
    resumed = train(run, cfg, 0, warm_store, resume=True, log=lambda *_: None)
    assert run.done and _strip(resumed) == _strip(full)


@pytest.mark.parametrize("algo", [
    {"advantage": "grpo"}, {"advantage": "grpo", "advantage_params": {"norm_adv_by_std_in_grpo": False}},
    {"advantage": "rloo"}, {"advantage": "reinforce_plus_plus", "advantage_params": {"gamma": 1.0}},
    {"advantage": "reinforce_plus_plus_baseline"},
    {"advantage": "gae", "advantage_params": {"gamma": 1.0, "lam": 0.95}, "critic_lr": 1.0e-3},
    {"advantage": "prime", "advantage_params": {"beta": 0.05}, "prm_lr": 1.0e-3},
    {"policy_loss": "vanilla", "policy_loss_params": {"clip_ratio_low": 0.2, "clip_ratio_high": 0.28}},
    {"policy_loss": "clip_cov", "policy_loss_params": {"clip_ratio": 1.0, "clip_cov_ratio": 0.01, "clip_cov_lb": 0.0}},
    {"policy_loss": "clip_cov", "policy_loss_params": {"clip_cov_ratio": 0.01, "clip_cov_lb": 0.0}, "cov_scope": "batch"},
    {"policy_loss": "kl_cov", "policy_loss_params": {"kl_cov_ratio": 0.02, "ppo_kl_coef": 1.0}},
    {"entropy_coeff": 0.01, "kl_loss_coef": 0.01, "kl_loss_type": "low_var_kl", "kl_in_reward_coef": 0.01},
], ids=lambda a: "-".join(str(v) for v in a.values())[:60])
def test_every_algorithm_name_trains(algo, tiny_spec_file, warm_store, tmp_path):
    cfg = _config(tiny_spec_file, algorithm=algo, train={"steps": 3, "micro_batches": 2})
    rows = train(Run(tmp_path / "r"), cfg, 0, warm_store, log=lambda *_: None)
    assert len(rows) == 3 and all(abs(r["pg_loss"]) < 1e3 for r in rows)
    assert any(r["train_acc"] > 0 for r in rows) and any(r["grad_norm"] > 0 for r in rows)  # a real update
    if algo.get("policy_loss") == "kl_cov":  # the top-k tokens by Cov_i are always penalised
        assert all(r["cov_frac"] > 0 for r in rows)
    if algo.get("policy_loss") == "clip_cov":
        # a token with Cov_i > lb = 0 exists whenever the batch covariance is positive (Clip-Cov's default lb = 1
        # is rarely reached by a tiny model's Cov_i, hence lb = 0 above); a batch of all-equal groups has none
        assert any(r["cov"] > 0 for r in rows) and all(r["cov_frac"] > 0 for r in rows if r["cov"] > 0)
    if algo.get("advantage") == "gae":
        assert all(r["vf_loss"] > 0 for r in rows)
    if algo.get("policy_loss") == "kl_cov":
        # several mini-batches per rollout: the later ones see a policy that differs from the old one
        assert any(r["ppo_kl"] > 0 for r in rows)


def _cli(*args, store):
    return subprocess.run([sys.executable, "-m", "replicate", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "REPLICATE_STORE": str(store)}, timeout=900)


def test_cli_user_errors_are_one_line(tmp_path, tiny_spec_file):
    for args, needle in [(["fig99"], "unknown spec 'fig99'"), (["run", str(tmp_path / "none.yaml")], "does not exist")]:
        res = _cli(*args, store=tmp_path)
        assert res.returncode == 2 and needle in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    bad = tiny_spec_file.read_text().replace("advantage: grpo", "advantage: nope")
    (tmp_path / "bad.yaml").write_text(bad)
    res = _cli("run", str(tmp_path / "bad.yaml"), store=tmp_path)
    assert res.returncode == 2 and "unknown advantage estimator 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_run_spec_file_writes_figure_claims_and_reuses_runs(tiny_spec_file, warm_store, tmp_path):
    out = tmp_path / "out"
    res = _cli("run", str(tiny_spec_file), "--out", str(out), store=warm_store)
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("tinytest.png", "tinytest.pdf", "claims.json", "claims.md"):
        assert (out / name).stat().st_size > 0
    claims = json.loads((out / "claims.json").read_text())
    from replicate.analysis import early_shares
    from replicate.report.claims import verdict
    c1 = claims["claims"][0]
    assert claims["seeds"] == [0, 1] and len(c1["values"]) == 2
    # the claim's values are the runs' own measurements, and its verdict follows from them
    runs = [REPO / r["dir"] if not Path(r["dir"]).is_absolute() else Path(r["dir"])
            for r in claims["provenance"]["runs"]]
    assert len(runs) == 2 and all(p.is_relative_to(warm_store) for p in runs)
    measured = sorted(early_shares(Run(p).metrics())["entropy_final_over_initial"] for p in runs)
    assert sorted(c1["values"]) == pytest.approx(measured, rel=1e-12)
    assert c1["verdict"] == verdict(c1["values"], "<=", 1.0)
    again = _cli("run", str(tiny_spec_file), "--out", str(out), store=warm_store)
    assert again.returncode == 0 and "reusing 2 finished run(s)" in again.stdout + again.stderr


class _ParityTask:
    """The tiny addition task with a stub verifier: reward 1 when the response length is even (mixed groups);
    with always=True every response scores 1 (every group all-equal, nothing informative)."""

    def __init__(self, inner, always=False):
        self.inner, self.always = inner, always

    def sample(self, n, rng):
        return self.inner.sample(n, rng)

    def reward(self, response, problem, finished=True):
        return 1.0 if self.always else float(len(response) % 2 == 0)


@pytest.mark.parametrize("always", [False, True])
def test_dynamic_sampling_says_what_it_did(always, tiny_spec_file, warm_store):
    import random as pyrandom
    from replicate.runners.rl.rollout import make_generator, rollout
    from replicate.tasks import make_task
    from replicate.runners.rl.trainer import mini_batches
    from replicate.runners.rl.warmup import base_policy
    cfg = _config(tiny_spec_file, rollout={"filter_groups": True, "max_gen_batches": 3, "prompts_per_step": 6,
                                           "temperature": 1.5})
    model, tok = base_policy(cfg, warm_store, 0, log=lambda *_: None)
    task = _ParityTask(make_task("addition", digits=[1], holdout=32), always)
    batch = rollout(model.eval(), tok, task, cfg.rollout, slice(None), pyrandom.Random(0), make_generator(0, "cpu"))
    groups = batch.groups()
    assert all(len(g) == cfg.rollout.group_size for g in groups)
    if always:  # nothing informative: the last batch, all of it short, every allowed batch generated
        assert batch.gen_batches == 3 and batch.groups_short == 6 and batch.train_acc == 1.0
        return
    assert len(groups) + batch.groups_short == 6
    assert all(0 < batch.scores[g].mean() < 1 for g in groups)  # only groups with right and wrong answers kept
    assert 0 < batch.train_acc < 1
    for n in (1, 2, 4):  # mini-batches hold equal numbers of whole groups
        sizes = [len(mb) for mb in mini_batches(batch, n)]
        assert len(set(sizes)) == 1 and sizes[0] % cfg.rollout.group_size == 0


def test_gae_run_resumes_with_its_critic(tiny_spec_file, warm_store, tmp_path):
    cfg = _config(tiny_spec_file, algorithm={"advantage": "gae", "advantage_params": {"lam": 0.95}})
    full = train(Run(tmp_path / "full"), cfg, 0, warm_store, log=lambda *_: None)

    run = interrupted_after_step_4(cfg, tmp_path / "cut", warm_store)
    assert _strip(train(run, cfg, 0, warm_store, resume=True, log=lambda *_: None)) == _strip(full)


PRIME = {"advantage": "prime", "advantage_params": {"beta": 0.05}, "prm_lr": 1.0e-3}


def test_prime_prm_learns_the_outcome_labels(tiny_spec_file, warm_store, tmp_path):
    from replicate.runners.rl.rollout import rollout
    from replicate.runners.rl.trainer import prm_update, setup
    cfg = _config(tiny_spec_file, algorithm=PRIME, rollout={"prompts_per_step": 8})
    learner = setup(cfg, 0, warm_store, Run(tmp_path / "r"), log=lambda *_: None)
    batch = rollout(learner.policy, learner.tok, learner.task, cfg.rollout, slice(0, 8), learner.py_rng, learner.gen)
    assert 0 < batch.train_acc < 1
    with torch.no_grad():
        ref = batch.logprobs(learner.ref_model)[0]
    stats = [prm_update(learner, cfg, batch, ref) for _ in range(12)]
    # the PRM starts equal to its reference (q = 0: loss log 2 on its first mini-batch); trained on the labels its
    # implicit reward separates right from wrong answers
    assert abs(stats[0]["prm_loss"] - math.log(2)) < 1e-2
    assert stats[-1]["prm_loss"] < stats[0]["prm_loss"] - 0.05 and stats[-1]["prm_acc"] > stats[0]["prm_acc"]


def test_prime_run_resumes_with_its_prm(tiny_spec_file, warm_store, tmp_path):
    cfg = _config(tiny_spec_file, algorithm=PRIME)
    full = train(Run(tmp_path / "full"), cfg, 0, warm_store, log=lambda *_: None)
    assert all("prm_loss" in r and "prm_acc" in r for r in full)

    run = interrupted_after_step_4(cfg, tmp_path / "cut", warm_store)
    assert "prm" in torch.load(run.checkpoint_file, weights_only=False)
    assert _strip(train(run, cfg, 0, warm_store, resume=True, log=lambda *_: None)) == _strip(full)


def test_interrupted_run_needs_resume_or_force(tiny_spec_file, warm_store, tmp_path):
    from replicate.errors import UserError
    from replicate.store import check_resumable
    run = Run(tmp_path / "r")
    run.path.mkdir()
    run.append_metrics({"step": 0})
    with pytest.raises(UserError, match="stopped after 1 steps; pass --resume to continue it or --force"):
        check_resumable(run, resume=False, force=False)
    check_resumable(run, resume=False, force=True)
    assert not run.started


def test_fig1_smoke(tmp_path, fig_store):
    """fig1 end to end at tiny scale, shortened: warm-up, 2 seeds x 12 steps, figure and claims."""
    res = _cli("fig1", "--seeds", "2", "--steps", "12", "--out", str(tmp_path / "out"), store=fig_store)
    assert res.returncode == 0, res.stderr[-2000:]
    claims = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert {c["id"] for c in claims["claims"]} >= {"entropy_collapse", "entropy_drop_early", "law_fit_tight"}
    assert (tmp_path / "out" / "fig1.png").exists() and (tmp_path / "out" / "fig1.pdf").exists()
    # the terminal gets the claims table; the analysis' numbers stay in claims.md
    assert "entropy_collapse" in res.stdout
    assert "```json" not in res.stdout and "```json" in (tmp_path / "out" / "claims.md").read_text()


@pytest.mark.parametrize("loss", ["kl_cov", "clip_cov"])
def test_cov_scope_batch_selects_over_the_mini_batch_whatever_the_micro_batching(loss, tiny_spec_file, warm_store):
    import random as pyrandom

    import torch

    from replicate.algorithms import ADVANTAGES, POLICY_LOSSES, token_rewards
    from replicate.runners.rl.rollout import make_generator, rollout
    from replicate.tasks import make_task
    from replicate.runners.rl.trainer import Learner, select_tokens
    from replicate.runners.rl.warmup import base_policy
    cfg = _config(tiny_spec_file, rollout={"temperature": 1.5})
    model, tok = base_policy(cfg, warm_store, 0, log=lambda *_: None)
    batch = rollout(model.eval(), tok, make_task("addition", digits=[1], holdout=32), cfg.rollout, slice(None),
                    pyrandom.Random(0), make_generator(0, "cpu"))
    mask = batch.response_mask
    adv, _ = ADVANTAGES["grpo"](token_rewards(batch.scores, mask), mask, batch.index)
    with torch.no_grad():
        old = batch.logprobs(model)[0]
    params = ({"kl_cov_ratio": 0.05} if loss == "kl_cov" else
              {"clip_cov_ratio": 0.05, "clip_cov_lb": 0.0, "generator": torch.Generator().manual_seed(0)})
    stub = Learner(None, model, model, None, tok, None, None, None, None, None, None, None, None, None)
    rows = torch.arange(len(batch))
    whole = select_tokens(stub, POLICY_LOSSES[loss], batch, rows, old, adv, dict(params), "batch")
    # the same selection from log-probs computed in micro-batches of 1, 2 and 4 rows
    for n in (2, 4, 8):
        with torch.no_grad():
            parts = torch.cat([batch.rows(c).logprobs(model)[0] for c in rows.chunk(n)])
        if loss == "clip_cov":
            params["generator"] = torch.Generator().manual_seed(0)
        assert torch.equal(POLICY_LOSSES[loss].select(old, parts, adv, mask, **params), whole)
    k = max(1, int(0.05 * mask.sum().item()))
    assert (whole.sum() == k) if loss == "kl_cov" else (1 <= whole.sum() <= k)  # Clip-Cov: at most k candidates
    assert select_tokens(stub, POLICY_LOSSES[loss], batch, rows, old, adv, dict(params), "microbatch") is None
    # per micro-batch (verl's behaviour) k is taken per micro-batch, from that micro-batch's token count
    for c in rows.chunk(2):
        half = POLICY_LOSSES["kl_cov"].select(old[c], old[c], adv[c], mask[c], kl_cov_ratio=0.05)
        assert int(half.sum()) == max(1, int(0.05 * mask[c].sum().item()))


def test_probe_leaves_training_unchanged(tiny_spec_file, warm_store, tmp_path):
    """The entropy-change probe samples with its own generator and only reads the policy, so a run without it
    trains bit for bit as the run with it (fig11's small arms drop it: half a small step, read by fig8 only)."""
    probed = train(Run(tmp_path / "p"), _config(tiny_spec_file, train={"probe_prompts": 4}), 0, warm_store,
                   log=lambda *_: None)
    plain = train(Run(tmp_path / "n"), _config(tiny_spec_file, train={"probe_prompts": 0}), 0, warm_store,
                  log=lambda *_: None)
    extra = {k for r in probed for k in r} - {k for r in plain for k in r}
    assert {"probe_delta_entropy", "delta_entropy"} <= extra
    assert _strip([{k: v for k, v in r.items() if k not in extra} for r in probed]) == _strip(plain)
