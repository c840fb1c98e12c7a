import textwrap
from pathlib import Path

import pytest

TINY_SPEC = """\
id: tinytest
aliases: [tt]
paper: entropy-mechanism
reproduces: "test spec: a few GRPO steps on a barely warmed-up tiny model"
body:
  model:
    kind: tiny
    config: {model_type: qwen2, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
             num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
             tie_word_embeddings: true}
  task: {name: addition, params: {digits: [1], holdout: 32}}
  warmup: {steps: 300, batch_size: 32, lr: 5.0e-3, noise: 0.2}
  algorithm: {advantage: grpo, policy_loss: vanilla}
  rollout: {prompts_per_step: 4, group_size: 4, max_new_tokens: 8}
  train: {steps: 8, ppo_mini_batches: 2, optimizer: {lr: 1.0e-3}, checkpoint_every: 3}
  eval: {every: 2, n_prompts: 16, k: 1, temperature: 0.0}
  seeds: [0, 1]
analyses: [exp_law, early_share]
panels: [{kind: curves}, {kind: law_fit}]
claims:
  - {id: c1, statement: "entropy falls", source: test, metric: entropy_final_over_initial, op: "<=", threshold: 1.0}
"""


@pytest.fixture
def tiny_spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tinytest.yaml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="session")
def warm_store(tmp_path_factory) -> Path:
    """A run store shared by the tests, so the tiny warm-up trains once per session."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def fig_store(tmp_path_factory) -> Path:
    """A run store for the shortened fig1 / fig8 runs: they share one warm-up (same body)."""
    return tmp_path_factory.mktemp("figstore")


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path
