"""The run config: every section of one training run (model, task, warm-up, algorithm, rollout, train, eval),
validated field by field, and the merges that build it (scale presets, variants, --set overrides)."""
from __future__ import annotations

import copy
import inspect
import typing
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from replicate.algorithms import (
    ADVANTAGE_INPUTS,
    ADVANTAGES,
    KL_KINDS,
    LOSS_AGG_MODES,
    LOSS_INPUTS,
    POLICY_LOSSES,
    hyperparameters,
)
from replicate.errors import UserError
from replicate.paths import digest
from replicate.tasks import TASKS

SCALES = ("tiny", "small", "paper")


def known(name: str, names, kind: str, sort: bool = False) -> str:
    """`name` if it is one of `names` (a registry or a tuple), else the one-line error every spec field gives."""
    if name not in names:
        listed = sorted(names) if sort else list(names)
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(listed)}")
    return name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(Strict):
    kind: Literal["tiny", "pretrained"]
    config: dict[str, Any] = {}
    path: str | None = None
    gguf_file: str | None = None
    dtype: str = "float32"  # parameters' dtype, tiny and pretrained alike
    chat: bool = False  # prompt a pretrained chat model through its tokenizer's chat template
    system: str | None = None  # with chat: the system turn's text (None: the template's default turn)
    autocast: Literal["off", "bf16"] = "off"  # bf16 autocast of forward passes; float32 weights and optimizer
    attention: Literal["sdpa", "eager"] = "sdpa"  # transformers' attention implementation for RL (after warm-up)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v):
        if v not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown model dtype {v!r}; choose float32, bfloat16 or float16")
        return v

    @field_validator("autocast", mode="before")
    @classmethod
    def _autocast(cls, v):
        return "off" if v is False else v  # YAML reads a bare `off` as false

    @model_validator(mode="after")
    def _path_for_pretrained(self):
        if self.kind == "pretrained" and not self.path:
            raise ValueError("a pretrained model needs `path` (a local dir, a .gguf file or a hub id)")
        if self.kind == "tiny" and self.chat:
            raise ValueError("`chat` needs a pretrained model with a chat template; remove it for a tiny model")
        if self.system is not None and not self.chat:
            raise ValueError("`system` is the chat template's system turn; set `chat: true` or remove `system`")
        if self.autocast != "off" and self.dtype != "float32":
            raise ValueError(f"autocast keeps float32 master weights; set dtype: float32 (not {self.dtype}) "
                             "or autocast: off")
        return self


class TaskSpec(Strict):
    name: str
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        return known(v, TASKS, "task", sort=True)

    @model_validator(mode="after")
    def _params(self):
        sig = inspect.signature(TASKS[self.name].__init__).parameters
        for key in self.params:
            if key not in sig:
                raise ValueError(f"task {self.name!r} takes no parameter {key!r}; it takes: "
                                 f"{', '.join(p for p in sig if p != 'self')}")
        if self.name == "math" and "train" not in self.params:
            raise ValueError("task 'math' needs params.train (a local .jsonl or a hub dataset id)")
        return self


class WarmupSpec(Strict):
    steps: int = Field(0, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    noise: float = Field(0.0, ge=0, le=1)


def typed_hparams(kind: str, fn, params: dict, inputs) -> dict:
    """Check hyperparameter names against fn's signature and convert values to its annotations.

    YAML 1.1 reads `2e-4` as a string; converting it here makes it a float (or a one-line error) before
    anything trains.
    """
    hints = typing.get_type_hints(fn)
    allowed = hyperparameters(fn, inputs)
    out = {}
    for key, value in params.items():
        if key not in allowed:
            raise ValueError(f"{kind} {fn.__name__!r} takes no hyperparameter {key!r}; it takes: {', '.join(allowed) or 'none'}")
        try:
            out[key] = TypeAdapter(hints[key]).validate_python(value) if key in hints else value
        except ValidationError:
            want = getattr(hints[key], "__name__", str(hints[key]))
            raise ValueError(f"{kind} {fn.__name__!r}: {key} must be {want}, got {value!r}") from None
    return out


class AlgorithmSpec(Strict):
    advantage: str = "grpo"
    advantage_params: dict[str, Any] = {}
    policy_loss: str = "vanilla"
    policy_loss_params: dict[str, Any] = {}
    loss_agg_mode: str = "token-mean"
    entropy_coeff: float = 0.0
    kl_loss_coef: float = Field(0.0, ge=0)
    kl_loss_type: str = "low_var_kl"
    kl_in_reward_coef: float = Field(0.0, ge=0)
    kl_in_reward_type: str = "kl"
    critic_lr: float = Field(1e-3, gt=0)        # gae only: the value model's learning rate
    cliprange_value: float = Field(0.5, gt=0)   # gae only: clip of the value update, as verl's default
    prm_lr: float = Field(1e-3, gt=0)           # prime only: the implicit process reward model's learning rate
    # For losses that select tokens (Clip-Cov, KL-Cov): select per micro-batch (verl) or over the mini-batch.
    cov_scope: Literal["microbatch", "batch"] = "microbatch"

    @model_validator(mode="after")
    def _registered(self):
        known(self.advantage, ADVANTAGES, "advantage estimator")
        known(self.policy_loss, POLICY_LOSSES, "policy loss")
        self.advantage_params = typed_hparams("advantage", ADVANTAGES[self.advantage], self.advantage_params,
                                              ADVANTAGE_INPUTS)
        if self.advantage == "prime" and not self.advantage_params.get("beta", 0.05) > 0:
            raise ValueError(f"advantage 'prime': beta (the implicit reward's scale) must be > 0, got "
                             f"{self.advantage_params['beta']!r}; PRIME's recipe uses 0.05")
        self.policy_loss_params = typed_hparams("policy loss", POLICY_LOSSES[self.policy_loss],
                                                self.policy_loss_params, LOSS_INPUTS)
        known(self.loss_agg_mode, LOSS_AGG_MODES, "loss_agg_mode")
        for kind in (self.kl_loss_type, self.kl_in_reward_type):
            known(kind, KL_KINDS, "KL kind")
        return self


class RolloutSpec(Strict):
    prompts_per_step: int = Field(16, ge=1)
    group_size: int = Field(8, ge=1)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(24, ge=1)
    filter_groups: bool = False           # DAPO dynamic sampling: drop groups whose scores are all equal
    max_gen_batches: int = Field(10, ge=1)  # ... generating up to this many batches per step
    engine: str = "ours"                  # the rollout engine (replicate.engines): ours or hf
    stop: list[str] = []                  # strings that end a response as EOS does (a base model's answer: ["\n"])

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v):
        from replicate.engines import ENGINES
        return known(v, ENGINES, "rollout engine")

    @field_validator("stop")
    @classmethod
    def _nonempty_stops(cls, v):
        if any(not s for s in v):
            raise ValueError("an empty stop string would end every response at once; remove it")
        return v


class OptimizerSpec(Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    fused: bool = True  # AdamW's fused kernel (CPU and CUDA); false: torch's default per-parameter loop on CPU


class TrainSpec(Strict):
    steps: int = Field(100, ge=1)
    ppo_mini_batches: int = Field(1, ge=1)
    ppo_epochs: int = Field(1, ge=1)
    micro_batches: int = Field(1, ge=1)
    optimizer: OptimizerSpec = OptimizerSpec()
    grad_clip: float = Field(1.0, gt=0)
    checkpoint_every: int = Field(25, ge=1)
    probe_prompts: int = Field(0, ge=0)  # >0: log the exact entropy change of each step on fixed probe prompts


class EvalSpec(Strict):
    every: int = Field(10, ge=1)
    n_prompts: int = Field(256, ge=1)
    k: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    # the sharpening null: the base policy evaluated at step 0 at each of these temperatures (0 = greedy)
    base_temperatures: list[Annotated[float, Field(ge=0)]] = []


class RunConfig(Strict):
    """Everything that determines one training run except the seed."""
    model: ModelSpec
    task: TaskSpec
    warmup: WarmupSpec = WarmupSpec()
    algorithm: AlgorithmSpec = AlgorithmSpec()
    rollout: RolloutSpec = RolloutSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    seeds: list[int] = [0, 1, 2]

    @model_validator(mode="after")
    def _divisible(self):
        if self.rollout.prompts_per_step % self.train.ppo_mini_batches:
            raise ValueError(f"train.ppo_mini_batches ({self.train.ppo_mini_batches}) must divide "
                             f"rollout.prompts_per_step ({self.rollout.prompts_per_step})")
        if self.algorithm.policy_loss == "kl_cov" and self.train.ppo_mini_batches * self.train.ppo_epochs == 1:
            raise ValueError("KL-Cov needs several updates per rollout (at ratio 1 its |log π - log π_old| penalty "
                             "has no gradient): set train.ppo_mini_batches (or ppo_epochs) above 1")
        return self

    def digest(self) -> str:
        return digest(self.model_dump(exclude={"seeds"}))


def merge_scale(body: dict, override: dict) -> dict:
    """Merge a scale preset over the body; a preset naming another task or model kind replaces that section."""
    merged = deep_merge(body, override)
    for section, key in (("task", "name"), ("model", "kind")):
        new = (override.get(section) or {}).get(key)
        if new is not None and new != (body.get(section) or {}).get(key):
            merged[section] = copy.deepcopy(override[section])
    return merged


def deep_merge(base: dict, override: dict) -> dict:
    """`override` merged into a copy of `base`, mapping by mapping; other values replace.

    `key: null` in the override deletes the key from the merged mapping (so a scale preset, a variant, a
    `base:` child or `--set key=null` can drop an inherited key; a schema field then takes its default).
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """`--set a.b.c=value` strings as one nested mapping; values are YAML scalars or flow (`4`, `2e-4`, `[1, 2]`)."""
    out: dict = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise UserError(f"--set {item!r}: write --set path.to.key=value, e.g. --set rollout.group_size=4")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise UserError(f"--set {key}: {text!r} is not a YAML value; quote it or fix the syntax") from None
        node = out
        for part in parts[:-1]:
            if not isinstance(node.setdefault(part, {}), dict):
                raise UserError(f"--set {key}: {'.'.join(parts[:-1])} is set to a value and used as a mapping")
            node = node[part]
        node[parts[-1]] = value
    return out


def apply_overrides(config: RunConfig, overrides: dict, what: str = "--set") -> RunConfig:
    """config with `overrides` merged in and validated again; a bad key or value is a one-line UserError."""
    if not overrides:
        return config
    try:
        return RunConfig.model_validate(deep_merge(config.model_dump(), overrides))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        if msg == "Extra inputs are not permitted":
            msg = f"unknown key {err['loc'][-1]!r}; check its spelling against the spec's body"
        raise UserError(f"{what} {where}: {msg}") from None
