"""Speed levers and what they keep: the update's first forward reused for the rollout policy's log-probs gives
the same metrics, step for step, as a separate no-grad pass; a group's shared prompt pass gives the per-row logits
and gradients (up to float rounding)."""
import pytest
import torch

from replicate.runners.rl import trainer
from replicate.specs import RunConfig, deep_merge, load_spec
from replicate.store import Run


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_time" and not k.startswith("time_")} for r in rows]


@pytest.mark.parametrize("over", [
    {"train": {"steps": 4, "ppo_mini_batches": 1}},                    # fig1's shape
    {"train": {"steps": 4, "ppo_mini_batches": 1, "ppo_epochs": 2}},   # the second epoch runs past the rollout policy
    {"train": {"steps": 4, "ppo_mini_batches": 1},
     "algorithm": {"policy_loss": "clip_cov", "entropy_coeff": 0.01,
                   "policy_loss_params": {"clip_cov_ratio": 0.05, "clip_cov_lb": 0.0}}},
])
def test_reused_first_forward_gives_the_separate_pass_metrics(over, tiny_spec_file, warm_store, tmp_path, monkeypatch):
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), over))
    calls = []
    reuses = trainer.reuses_update_forward

    def counted(*args):
        calls.append(reuses(*args))
        return calls[-1]
    monkeypatch.setattr(trainer, "reuses_update_forward", counted)
    fast = trainer.train(Run(tmp_path / "fast"), cfg, 0, warm_store, log=lambda *_: None)
    assert calls and all(calls)  # the lever was used at every step
    monkeypatch.setattr(trainer, "reuses_update_forward", lambda *args: False)
    slow = trainer.train(Run(tmp_path / "slow"), cfg, 0, warm_store, log=lambda *_: None)
    assert _strip(fast) == _strip(slow)
    if cfg.train.ppo_epochs == 1:
        assert all(r["ppo_kl"] == 0.0 for r in fast)


@pytest.mark.parametrize("over", [{"algorithm": {"kl_in_reward_coef": 0.01}},  # the reward needs them first
                                  {"train": {"ppo_mini_batches": 2}},          # rows scored in other shapes
                                  {"train": {"ppo_mini_batches": 1, "micro_batches": 2}}])
def test_the_separate_pass_stays_where_the_update_cannot_give_it(over, tiny_spec_file):
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), {"train": {"ppo_mini_batches": 1}}))
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), over))
    learner = type("L", (), {"policy": torch.nn.Linear(1, 1)})()
    learner.policy.config = type("C", (), {})()
    assert not trainer.reuses_update_forward(learner, cfg)
    assert trainer.reuses_update_forward(learner, RunConfig.model_validate(
        deep_merge(cfg.model_dump(), {"algorithm": {"kl_in_reward_coef": 0.0}, "train": {"ppo_mini_batches": 1,
                                                                                        "micro_batches": 1}})))


def _per_row_logits(model, ids, mask, resp):
    from replicate.runners.rl.models import forward_responses, last_logits_only
    T = resp.shape[1]
    return forward_responses(model, ids, mask, resp, **last_logits_only(model, T + 1)).logits[:, -T - 1:-1].float()


def test_a_shared_prompt_pass_gives_the_per_row_logits_and_gradients():
    from replicate.runners.rl.models import char_tokenizer, response_logits, tiny_model
    from replicate.runners.rl.rollout import encode_prompts
    tok = char_tokenizer("0123456789+*=")
    torch.manual_seed(0)
    model = tiny_model({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}, tok)
    ids, mask = encode_prompts(tok, ["47*38=", "3*5=", "12*99=", "7="])  # left-padded to different lengths
    reps = torch.tensor([3, 1, 4, 2])  # group sizes, one of them alone
    ids, mask = ids.repeat_interleave(reps, 0), mask.repeat_interleave(reps, 0)
    resp = torch.randint(3, len(tok), (len(ids), 5), generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (response_logits, lambda *a: _per_row_logits(*a[:4])):
        model.zero_grad()
        logits = fn(model, ids, mask, resp, 1.0)
        (logits.log_softmax(-1) * torch.linspace(-1, 1, logits.shape[-1])).sum().backward()
        grads.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (shared, g_shared), (per_row, g_row) = grads
    # the same values up to float32 rounding (matmuls of other shapes may round differently; fig1's shapes are
    # bit-equal on CPU, and a row given another group's cache would be off by far more)
    torch.testing.assert_close(shared, per_row, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_shared, g_row):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_rows_share_a_prompt_pass_only_where_ids_and_mask_both_match():
    from replicate.runners.rl.models import shared_prompts
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [0, 5, 6], [7, 5, 6], [7, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]])  # row 2: a real token 0 (pad = EOS)
    first, inverse = shared_prompts(ids, mask)
    assert first.tolist() == [0, 2, 3] and inverse.tolist() == [0, 0, 1, 2, 2]
