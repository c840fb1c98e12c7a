"""bf16 autocast (model.autocast): the same losses and gradients as float32 within bf16's precision, float32
log-probs, entropy, weights and gradients, and copies of the model that autocast too."""
import copy

import pytest
import torch

from replicate.runners.rl.models import (autocast_forward, char_tokenizer, last_logits_only, response_logprobs,
                                         tiny_model)
from replicate.config import ModelSpec

CONFIG = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
          "tie_word_embeddings": True}


def _pair():
    tok = char_tokenizer("0123456789+*=")
    torch.manual_seed(0)
    fp32 = tiny_model(CONFIG, tok)
    return fp32, autocast_forward(copy.deepcopy(fp32), "bf16", "cpu")


def _batch(B=8, P=6, T=4):
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(3, 16, (B, P), generator=g)
    mask = torch.ones_like(prompt)
    mask[0, :2] = 0  # a left-padded row
    return prompt, mask, torch.randint(3, 16, (B, T), generator=g)


def _loss_and_grads(model, batch):
    model.zero_grad()
    logp, ent = response_logprobs(model, *batch, temperature=0.7, with_entropy=True)
    loss = -(logp.mean()) - 0.1 * ent.mean()
    loss.backward()
    return loss.item(), logp, ent, torch.cat([p.grad.flatten() for p in model.parameters()])


def test_bf16_autocast_matches_float32_within_bf16_precision():
    fp32, bf16 = _pair()
    batch = _batch()
    l32, lp32, _, g32 = _loss_and_grads(fp32, batch)
    l16, lp16, ent16, g16 = _loss_and_grads(bf16, batch)
    assert lp16.dtype == torch.float32 and ent16.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in bf16.parameters())
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2%); through two layers the loss moves by well
    # under 1% and the gradient's direction by a few degrees
    assert abs(l16 - l32) / abs(l32) < 0.01
    assert (lp16 - lp32).abs().max() < 0.05
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0)
    assert cos > 0.99
    assert abs(g16.norm() / g32.norm() - 1) < 0.03
    assert (lp16 - lp32).abs().max() > 0  # the bf16 arm really ran in bf16


def test_autocast_runs_matmuls_in_bf16_and_the_lm_head_in_float32():
    _, bf16 = _pair()
    seen = {}
    def hook(name):
        def record(module, inputs, output):
            seen.setdefault(name, output.dtype)
        return record
    bf16.model.layers[0].mlp.down_proj.register_forward_hook(hook("mlp"))
    bf16.get_output_embeddings().register_forward_hook(hook("head"))
    prompt, mask, resp = _batch()
    bf16(input_ids=prompt, attention_mask=mask)
    assert seen == {"mlp": torch.bfloat16, "head": torch.float32}


def test_autocast_survives_deepcopy_and_keeps_forward_keywords():
    fp32, bf16 = _pair()
    clone = copy.deepcopy(bf16)
    assert clone.forward.__self__ is clone and clone.get_output_embeddings().forward.__self__ is clone.lm_head
    assert last_logits_only(clone, 3) == last_logits_only(fp32, 3) == {"logits_to_keep": 3}
    batch = _batch()
    with torch.no_grad():
        a = response_logprobs(bf16, *batch, temperature=1.0)[0]
        b = response_logprobs(clone, *batch, temperature=1.0)[0]
    assert torch.equal(a, b)
    with torch.no_grad():  # the copy's weights are its own: changing them changes only its outputs
        clone.lm_head.weight.mul_(2)
        assert torch.equal(response_logprobs(bf16, *batch, temperature=1.0)[0], a)
        assert not torch.equal(response_logprobs(clone, *batch, temperature=1.0)[0], a)


def test_autocast_off_is_the_model_unchanged():
    fp32, _ = _pair()
    assert autocast_forward(fp32, "off", "cpu") is fp32 and "forward" not in vars(fp32)


def test_model_spec_validates_autocast_and_system():
    assert ModelSpec(kind="tiny").autocast == "off"
    assert ModelSpec(kind="tiny", autocast="bf16").autocast == "bf16"
    assert ModelSpec(kind="tiny", autocast=False).autocast == "off"  # YAML's bare `off`
    with pytest.raises(ValueError, match="off"):
        ModelSpec(kind="tiny", autocast="fp16")
    with pytest.raises(ValueError, match="dtype: float32"):
        ModelSpec(kind="tiny", autocast="bf16", dtype="bfloat16")
    with pytest.raises(ValueError, match="chat: true"):
        ModelSpec(kind="pretrained", path="x", system="")


def test_pretrained_seeds_train_side_by_side_on_cpu(monkeypatch):
    from types import SimpleNamespace

    from replicate.runners.pool import parallel_workers
    monkeypatch.delenv("REPLICATE_WORKERS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    pending = [("main", SimpleNamespace(model=SimpleNamespace(kind="pretrained")), s, None) for s in range(6)]
    assert parallel_workers(pending) == 4
    assert parallel_workers(pending[:2]) == 2  # at most one process per seed
    assert parallel_workers([]) == 1


def test_sampling_an_autocast_model_is_reproducible_and_float32_scored():
    from replicate.runners.rl.rollout import generate, make_generator
    _, bf16 = _pair()
    prompt, mask, _ = _batch()
    with torch.no_grad():
        a = generate(bf16, prompt, mask, 5, 1.0, [2], 0, make_generator(3, "cpu"), repeats=2)
        b = generate(bf16, prompt, mask, 5, 1.0, [2], 0, make_generator(3, "cpu"), repeats=2)
    assert torch.equal(a[0], b[0]) and a[0].shape == (16, 5)
    assert not torch.is_autocast_enabled("cpu")  # the sampling scope is closed again



def _casts_of_up_and_gate(model, batch, grad: bool):
    from torch.profiler import ProfilerActivity, profile
    with torch.set_grad_enabled(grad), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = response_logprobs(model, *batch, temperature=0.7, with_entropy=True)
    n = sum(e.name == "aten::_to_copy" and e.input_shapes[:1] == [[256, 64]] for e in prof.events())
    return n, out


def test_a_no_grad_scoring_pass_casts_each_weight_once_and_changes_no_number():
    """Without autograd the prompt pass and the response pass share one autocast region: one bf16 cast of each
    weight, and the same log-probs and entropy bit for bit as one region per forward (autograd's passes)."""
    _, bf16 = _pair()
    prompt, mask, resp = _batch()
    batch = (prompt[:2].repeat_interleave(4, 0), mask[:2].repeat_interleave(4, 0), resp)  # two groups of 4
    layers = CONFIG["num_hidden_layers"]
    shared, (lp, ent) = _casts_of_up_and_gate(bf16, batch, grad=False)
    own, (lp_grad, ent_grad) = _casts_of_up_and_gate(bf16, batch, grad=True)
    assert shared == 2 * layers and own == 4 * layers  # gate_proj and up_proj: once each, or once per forward
    assert torch.equal(lp, lp_grad.detach()) and torch.equal(ent, ent_grad.detach())
