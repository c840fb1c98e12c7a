"""The sampler: a group's prompt is run once and its KV cache shared, with the same samples as running it per row."""
import pytest
import torch

from replicate.runners.rl.models import char_tokenizer, tiny_model
from replicate.runners.rl.rollout import encode_prompts, generate, make_generator

CONFIG = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.6])
def test_shared_prefill_samples_what_per_row_prompts_sample(temperature):
    tok = char_tokenizer("0123456789+*=")
    torch.manual_seed(0)
    model = tiny_model(CONFIG, tok).eval()
    ids, mask = encode_prompts(tok, ["47*38=", "3*5=", "12*99=", "7="])  # left-padded to different lengths
    args = (8, temperature, tok.eos_token_id, tok.pad_token_id)
    shared = generate(model, ids, mask, *args, make_generator(1, "cpu"), repeats=5)
    per_row = generate(model, ids.repeat_interleave(5, 0), mask.repeat_interleave(5, 0), *args, make_generator(1, "cpu"))
    assert shared[0].shape[0] == 20
    assert torch.equal(shared[0], per_row[0]) and torch.equal(shared[1], per_row[1])
    if temperature:  # sampled: the rows of a group differ
        assert any(not torch.equal(shared[0][i], shared[0][i + 1]) for i in range(0, 20, 5))
