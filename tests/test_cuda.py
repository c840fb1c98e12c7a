"""On a CUDA GPU (skipped without one): a tiny run trains two steps and validates on the GPU, in the spec's dtype.

Run on a GPU machine: `OMP_NUM_THREADS=1 python -m pytest tests/test_cuda.py -q`.
"""
import math

import pytest
import torch

from replicate.specs import RunConfig
from replicate.store import Run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

BODY = {
    "model": {"kind": "tiny", "config": {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64,
                                         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                                         "max_position_embeddings": 64, "tie_word_embeddings": True}},
    "task": {"name": "addition", "params": {"digits": [1], "holdout": 16}},
    "warmup": {"steps": 20, "batch_size": 16},
    "algorithm": {"advantage": "grpo", "policy_loss": "vanilla"},
    "rollout": {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 6},
    "train": {"steps": 2, "ppo_mini_batches": 2, "optimizer": {"lr": 1.0e-3}, "probe_prompts": 2},
    "eval": {"every": 2, "n_prompts": 8, "k": 2, "temperature": 1.0},
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_run_trains_and_validates_on_cuda(dtype, tmp_path):
    from replicate.runners.rl import trainer
    cfg = RunConfig.model_validate({**BODY, "model": {**BODY["model"], "dtype": dtype}})
    seen = {}
    setup = trainer.setup

    def spy(*a, **k):
        lr = setup(*a, **k)
        seen["device"], seen["dtype"] = next(lr.policy.parameters()).device, next(lr.policy.parameters()).dtype
        seen["gen"] = lr.gen.device
        return lr
    trainer.setup = spy
    try:
        rows = trainer.train(Run(tmp_path / "run"), cfg, 0, tmp_path / "store", log=lambda *a: None)
    finally:
        trainer.setup = setup
    assert seen["device"].type == "cuda" and seen["gen"].type == "cuda" and seen["dtype"] == getattr(torch, dtype)
    assert len(rows) == 2 and "val_acc" in rows[0]
    for row in rows:
        bad = {k: v for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"non-finite metrics at step {row['step']}: {bad}"
