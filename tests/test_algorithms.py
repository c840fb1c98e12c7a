"""The algorithm layer against hand-computed values and properties."""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from replicate.algorithms import (ADVANTAGES, POLICY_LOSSES, agg_loss, entropy_from_logits, kl_penalty,
                                  token_covariance)

T = torch.tensor


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


# ---- advantages: known values -------------------------------------------------------------------

def test_grpo_known_values():
    r = T([[0, 0, 1.], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    m = T([[1, 1, 1.], [1, 1, 0], [1, 1, 0], [1, 0, 0]])
    adv, ret = ADVANTAGES["grpo"](r, m, ["a", "a", "b", "b"])
    s = 0.5 / math.sqrt(0.5)  # (1 - 0.5) / unbiased std of [1, 0]
    expected = T([[s, s, s], [-s, -s, 0], [s, s, 0], [-s, 0, 0]])
    assert close(adv, expected, 1e-5) and torch.equal(adv, ret)
    dr, _ = ADVANTAGES["grpo"](r, m, ["a", "a", "b", "b"], norm_adv_by_std_in_grpo=False)
    assert close(dr, expected / s * 0.5)


def test_grpo_group_of_one_uses_mean0_std1():
    adv, _ = ADVANTAGES["grpo"](T([[0, 2.]]), T([[1, 1.]]), [7])
    assert close(adv, T([[2, 2.]]) / (1 + 1e-6))


def test_rloo_known_values():
    r = T([[1.], [0.], [0.]])
    adv, _ = ADVANTAGES["rloo"](r, torch.ones(3, 1), [0, 0, 0])
    # A_i = s_i - mean of the others
    assert close(adv, T([[1.], [-0.5], [-0.5]]))


def test_reinforce_plus_plus_known_values():
    adv, ret = ADVANTAGES["reinforce_plus_plus"](T([[0, 0, 1.]]), T([[1, 1, 1.]]), [0], gamma=0.5)
    assert close(ret, T([[0.25, 0.5, 1.0]]))
    g = np.array([0.25, 0.5, 1.0])
    assert close(adv, T((g - g.mean()) / math.sqrt(g.var(ddof=1) + 1e-8))[None], 1e-5)


def test_reinforce_plus_plus_baseline_known_values():
    r = T([[0, 1.], [0, 0.], [0, 1.]])
    m = T([[1, 1.], [1, 1.], [1, 0.]])
    adv, _ = ADVANTAGES["reinforce_plus_plus_baseline"](r, m, [0, 0, 1])
    vals = np.array([0.5, 0.5, -0.5, -0.5, 1.0])  # centred scores over the 5 valid tokens (a group of one: s)
    w = (vals - vals.mean()) / math.sqrt(vals.var(ddof=1) + 1e-8)
    assert close(adv, T([[w[0], w[1]], [w[2], w[3]], [w[4], 0]]), 1e-5)


def test_gae_known_values():
    adv, ret = ADVANTAGES["gae"](T([[0, 1.]]), T([[1, 1.]]), [0], values=T([[0.5, 0.2]]), gamma=1.0, lam=1.0)
    assert close(ret, T([[1.0, 1.0]]))  # A = [0.5, 0.8], returns = A + V
    assert close(adv, T([[-1 / math.sqrt(2), 1 / math.sqrt(2)]]), 1e-4)


def test_gae_skips_masked_positions():
    r, v = T([[0, 0, 1.]]), T([[0.5, 9.0, 0.2]])
    a1, r1 = ADVANTAGES["gae"](r, T([[1, 0, 1.]]), [0], values=v, gamma=0.9, lam=0.8)
    a2, r2 = ADVANTAGES["gae"](T([[0, 1.]]), T([[1, 1.]]), [0], values=T([[0.5, 0.2]]), gamma=0.9, lam=0.8)
    assert close(a1[:, [0, 2]], a2, 1e-5) and close(r1[:, [0, 2]], r2, 1e-5)


def test_prime_reduces_to_rloo_outcome_without_process_reward():
    r = T([[0, 1.], [0, 0.]])
    m = torch.ones(2, 2)
    adv, ret = ADVANTAGES["prime"](r, m, [0, 0], rm_log_prob=torch.zeros(2, 2), ref_log_prob=torch.zeros(2, 2))
    # outcome stream after leave-one-out: x·2 - (0.5 + 0)/1 on valid tokens -> [[-0.5, 1.5], [-0.5, -0.5]]
    assert close(ret, T([[1.0, 1.5], [-1.0, -0.5]]))
    assert abs(adv[m.bool()].mean().item()) < 1e-6


def test_implicit_prm_loss_known_values():
    from replicate.algorithms import implicit_prm_loss, implicit_rewards, label_accuracy
    rm, ref = T([[-1.0, -2.0, -9.0], [-3.0, -1.0, 0.0]]), T([[-2.0, -2.0, 0.0], [-1.0, -2.0, 0.0]])
    mask, labels = T([[1, 1, 0], [1, 1, 1.]]), T([1.0, 0.0])
    # r_t = 0.5·(rm - ref) on valid tokens: [[0.5, 0, 0], [-1, 0.5, 0]]; q = [0.5, -0.5]
    assert close(implicit_rewards(rm, ref, mask, 0.5), T([[0.5, 0, 0], [-1, 0.5, 0]]))
    loss, q = implicit_prm_loss(rm, ref, mask, labels, beta=0.5)
    assert close(q, T([0.5, -0.5]))
    # BCE: -(log σ(0.5) + log(1 - σ(-0.5))) / 2 = -log σ(0.5) = log(1 + e^-0.5)
    assert abs(loss.item() - math.log(1 + math.exp(-0.5))) < 1e-6
    assert label_accuracy(q, labels) == 1.0 and label_accuracy(-q, labels) == 0.0
    # a PRM equal to its reference: q = 0, loss = log 2 whatever the labels
    assert abs(implicit_prm_loss(ref, ref, mask, labels, 0.05)[0].item() - math.log(2)) < 1e-6


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(1, 6), st.integers(-12, 12).map(lambda x: x / 4), st.sampled_from(["grpo", "rloo"]))
def test_equal_rewards_give_zero_advantage(n, t, value, name):
    # Rewards are dyadic (exact in float32). With e.g. five rewards of 0.849 the float32 mean is off by ~6e-8,
    # std ~6e-8, and (s - mean)/(std + 1e-6) = ±0.056: verl's formula does the same; verifier rewards are 0/1.
    # Not for reinforce_plus_plus_baseline: it whitens over the batch, so an all-equal batch turns float
    # rounding (~1e-7) into O(0.1) advantages through 1/sqrt(var + 1e-8), exactly as verl's formula does.
    r = torch.zeros(n, t)
    r[:, -1] = value
    adv, _ = ADVANTAGES[name](r, torch.ones(n, t), [0] * n)
    assert adv.abs().max() < 1e-5


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(list(ADVANTAGES)))
def test_advantages_are_zero_on_masked_positions(seed, name):
    g = torch.Generator().manual_seed(seed)
    r, mask = torch.randn(6, 5, generator=g), (torch.rand(6, 5, generator=g) > 0.3).float()
    mask[:, 0] = 1
    extra = {"values": torch.randn(6, 5, generator=g)} if name == "gae" else {}
    if name == "prime":
        extra = {"rm_log_prob": -torch.rand(6, 5, generator=g), "ref_log_prob": -torch.rand(6, 5, generator=g)}
    adv, _ = ADVANTAGES[name](r, mask, [0, 0, 0, 1, 1, 1], **extra)
    assert torch.all(adv[mask == 0] == 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=24), st.integers(0, 10_000), st.booleans())
def test_grpo_equals_its_per_group_formula(ids, seed, by_std):
    """The one-pass GRPO (index_add over groups) against the docstring's formula, group by group: ragged,
    interleaved groups, groups of one, 0/1 and real-valued rewards."""
    g = torch.Generator().manual_seed(seed)
    n = len(ids)
    r = torch.zeros(n, 3)
    r[:, -1] = (torch.rand(n, generator=g) > 0.5).float() if seed % 2 else torch.randn(n, generator=g)
    adv, _ = ADVANTAGES["grpo"](r, torch.ones(n, 3), ids, norm_adv_by_std_in_grpo=by_std)
    s = r.sum(-1)
    for gid in set(ids):
        rows = [i for i, x in enumerate(ids) if x == gid]
        mean, std = (s[rows].mean(), s[rows].std()) if len(rows) > 1 else (0.0, 1.0)
        want = (s[rows] - mean) / (std + 1e-6) if by_std else s[rows] - mean
        assert torch.allclose(adv[rows, 0], want, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=16), st.integers(0, 10_000))
def test_leave_one_out_advantages_equal_their_per_group_formulas(ids, seed):
    """RLOO, REINFORCE++'s group baseline and PRIME's leave-one-out (one pass over the groups) against their
    docstrings' formulas, group by group: ragged, interleaved groups, groups of one, responses of unequal length."""
    g = torch.Generator().manual_seed(seed)
    n, t = len(ids), 4
    length = torch.randint(2, t + 1, (n,), generator=g)  # responses of 2..t tokens (whitening needs two)
    mask = (torch.arange(t) < length.unsqueeze(-1)).float()
    r = torch.zeros(n, t)
    r[torch.arange(n), length - 1] = torch.randn(n, generator=g)  # the outcome on each response's last token
    rm, ref = -torch.rand(n, t, generator=g), -torch.rand(n, t, generator=g)
    s = r.sum(-1)
    groups = [[i for i, x in enumerate(ids) if x == gid] for gid in set(ids)]
    loo, centred, streams = s.clone(), s.clone(), []
    for rows in groups:
        k = len(rows)
        if k > 1:
            loo[rows] = s[rows] * k / (k - 1) - s[rows].mean() * k / (k - 1)
            centred[rows] = s[rows] - s[rows].mean()
    assert torch.allclose(ADVANTAGES["rloo"](r, mask, ids)[0], loo.unsqueeze(-1) * mask, atol=1e-5)
    for x in (0.05 * (rm - ref) * mask, r * mask):
        out = x.clone()
        row_mean = x.sum(-1) / mask.sum(-1)
        for rows in groups:
            k = len(rows)
            if k > 1:
                out[rows] = torch.where(mask[rows] > 0, x[rows] * k / (k - 1) - row_mean[rows].sum() / (k - 1), x[rows])
        streams.append(out)
    _, ret = ADVANTAGES["prime"](r, mask, ids, rm_log_prob=rm, ref_log_prob=ref)
    want = torch.zeros_like(r)
    running = torch.zeros(n)
    for j in reversed(range(t)):
        running = (streams[0] + streams[1])[:, j] + running
        want[:, j] = running
        running = running * mask[:, j]
    assert torch.allclose(ret, want, atol=1e-4)
    tiled = centred.unsqueeze(-1).expand(n, t) * mask
    vals = tiled[mask > 0]
    got, _ = ADVANTAGES["reinforce_plus_plus_baseline"](r, mask, ids)
    assert torch.allclose(got, (tiled - vals.mean()) / torch.sqrt(vals.var() + 1e-8) * mask, atol=1e-4)


# ---- policy losses -------------------------------------------------------------------------------

def test_vanilla_known_values():
    old = torch.zeros(1, 2)
    lp = torch.log(T([[1.5, 0.5]]))
    loss, m = POLICY_LOSSES["vanilla"](old, lp, T([[1., -1.]]), torch.ones(1, 2), clip_ratio=0.2, clip_ratio_c=3.0)
    assert close(loss, -0.2) and m["clipfrac"] == 1.0
    assert math.isclose(m["ppo_kl"], (-math.log(1.5) - math.log(0.5)) / 2, rel_tol=1e-5)


def test_vanilla_dual_clip_and_clip_higher():
    old = torch.zeros(1, 1)
    loss, m = POLICY_LOSSES["vanilla"](old, torch.log(T([[5.0]])), T([[-1.]]), torch.ones(1, 1), clip_ratio_c=3.0)
    assert close(loss, 3.0) and m["clipfrac_lower"] == 1.0
    # clip-higher: ratio 1.25 with A > 0 is inside (1-0.2, 1+0.28) and not clipped
    loss, m = POLICY_LOSSES["vanilla"](old, torch.log(T([[1.25]])), T([[1.]]), torch.ones(1, 1),
                                       clip_ratio_low=0.2, clip_ratio_high=0.28)
    assert close(loss, -1.25) and m["clipfrac"] == 0.0


def test_clip_cov_deterministic_case():
    lp = T([[0., -4., 0., 0.]])
    adv = T([[0., -2., 0., 2.]])  # Cov = [0, 6, 0, 2]: only token 3 lies in (1, 5)
    mask = torch.ones(1, 4)
    assert close(token_covariance(lp, adv, mask), T([[0., 6., 0., 2.]]))
    loss, m = POLICY_LOSSES["clip_cov"](lp.clone(), lp, adv, mask, clip_cov_ratio=0.25)
    assert close(loss, 0.5) and m["cov_frac"] == 0.25
    vanilla_loss, _ = POLICY_LOSSES["vanilla"](lp.clone(), lp, adv, mask)
    assert close(vanilla_loss, 0.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from([0.01, 0.05, 0.2]))
def test_clip_cov_acts_on_exactly_k_tokens(seed, ratio):
    g = torch.Generator().manual_seed(seed)
    lp = -3 * torch.rand(8, 16, generator=g)
    adv = 3 * torch.randn(8, 16, generator=g)
    mask = (torch.rand(8, 16, generator=g) > 0.2).float()
    cov = token_covariance(lp, adv, mask)
    n_cand = int(((cov > 1) & (cov < 5) & (mask > 0)).sum())
    k = max(1, int(ratio * mask.sum().item()))
    _, m = POLICY_LOSSES["clip_cov"](lp.clone(), lp, adv, mask, clip_cov_ratio=ratio, generator=g)
    acted = round(m["cov_frac"] * mask.sum().item())
    assert acted == min(k, n_cand)


def test_clip_cov_generator_fixes_the_choice():
    g = torch.Generator().manual_seed(0)
    lp, adv = -3 * torch.rand(8, 16, generator=g), 3 * torch.randn(8, 16, generator=g)
    mask = torch.ones(8, 16)
    runs = [POLICY_LOSSES["clip_cov"](lp.clone(), lp, adv, mask, clip_cov_ratio=0.02,
                                      generator=torch.Generator().manual_seed(5))[0] for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from([0.01, 0.1, 0.3]), st.floats(0.1, 2.0))
def test_kl_cov_is_vanilla_unclipped_plus_penalty_on_topk(seed, ratio, beta):
    g = torch.Generator().manual_seed(seed)
    old = -3 * torch.rand(4, 10, generator=g)
    lp = (old + 0.3 * torch.randn(4, 10, generator=g)).clamp(max=0)
    adv = torch.randn(4, 10, generator=g)
    mask = (torch.rand(4, 10, generator=g) > 0.25).float()
    mask[0, 0] = 1
    loss, m = POLICY_LOSSES["kl_cov"](old, lp, adv, mask, kl_cov_ratio=ratio, ppo_kl_coef=beta)
    # independent computation with numpy
    valid = mask.numpy().reshape(-1) > 0
    a, l = adv.numpy().reshape(-1)[valid], lp.numpy().reshape(-1)[valid]
    cov = (a - a.mean()) * (l - l.mean())
    k = max(1, int(valid.sum() * ratio))
    sel = np.zeros(valid.sum())
    sel[np.argsort(-cov, kind="stable")[:k]] = 1
    ratio_t = np.exp((lp - old).numpy().reshape(-1)[valid])
    per_tok = -a * ratio_t + beta * np.abs((lp - old).numpy().reshape(-1)[valid]) * sel
    assert math.isclose(loss.item(), per_tok.mean(), rel_tol=1e-4, abs_tol=1e-6)
    assert math.isclose(m["cov_frac"], k / valid.sum())


def test_kl_cov_penalty_vanishes_on_policy():
    lp = -torch.rand(3, 5)
    adv = torch.randn(3, 5)
    loss, _ = POLICY_LOSSES["kl_cov"](lp.clone(), lp, adv, torch.ones(3, 5), kl_cov_ratio=0.5)
    assert close(loss, (-adv).mean())


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 100_000), st.sampled_from(list(POLICY_LOSSES)),
       st.sampled_from(["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]))
def test_policy_losses_ignore_masked_values(seed, name, mode):
    g = torch.Generator().manual_seed(seed)
    old, lp, adv = -torch.rand(4, 6, generator=g), -torch.rand(4, 6, generator=g), torch.randn(4, 6, generator=g)
    mask = (torch.rand(4, 6, generator=g) > 0.3).float()
    mask[:, 0] = 1
    kwargs = {"generator": torch.Generator().manual_seed(1)} if name == "clip_cov" else {}
    base, _ = POLICY_LOSSES[name](old, lp, adv, mask, loss_agg_mode=mode, **kwargs)
    noise = torch.randn(4, 6, generator=g) * (1 - mask)
    kwargs = {"generator": torch.Generator().manual_seed(1)} if name == "clip_cov" else {}
    moved, _ = POLICY_LOSSES[name](old + noise, lp + noise, adv + noise, mask, loss_agg_mode=mode, **kwargs)
    assert close(base, moved, 1e-5)


# ---- aggregation, entropy, KL --------------------------------------------------------------------

def test_agg_loss_known_values():
    loss = T([[1., 2., 3.], [4., 5., 6.]])
    mask = T([[1., 1., 0.], [1., 0., 0.]])
    assert close(agg_loss(loss, mask, "token-mean"), 7 / 3)
    assert close(agg_loss(loss, mask, "seq-mean-token-sum"), 3.5)
    assert close(agg_loss(loss, mask, "seq-mean-token-mean"), 2.75)
    assert close(agg_loss(loss, mask, "seq-mean-token-sum-norm"), 7 / (2 * 3))  # verl 0.9.1: / (n_seq · T)
    # a fully masked row does not count as a sequence in the seq-mean modes (it does in n_seq of -norm)
    loss3, mask3 = torch.cat([loss, T([[9., 9., 9.]])]), torch.cat([mask, T([[0., 0., 0.]])])
    assert close(agg_loss(loss3, mask3, "seq-mean-token-sum"), 3.5)
    assert close(agg_loss(loss3, mask3, "seq-mean-token-mean"), 2.75)
    assert close(agg_loss(loss3, mask3, "seq-mean-token-sum-norm"), 7 / (3 * 3))
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        agg_loss(loss, mask, "mean")


@given(st.integers(1, 6), st.integers(1, 9))
def test_token_mean_of_ones_is_one(b, t):
    assert close(agg_loss(torch.ones(b, t), torch.ones(b, t), "token-mean"), 1.0)


def test_entropy_known_values_and_chunking():
    assert close(entropy_from_logits(torch.zeros(2, 3, 50)), torch.full((2, 3), math.log(50)), 1e-5)
    p = T([0.5, 0.25, 0.25])
    assert close(entropy_from_logits(torch.log(p)), -(p * p.log()).sum(), 1e-6)
    logits = torch.randn(3, 7, 101, generator=torch.Generator().manual_seed(0)) * 4
    assert close(entropy_from_logits(logits, chunk_size=4), entropy_from_logits(logits), 1e-5)


def test_chunked_entropy_materialises_one_chunk_of_softmax_at_a_time(monkeypatch):
    import replicate.algorithms.entropy as ent
    sizes, real = [], torch.softmax
    monkeypatch.setattr(ent.torch, "softmax", lambda x, dim: sizes.append(x.numel()) or real(x, dim=dim))
    logits = torch.randn(4, 16, 1000)
    ent.entropy_from_logits(logits, chunk_size=8)
    assert max(sizes) == 8 * 1000 and len(sizes) == 8  # 64 rows in chunks of 8, never all 64 x 1000 at once


def test_chunked_logprobs_equal_log_softmax_one_chunk_at_a_time(monkeypatch):
    import replicate.algorithms.entropy as ent
    logits = torch.randn(4, 16, 1000, generator=torch.Generator().manual_seed(1)) * 3
    labels = torch.randint(0, 1000, (4, 16), generator=torch.Generator().manual_seed(2))
    expected = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
    sizes, real = [], torch.logsumexp
    monkeypatch.setattr(ent.torch, "logsumexp", lambda x, dim: sizes.append(x.numel()) or real(x, dim=dim))
    assert close(ent.logprobs_from_logits(logits, labels, chunk_size=8), expected, 1e-5)
    assert max(sizes) == 8 * 1000 and len(sizes) == 8
    assert close(ent.logprobs_from_logits(logits, labels), expected, 1e-5)


def test_kl_penalty_known_values():
    lp, ref = torch.log(T([0.5])), torch.log(T([0.25]))
    assert close(kl_penalty(lp, ref, "kl"), math.log(2)) and close(kl_penalty(lp, ref, "k1"), math.log(2))
    assert close(kl_penalty(lp, ref, "abs"), math.log(2))
    assert close(kl_penalty(lp, ref, "mse"), 0.5 * math.log(2) ** 2)
    assert close(kl_penalty(lp, ref, "low_var_kl"), 0.5 + math.log(2) - 1)
    assert close(kl_penalty(T([0.0]), T([-50.0]), "k3"), 10.0)  # clamped
    with pytest.raises(ValueError, match="unknown KL kind"):
        kl_penalty(lp, ref, "k4")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_k3_is_unbiased_for_kl_under_sampling(seed):
    # E_{a~π}[k3] = KL(π||π_ref): exact expectation over a small vocabulary
    g = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(torch.randn(6, generator=g), 0)
    logq = torch.log_softmax(torch.randn(6, generator=g), 0)
    assume(bool((kl_penalty(logp, logq, "k3") < 10).all()))  # the clamp at 10 biases it, as in verl
    exact = (logp.exp() * (logp - logq)).sum()
    via_k3 = (logp.exp() * kl_penalty(logp, logq, "k3")).sum()
    assert close(exact, via_k3, 1e-5)
