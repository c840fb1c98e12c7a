"""Device placement without a GPU: every sampling path run on a policy that *declares* a CUDA device.

The H100 crash (prompts left on the CPU, CPU torch.Generators handed to torch.multinomial on CUDA probabilities)
cannot happen on a CPU-only machine, where everything is on the CPU. Here the policy's parameters and buffers say
`device == cuda:0` while their data stay on the CPU, and a TorchFunctionMode follows every tensor: one made with
device=cuda (or moved there with .to / .cuda) is a "cuda" tensor, one made without a device is a CPU tensor, the
result of an op on cuda tensors is a cuda tensor. An op that mixes a cuda tensor with a CPU tensor of one dimension
or more raises DeviceMismatch, as CUDA would; so does a sampling op whose generator (torch.Generator(device=...) is
replaced by one that remembers the device it was asked for) is not on the op's device. The deliberately broken
variants at the bottom reproduce the old code and show that the check fails on it.
"""
import random
from types import SimpleNamespace

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from replicate.specs import RunConfig, load_spec

FAKE = torch.device("cuda", 0)


class DeviceMismatch(AssertionError):
    pass


class CudaTensor(torch.Tensor):
    """A CPU tensor that says it is on cuda:0 (the mode below keeps that true of everything made from it)."""
    __torch_function__ = torch._C._disabled_torch_function_impl
    device = property(lambda self: FAKE)
    is_cuda = property(lambda self: True)


class CudaParameter(torch.nn.Parameter):
    device = property(lambda self: FAKE)
    is_cuda = property(lambda self: True)

    @property
    def grad(self):
        g = torch.Tensor.grad.__get__(self)
        return g if g is None or _fake(g) else g.as_subclass(CudaTensor)

    @grad.setter
    def grad(self, value):
        torch.Tensor.grad.__set__(self, value)


_RealGenerator = torch.Generator


class DeclaredGenerator(_RealGenerator):
    """A CPU generator that remembers the device it was created for."""
    def __new__(cls, device="cpu"):
        g = super().__new__(cls, "cpu")
        g.declared = torch.device(device)
        return g

    def __init__(self, device="cpu"):
        pass


def _fake(t) -> bool:
    return isinstance(t, (CudaTensor, CudaParameter))


def _is_fake_device(d) -> bool:
    return isinstance(d, (str, torch.device)) and torch.device(d).type == FAKE.type


def _wrap(x):
    return x.as_subclass(CudaTensor) if isinstance(x, torch.Tensor) and not _fake(x) else x


def _unwrap(x):
    return x.as_subclass(torch.Tensor) if isinstance(x, CudaTensor) else x


CROSS_DEVICE_OK = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.copy_}  # CUDA allows these


class FakeCudaMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        self.ops += 1
        name = getattr(func, "__name__", str(func))
        to_fake = None  # None: the output follows the inputs; True / False: placed explicitly
        if "device" in kwargs and kwargs["device"] is not None:
            to_fake = _is_fake_device(kwargs["device"])
            if to_fake:
                kwargs["device"] = "cpu"
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            rest = list(args[1:])
            if func is torch.Tensor.cuda:
                to_fake = True
            elif func is torch.Tensor.cpu:
                to_fake = False
            for i, a in enumerate(rest):
                if isinstance(a, (str, torch.device)):
                    to_fake = _is_fake_device(a)
                    rest[i] = "cpu"
                elif isinstance(a, torch.Tensor):
                    to_fake = _fake(a)
            if to_fake is None:
                to_fake = _fake(args[0])
            out = func(args[0], *rest, **kwargs) if func is not torch.Tensor.cuda else args[0]
            return _wrap(out) if to_fake else _unwrap(out) if out is not args[0] or not _fake(out) else \
                out.as_subclass(torch.Tensor)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_fake = any(map(_fake, tensors))
        if func not in CROSS_DEVICE_OK:
            plain = [t for t in tensors if not _fake(t) and t.dim() > 0]
            if on_fake and plain:
                raise DeviceMismatch(f"{name}: cuda and cpu tensors mixed (cpu shapes {[tuple(t.shape) for t in plain]})")
            if to_fake is False and on_fake and tensors:
                raise DeviceMismatch(f"{name}: cuda tensor with device=cpu")
        gen = kwargs.get("generator")
        if gen is not None:
            gen_fake = _is_fake_device(getattr(gen, "declared", "cpu"))
            op_fake = to_fake if to_fake is not None else on_fake
            if gen_fake != op_fake:
                raise DeviceMismatch(f"{name}: a generator on {getattr(gen, 'declared', 'cpu')} for "
                                     f"{'cuda' if op_fake else 'cpu'} tensors")
        out = func(*args, **kwargs)
        if to_fake or (to_fake is None and on_fake):
            out = tree_map(_wrap, out)
        return out


def declare_cuda(model):
    """The model's parameters and buffers say cuda:0 (their data stay where they are)."""
    for p in model.parameters():
        p.__class__ = CudaParameter
    for mod in model.modules():
        for k, b in mod._buffers.items():
            if b is not None:
                mod._buffers[k] = b.as_subclass(CudaTensor)
    return model


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch, "Generator", DeclaredGenerator)
    mode = FakeCudaMode()
    with mode:
        yield mode


TINY_BODY = {
    "model": {"kind": "tiny", "config": {"model_type": "qwen2", "hidden_size": 16, "intermediate_size": 32,
                                         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                                         "max_position_embeddings": 64, "tie_word_embeddings": True}},
    "task": {"name": "addition", "params": {"digits": [1], "holdout": 16}},
    "warmup": {"steps": 0},
    "algorithm": {"advantage": "grpo", "policy_loss": "vanilla"},
    "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4},
    "train": {"steps": 2, "ppo_mini_batches": 1, "optimizer": {"lr": 1.0e-3}, "probe_prompts": 2},
    "eval": {"every": 1, "n_prompts": 4, "k": 1, "temperature": 0.0},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from replicate.tasks import make_task
    from replicate.runners.rl.warmup import base_policy
    cfg = RunConfig.model_validate(TINY_BODY)
    root = tmp_path_factory.mktemp("devstore")
    model, tok = base_policy(cfg, root, 0, log=lambda *a: None)
    return SimpleNamespace(cfg=cfg, root=root, tok=tok, task=make_task(cfg.task.name, **cfg.task.params),
                           model=declare_cuda(model))


def fake_learner(tiny):
    from replicate.runners.rl.rollout import make_generator
    acc = SimpleNamespace(device=FAKE, num_processes=1, process_index=0, is_main_process=True,
                          log=lambda *a, **k: None, backward=lambda loss: loss.backward(), unwrap_model=lambda m: m,
                          clip_grad_norm_=torch.nn.utils.clip_grad_norm_)
    opt = torch.optim.SGD(tiny.model.parameters(), lr=1e-3)
    return SimpleNamespace(accelerator=acc, model=tiny.model, policy=tiny.model, optimizer=opt, tok=tiny.tok,
                           task=tiny.task, ref_model=None, critic=None, critic_opt=None, prm=None, prm_opt=None, py_rng=random.Random(0),
                           gen=make_generator(0, acc.device))


# ---- the harness itself --------------------------------------------------------------------------------------

def test_harness_tracks_devices(fake_cuda):
    a = torch.ones(3, device="cuda")
    assert a.device == FAKE and (a * 2).device == FAKE and torch.zeros(3).device.type == "cpu"
    with pytest.raises(DeviceMismatch):
        a + torch.ones(3)
    assert (a + torch.tensor(1.0)).device == FAKE  # a CPU scalar is fine, as on CUDA
    assert (a + torch.ones(3).to(a.device)).device == FAKE
    with pytest.raises(DeviceMismatch):
        torch.multinomial(a[None], 1, generator=torch.Generator())
    torch.multinomial(a[None], 1, generator=torch.Generator(device=a.device))
    with pytest.raises(DeviceMismatch):
        torch.multinomial(torch.ones(1, 3), 1, generator=torch.Generator(device="cuda"))


def test_declared_model_refuses_cpu_inputs(tiny, fake_cuda):
    ids = torch.tensor([[3, 4, 5]])
    with pytest.raises(DeviceMismatch):
        tiny.model(input_ids=ids)
    out = tiny.model(input_ids=ids.to(FAKE))
    assert out.logits.device == FAKE


# ---- every sampling path, as the code is now --------------------------------------------------------------------

def test_rollout_on_the_policy_device(tiny, fake_cuda):
    from replicate.runners.rl.rollout import make_generator, rollout
    batch = rollout(tiny.model, tiny.tok, tiny.task, tiny.cfg.rollout, slice(None), random.Random(0),
                    make_generator(0, FAKE))
    assert batch.responses.device == FAKE and batch.scores.device == FAKE and fake_cuda.ops > 100
    logp, ent = batch.logprobs(tiny.model, with_entropy=True)
    assert logp.device == FAKE and ent.device == FAKE


def test_dynamic_sampling_on_the_policy_device(tiny, fake_cuda):
    from replicate.runners.rl.rollout import make_generator, rollout
    ro = tiny.cfg.rollout.model_copy(update={"filter_groups": True, "max_gen_batches": 3, "temperature": 3.0})
    batch = rollout(tiny.model, tiny.tok, tiny.task, ro, slice(None), random.Random(1), make_generator(1, FAKE))
    assert batch.prompt_ids.device == FAKE


def test_avg_at_k_on_the_policy_device(tiny, fake_cuda):
    from replicate.runners.rl.rollout import avg_at_k, make_generator
    avg_at_k(tiny.model, tiny.tok, tiny.task, tiny.task.validation[:4], 2, 1.0, 4, make_generator(0, FAKE), batch_size=3)
    avg_at_k(tiny.model, tiny.tok, tiny.task, tiny.task.validation[:4], 1, 0.0, 4, None)


def test_trainer_steps_validation_probe_and_update(tiny, fake_cuda):
    """train_steps as the trainer runs it: validation, rollout, probe states, PPO update, entropy change."""
    from replicate.runners.rl.trainer import train_steps
    rows = []
    run = SimpleNamespace(append_metrics=rows.append)
    train_steps(fake_learner(tiny), run, tiny.cfg, 0, 0)
    assert len(rows) == 2 and "val_acc" in rows[0] and "probe_delta_entropy" in rows[0]


def test_lemma_probe_on_the_policy_device(tiny, fake_cuda, monkeypatch):
    import replicate.runners.rl.warmup
    from replicate.runners.studies import logit_step_probe
    monkeypatch.setattr(replicate.runners.rl.warmup, "base_policy", lambda *a, **k: (tiny.model, tiny.tok))
    rows = logit_step_probe(tiny.cfg, 0, tiny.root, lr=1e-3, log=lambda *a: None)
    assert {r["direction"] for r in rows} == {"gradient", "random"}


def test_preference_sampling_and_training_on_the_policy_device(tiny, fake_cuda, monkeypatch, tmp_path):
    import replicate.runners.preference as pref
    monkeypatch.setattr(pref, "base_policy", lambda *a, **k: (tiny.model, tiny.tok))
    problems, samples, base_eval = pref.sample_cache(tiny.cfg, tmp_path, 0, 4, 4, log=lambda *a: None)
    assert len(samples) == 4 and base_eval
    params = {**pref.DEFAULTS, "method": "sft_shortest", "batch_size": 2}
    sft = [(i, pref.Response(i, "1", 2, True, 0.0)) for i in range(2)]
    samples = [[("1", 2, True, True)] for _ in problems]
    samples = [[("1", 2, True, True), ("12", 3, True, False)] for _ in problems]
    pref.train_arm(tiny.model, tiny.tok, problems, samples, [], sft, params, tiny.cfg, 0, lambda row: None)
    pairs = [pref.PreferencePair(i, pref.Response(i, "1", 2, True, 1.0), pref.Response(i, "12", 3, False, 0.0),
                                 "dual_correct") for i in range(2)]
    rows = []
    pref.train_arm(tiny.model, tiny.tok, problems, samples, pairs, [], {**params, "method": "dast"}, tiny.cfg, 0,
                   rows.append)
    assert rows and all(r["loss"] == r["loss"] for r in rows)


# ---- the old code, deliberately broken: the check must fail on it ----------------------------------------------

def _old_sample_batch(policy, tok, task, problems, group_size, temperature, max_new_tokens, gen):
    """sample_batch before the fix: prompts encoded on the default (CPU) device."""
    from replicate.runners.rl.rollout import RolloutBatch, encode_prompts, generate, score_responses
    rows = [p for p in problems for _ in range(group_size)]
    ids, pmask = encode_prompts(tok, [p.prompt for p in rows])
    resp, rmask = generate(policy, ids, pmask, max_new_tokens, temperature, [tok.eos_token_id], tok.pad_token_id, gen)
    scores = torch.tensor(score_responses(tok, task, resp, rmask, rows))
    return RolloutBatch(rows, [i // group_size for i in range(len(rows))], ids, pmask, resp, rmask, scores, temperature)


def test_old_bug_prompts_on_cpu_fails(tiny, fake_cuda):
    from replicate.runners.rl.rollout import make_generator
    with pytest.raises(DeviceMismatch):
        _old_sample_batch(tiny.model, tiny.tok, tiny.task, tiny.task.validation[:2], 1, 1.0, 4, make_generator(0, FAKE))


def test_old_bug_cpu_generator_fails(tiny, fake_cuda, monkeypatch):
    """make_generator before the fix: torch.Generator() (a CPU generator) whatever the policy's device."""
    import replicate.runners.rl.rollout
    import replicate.runners.rl.trainer
    old = lambda seed, device=None: torch.Generator().manual_seed(seed)  # noqa: E731
    monkeypatch.setattr(replicate.runners.rl.rollout, "make_generator", old)
    monkeypatch.setattr(replicate.runners.rl.trainer, "make_generator", old)
    from replicate.runners.rl.trainer import train_steps
    cfg = tiny.cfg.model_copy(update={"eval": tiny.cfg.eval.model_copy(update={"temperature": 1.0})})
    with pytest.raises(DeviceMismatch, match="generator"):
        train_steps(fake_learner(tiny), SimpleNamespace(append_metrics=lambda r: None), cfg, 0, 0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_model_follows_spec_dtype(dtype, tmp_path):
    from replicate.runners.rl.warmup import base_policy
    cfg = RunConfig.model_validate({**TINY_BODY, "model": {**TINY_BODY["model"], "dtype": dtype}})
    for _ in range(2):  # built, then loaded from the warm-up cache
        model, _ = base_policy(cfg, tmp_path, 0, log=lambda *a: None)
        assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    assert RunConfig.model_validate(TINY_BODY).model.dtype == "float32"
