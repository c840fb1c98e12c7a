"""Speed levers that must not change a number: the update's first forward reused for the rollout policy's
log-probs gives the same metrics, step for step, as a separate no-grad pass."""
import pytest
import torch

from replicate import trainer
from replicate.specs import RunConfig, deep_merge, load_spec
from replicate.store import Run


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_time" and not k.startswith("time_")} for r in rows]


@pytest.mark.parametrize("over", [
    {"train": {"steps": 4, "ppo_mini_batches": 1}},                    # fig1's shape: every row reused
    {"train": {"steps": 4, "ppo_mini_batches": 2, "micro_batches": 2}},  # the first mini-batch reused, in parts
    {"train": {"steps": 4}, "algorithm": {"policy_loss": "clip_cov", "entropy_coeff": 0.01,
                                          "policy_loss_params": {"clip_cov_ratio": 0.05, "clip_cov_lb": 0.0}}},
])
def test_reused_first_forward_gives_the_separate_pass_metrics(over, tiny_spec_file, warm_store, tmp_path, monkeypatch):
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), over))
    calls = []
    reused_rows = trainer.reused_rows

    def counted(*args):
        rows = reused_rows(*args)
        calls.append(len(rows))
        return rows
    monkeypatch.setattr(trainer, "reused_rows", counted)
    fast = trainer.train(Run(tmp_path / "fast"), cfg, 0, warm_store, log=lambda *_: None)
    assert calls and all(n > 0 for n in calls)  # the lever was used at every step
    monkeypatch.setattr(trainer, "reused_rows", lambda *args: torch.zeros(0, dtype=torch.long))
    slow = trainer.train(Run(tmp_path / "slow"), cfg, 0, warm_store, log=lambda *_: None)
    assert _strip(fast) == _strip(slow)
    assert all(r["ppo_kl"] == 0.0 for r in fast if cfg.train.ppo_mini_batches == 1)


def test_nothing_is_reused_where_the_reward_needs_log_probs_before_the_update(tiny_spec_file):
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), {"algorithm": {"kl_in_reward_coef": 0.01}}))
    assert len(trainer.reused_rows(None, cfg, None)) == 0
