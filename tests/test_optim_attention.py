"""Fused AdamW and the attention implementation: the same numbers as the defaults, up to rounding."""
import copy

import pytest
import torch

from replicate.config import OptimizerSpec
from replicate.runners.rl.models import char_tokenizer, response_logprobs, tiny_model
from replicate.runners.rl.optim import adamw, make_optimizer

CONFIG = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def _model(seed=0):
    tok = char_tokenizer("0123456789+=")
    torch.manual_seed(seed)
    return tiny_model(CONFIG, tok), tok


def test_adamw_is_fused_on_cpu_unless_asked_not_to():
    model, _ = _model()
    assert adamw(model.parameters(), 1e-3).defaults["fused"] is True
    assert not adamw(model.parameters(), 1e-3, fused=False).defaults["fused"]
    assert make_optimizer(OptimizerSpec(lr=1e-3, betas=(0.9, 0.95)), model.parameters()).defaults["fused"] is True
    assert isinstance(make_optimizer(OptimizerSpec(name="sgd"), model.parameters()), torch.optim.SGD)


def test_fused_adamw_takes_the_loops_steps_up_to_rounding():
    a, _ = _model()
    b = copy.deepcopy(a)
    opts = [adamw(m.parameters(), 1e-2, fused=f, weight_decay=0.1) for m, f in ((a, True), (b, False))]
    ids = torch.randint(4, 14, (3, 10), generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        for m, opt in zip((a, b), opts):
            opt.zero_grad()
            m(input_ids=ids, labels=ids).loss.backward()
            opt.step()
    moved = max((pa - p0).abs().max().item() for pa, p0 in zip(a.parameters(), _model()[0].parameters()))
    diff = max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))
    assert moved > 1e-2 and diff < 1e-5


@pytest.mark.parametrize("pad", [0, 3])
def test_eager_attention_gives_sdpas_logprobs(pad):
    """Left-padded prompts (positions skip the padding), a group's rows sharing one prompt: eager = sdpa."""
    sdpa, tok = _model()
    eager = copy.deepcopy(sdpa)
    eager.set_attn_implementation("eager")
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(4, 14, (2, 6), generator=g).repeat_interleave(2, dim=0)
    mask = torch.ones_like(prompts)
    prompts[:2, :pad], mask[:2, :pad] = tok.pad_token_id, 0
    resp = torch.randint(4, 14, (4, 5), generator=g)
    lp_s, ent_s = response_logprobs(sdpa, prompts, mask, resp, 0.7, with_entropy=True)
    lp_e, ent_e = response_logprobs(eager, prompts, mask, resp, 0.7, with_entropy=True)
    assert torch.allclose(lp_s, lp_e, atol=1e-5) and torch.allclose(ent_s, ent_e, atol=1e-5)
