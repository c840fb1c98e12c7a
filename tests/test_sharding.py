"""Sampling from an FSDP-sharded policy (replicate/runners/rl/sharding.py), on two CPU processes (gloo): inside
full_parameters the unwrapped module generates exactly what the unsharded model generates; outside it, the
module holds flat shards and cannot. (The trainer opens it around validation, rollout and the old log-probs.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from replicate.runners.rl.sharding import full_parameters, is_fsdp

REPO = Path(__file__).resolve().parents[1]
WORKER = '''
import copy, sys, torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from transformers import Qwen2Config, Qwen2ForCausalLM
from replicate.runners.rl.rollout import generate, make_generator
from replicate.runners.rl.sharding import full_parameters, is_fsdp

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
cfg = Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=False)
model = Qwen2ForCausalLM(cfg).eval()
plain = copy.deepcopy(model)
wrapped = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True)
policy = wrapped.module  # what the trainer samples from: accelerator.unwrap_model(model)
ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
mask = torch.ones_like(ids)
args = (ids, mask, 12, 1.0, [31], 0)
want, _ = generate(plain, *args, generator=make_generator(7 + rank, "cpu"))
assert is_fsdp(wrapped) and not is_fsdp(plain)
sharded = [tuple(p.shape) for p in policy.parameters()]
assert sharded != [tuple(p.shape) for p in plain.parameters()], sharded  # flat shards outside the context
try:
    generate(policy, *args, generator=make_generator(7 + rank, "cpu"))
    outside = "ran"
except Exception as exc:  # noqa: BLE001
    outside = type(exc).__name__
with full_parameters(wrapped):
    got, _ = generate(policy, *args, generator=make_generator(7 + rank, "cpu"))
assert torch.equal(got, want), (got, want)
assert [tuple(p.shape) for p in policy.parameters()] == sharded  # resharded after the block
print(f"rank {rank}: {got.shape[1]} tokens identical to the unsharded model; outside the context: {outside}")
dist.destroy_process_group()
'''


def test_full_parameters_is_a_no_op_without_fsdp():
    model = torch.nn.Linear(2, 2)
    with full_parameters(model) as m:
        assert m is model and not is_fsdp(model)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_fsdp_sharded_policy_samples_from_full_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29533", str(script)], capture_output=True, text=True, env=env, timeout=300)
    print(res.stdout)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("identical to the unsharded model") == 2
