"""Rollout engines behind one protocol: ours (KV cache, shared prefill) and transformers' generate() give the
same greedy samples on the tiny model, and a spec picks an engine by name."""
import pytest
import torch

from replicate.errors import UserError
from replicate.engines import ENGINES
from replicate.runners.rl.models import char_tokenizer, tiny_model
from replicate.runners.rl.rollout import encode_prompts, make_generator

CONFIG = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def _model():
    tok = char_tokenizer("0123456789+*=")
    torch.manual_seed(0)
    return tok, tiny_model(CONFIG, tok).eval()


def test_ours_and_hf_generate_agree_greedily():
    tok, model = _model()
    ids, mask = encode_prompts(tok, ["47*38=", "3*5=", "12*99=", "7="])  # left-padded to different lengths
    args = (10, 0.0, [tok.eos_token_id], tok.pad_token_id)
    ours = ENGINES["ours"](model, ids, mask, *args, make_generator(1, "cpu"), repeats=3)
    hf = ENGINES["hf"](model, ids, mask, *args, make_generator(1, "cpu"), repeats=3)
    assert ours[0].shape == hf[0].shape and ours[0].shape[0] == 12
    assert torch.equal(ours[0], hf[0]) and torch.equal(ours[1], hf[1])


def test_hf_engine_at_a_temperature_is_reproducible_per_seed_and_samples():
    tok, model = _model()
    ids, mask = encode_prompts(tok, ["47*38=", "3*5="])
    args = (8, 1.0, [tok.eos_token_id], tok.pad_token_id)
    a = ENGINES["hf"](model, ids, mask, *args, make_generator(1, "cpu"), repeats=4)
    b = ENGINES["hf"](model, ids, mask, *args, make_generator(1, "cpu"), repeats=4)
    c = ENGINES["hf"](model, ids, mask, *args, make_generator(2, "cpu"), repeats=4)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    # the mask is 1 up to and including the first EOS and padding follows it
    for row, m in zip(*a):
        n = int(m.sum())
        assert (row[n:] == tok.pad_token_id).all() and (row[:n - 1] != tok.eos_token_id).all()


def test_spec_picks_an_engine_and_refuses_an_unknown_one():
    from replicate.specs import find_spec
    from replicate.config import apply_overrides
    config = find_spec("fig1").resolve()
    assert config.rollout.engine == "ours"
    assert apply_overrides(config, {"rollout": {"engine": "hf"}}).rollout.engine == "hf"
    with pytest.raises(UserError, match="unknown rollout engine 'vllm'; choose one of ours, hf"):
        apply_overrides(config, {"rollout": {"engine": "vllm"}})
