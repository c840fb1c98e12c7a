"""`accelerate launch` with two processes on the CPU (gloo): one run directory, metrics gathered, the same rows
and keys as a one-process run, whole groups per process, extension/resume from process 0's files.

accelerate's own `--cpu --num_processes 2` starts ONE process (its multi-CPU mode needs MPI); `--multi_gpu
--num_processes 2` starts two through torchrun, and on a machine without CUDA each process's Accelerator(cpu=True)
joins a gloo group (DistributedType.MULTI_CPU). That is the command this test runs.
"""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_SPEC

REPO = Path(__file__).resolve().parent.parent
LAUNCH = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "replicate"]


def _run(cmd, tmp_path, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "REPLICATE_HOME": str(tmp_path)}
    env.pop("REPLICATE_WORKERS", None)
    proc = subprocess.run([*cmd, "run", str(tmp_path / "tinytest.yaml"), "--seeds", "1", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _runs(store):
    return sorted(p for p in (store / "tinytest").iterdir() if p.is_dir())


def _keys(row):
    """A row's keys less the accuracy buckets (cov_acc_<n>, cov_easy/medium/hard: present when the batch has them)."""
    return {k for k in row if not k.startswith("cov_") or k == "cov"}


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="needs the accelerate CLI")
def test_two_processes_match_one_process_run(tmp_path):
    (tmp_path / "tinytest.yaml").write_text(TINY_SPEC)
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "replicate"], tmp_path, "--steps", "4", "--store", str(one), "--out", str(tmp_path / "o1"))
    shutil.copytree(one / "_warmup", two / "_warmup")  # the same base policy (same key): train it once
    _run(LAUNCH, tmp_path, "--steps", "4", "--store", str(two), "--out", str(tmp_path / "o2"))
    [r1], [r2] = _runs(one), _runs(two)  # ONE run directory, written by process 0
    assert r1.name == r2.name
    assert json.loads((r2 / "provenance.json").read_text())["num_processes"] == 2
    assert (r2 / "DONE").exists() and (r2 / "final.pt").exists() and (tmp_path / "o2" / "claims.json").exists()
    a, b = _rows(r1), _rows(r2)
    assert len(a) == len(b) == 4 and [_keys(x) for x in a] == [_keys(x) for x in b]
    assert [r["step"] for r in b] == [0, 1, 2, 3]
    # the same policy is validated at step 0 (greedy, same problems), and every group keeps its size
    assert a[0]["val_acc"] == b[0]["val_acc"]
    assert all(r["group_size"] == 4 and r["groups_short"] == 0 for r in a + b)
    # train_acc over 4 prompts x 4 samples: each process holds 2 whole groups (8 rows); the gathered mean is
    # the mean of all 16 rows
    assert all(abs(r["train_acc"] * 16 - round(r["train_acc"] * 16)) < 1e-6 for r in b)
    final = torch.load(r2 / "final.pt", weights_only=False)
    gens = final["rng"]["torch_per_process"]
    assert len(gens) == 2 and not torch.equal(gens[0], gens[1])  # each process's own sampling generator
    # --resume with more steps: process 0 extends the finished run; both processes restore its state
    _run(LAUNCH, tmp_path, "--steps", "6", "--resume", "--store", str(two), "--out", str(tmp_path / "o3"))
    longer = [r for r in _runs(two) if r != r2]
    assert len(longer) == 1
    c = _rows(longer[0])
    assert len(c) == 6 and c[:4] == b and (longer[0] / "DONE").exists()


def test_shards_are_whole_groups_and_grpo_statistics_are_per_group(tiny_spec_file, tmp_path):
    """Process p of n samples prompts p*k..(p+1)*k-1 of the step's prompts (the same py_rng on every process),
    group_size rows each; GRPO's per-group statistics are the same computed per shard or on the whole batch."""
    from replicate.algorithms import ADVANTAGES, token_rewards
    from replicate.runners.rl.rollout import make_generator, rollout
    from replicate.specs import RunConfig, deep_merge, load_spec
    from replicate.tasks import make_task
    from replicate.runners.rl.warmup import base_policy
    cfg = load_spec(tiny_spec_file).resolve("tiny")
    cfg = RunConfig.model_validate(deep_merge(cfg.model_dump(), {"warmup": {"steps": 0}}))
    model, tok = base_policy(cfg, tmp_path, 0, log=lambda *a: None)
    task = make_task(cfg.task.name, **cfg.task.params)
    ro, n = cfg.rollout, 2
    full = rollout(model, tok, task, ro, slice(None), random.Random(0), make_generator(0, "cpu"))
    k = ro.prompts_per_step // n
    shards = [rollout(model, tok, task, ro, slice(p * k, (p + 1) * k), random.Random(0), make_generator(0, "cpu"))
              for p in range(n)]
    assert [q.prompt for s in shards for q in s.problems] == [q.prompt for q in full.problems]
    for s in shards:
        assert [len(g) for g in s.groups()] == [ro.group_size] * k
    # GRPO on the whole batch vs on each shard, with the same scores: identical advantages
    scores = torch.tensor([float(i % 3 == 0) for i in range(len(full))])
    mask = torch.ones(len(full), 1)
    whole, _ = ADVANTAGES["grpo"](token_rewards(scores, mask), mask, full.index)
    rows = ro.group_size * k
    parts = [ADVANTAGES["grpo"](token_rewards(scores[p * rows:(p + 1) * rows], mask[:rows]), mask[:rows],
                                shards[p].index)[0] for p in range(n)]
    assert torch.allclose(torch.cat(parts), whole)
